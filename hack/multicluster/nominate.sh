#!/usr/bin/env bash
# Nominate worker clusters for a manager Workload by hand, as an external MultiKueue
# dispatcher must: hack/multicluster/nominate.sh NAMESPACE WORKLOAD [CLUSTER...]
# (no CLUSTER: the nomination is removed). Uses KUBECONFIG (the manager's, as
# `eval "$(hack/multicluster.sh env)"` sets it) and kubectl on PATH.
#
# It writes status.nominatedClusterNames by server-side apply of the status subresource as
# field manager kueue-admission, forced, with the Workload's whole current status and its
# resourceVersion (a conflict, not a lost update, if the Workload changed since it was read).
# That is how Kueue's own writers do it (workload.PatchAdmissionStatus; its integration test
# of the external dispatcher, test/integration/multikueue/dispatcher_test.go, calls it):
# when a worker admits the Workload, Kueue v0.17.0 applies clusterName and leaves
# nominatedClusterNames out of its apply, which removes the list only if no other field
# manager owns it. Written any other way (kubectl patch --type=merge: manager kubectl-patch)
# the list stays, and every attempt of Kueue to set clusterName is refused ("clusterName and
# nominatedClusterNames are mutually exclusive"): the job runs on the worker while the
# manager's check stays Pending and its Job suspended. An apply as kueue-admission with
# nominatedClusterNames alone drops the fields kueue-admission owns (status.admission, the
# QuotaReserved condition): the Workload loses its quota reservation and queues again.
set -euo pipefail
(($# >= 2)) || { sed -n '2,4s/^# \{0,1\}//p' "$0" >&2; exit 2; }
ns=$1 wl=$2
shift 2
kubectl -n "$ns" get workload "$wl" -o json | python3 -c '
import json, sys
o = json.load(sys.stdin)
m, st = o["metadata"], o.get("status", {})
if sys.argv[1:]:
    st["nominatedClusterNames"] = sys.argv[1:]
else:
    st.pop("nominatedClusterNames", None)
keep = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations")
print(json.dumps({"apiVersion": o["apiVersion"], "kind": o["kind"],
                  "metadata": {k: m[k] for k in keep if k in m}, "status": st}))' "$@" |
  kubectl apply --server-side --subresource=status --field-manager=kueue-admission --force-conflicts -f -
