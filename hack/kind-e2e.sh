#!/usr/bin/env bash
# End-to-end test for users, on kind (Kubernetes IN Docker). It NEEDS a Docker engine: kind
# runs each Kubernetes node as a Docker container, and the operator image is built with
# `docker build`. (The project's own CI runs without Docker, against a local control plane
# with kwok nodes: hack/cluster.sh and hack/test-chart.sh.)
#
#   hack/kind-e2e.sh
#
# It creates a kind cluster, builds the operator image from this checkout and loads it into
# the cluster, installs charts/carbonshift with a 1-minute forecast file (a repeating
# clean/dirty cycle, so things happen within minutes rather than hours), checks every
# manifest in examples/ against the API server (server-side dry run), runs
# examples/checkpointing (a real pause-and-resume job that checkpoints on SIGTERM) until it
# succeeds, and prints the emissions it avoided.
#
# Settings (environment):
#   KIND_CLUSTER_NAME   cluster name (default carbonshift-e2e); an existing one is reused
#   KIND_NODE_IMAGE     kindest/node image (default: kind's own default)
#   KIND_KEEP=1         keep the cluster afterwards (default: delete it)
#   IMAGE               image to build and load (default ghcr.io/carbonshift/carbonshift:e2e)
#   E2E_TIMEOUT         seconds to wait for the job to succeed (default 1500)
# Needs: docker, kind (>= 0.20), kubectl, helm (>= 3.12), python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CLUSTER=${KIND_CLUSTER_NAME:-carbonshift-e2e}
IMAGE=${IMAGE:-ghcr.io/carbonshift/carbonshift:e2e}
NS=carbonshift-system
JOB=checkpointing-demo
JOB_NS=default
TIMEOUT=${E2E_TIMEOUT:-1500}
WORK=$(mktemp -d)

log() { printf '\n[kind-e2e] %s\n' "$*"; }
die() { printf '[kind-e2e] FAIL: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl helm python3; do
  command -v "$tool" > /dev/null || die "$tool not found (see the header of $0)"
done
docker info > /dev/null 2>&1 || die "no Docker engine reachable: kind needs Docker (or a Docker-compatible engine)"

diagnostics() {
  log "diagnostics"
  kubectl get caj,jobs,pods,pvc -A -o wide || true
  kubectl -n "$NS" logs deployment/carbonshift --tail=200 || true
  kubectl get events -A --sort-by=.lastTimestamp | tail -n 60 || true
}
cleanup() {
  local rc=$?
  [[ $rc -ne 0 ]] && diagnostics
  if [[ ${KIND_KEEP:-0} != 1 ]]; then
    kind delete cluster --name "$CLUSTER" > /dev/null 2>&1 || true
  else
    log "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

log "cluster $CLUSTER"
if ! kind get clusters 2> /dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 180s
fi
kubectl config use-context "kind-$CLUSTER" > /dev/null

log "image $IMAGE"
docker build -t "$IMAGE" \
  --build-arg VERSION="$(git describe --tags --always --dirty 2> /dev/null || echo dev)" \
  --build-arg REVISION="$(git rev-parse HEAD 2> /dev/null || echo unknown)" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "forecast: a 1-minute CSV repeating every 10 minutes (4 dirty, 3 clean, 3 middling)"
python3 - > "$WORK/forecast.csv" << 'PY'
from datetime import datetime, timedelta, timezone
t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)
print("timestamp,gco2_per_kwh")
for i in range(12 * 60):
    t = t0 + timedelta(minutes=i)
    m = t.minute % 10
    value = 420 + 5 * m if m < 4 else 90 + 3 * (m - 4) if m < 7 else 300
    print(f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{value}")
PY

log "helm install"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
# The chart's pods meet the restricted Pod Security Standard: enforce it.
kubectl label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=restricted
kubectl -n "$NS" create configmap grid-forecast --from-file=forecast.csv="$WORK/forecast.csv" \
  --dry-run=client -o yaml | kubectl apply -f -
helm upgrade --install carbonshift charts/carbonshift -n "$NS" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set region=DE \
  --set forecast.provider=file --set forecast.fileConfigMap.name=grid-forecast \
  --set forecast.refresh=1m --set forecast.fallback=none \
  --set logFormat=text \
  --wait --timeout 5m
kubectl -n "$NS" rollout status deployment/carbonshift --timeout=180s

log "every example is valid (server-side dry run)"
while IFS= read -r f; do
  echo "  $f"
  kubectl apply --dry-run=server -f "$f" > /dev/null || die "$f is rejected by the API server"
done < <(find examples -name '*.yaml' ! -name kustomization.yaml | sort)

log "run examples/checkpointing (pause and resume with checkpoints)"
kubectl apply -k examples/checkpointing
deadline=$((SECONDS + TIMEOUT))
last=""
while :; do
  line=$(kubectl -n "$JOB_NS" get caj "$JOB" --no-headers 2> /dev/null || true)
  [[ $line != "$last" ]] && printf '  %(%H:%M:%S)T  %s\n' -1 "$line"
  last=$line
  phase=$(kubectl -n "$JOB_NS" get caj "$JOB" -o jsonpath='{.status.phase}' 2> /dev/null || true)
  [[ $phase == Succeeded ]] && break
  [[ $phase == Failed ]] && die "$JOB failed"
  ((SECONDS < deadline)) || die "$JOB did not succeed within ${TIMEOUT}s (phase ${phase:-none})"
  sleep 5
done

log "result"
kubectl -n "$JOB_NS" get caj "$JOB" -o jsonpath='{"pauses: "}{.status.pauses}{"\nruntime: "}{.status.runtimeSeconds}{" s\nenergy: "}{.status.energyKWh}{" kWh\nemitted: "}{.status.emissionsGrams}{" gCO2eq\nrun-now baseline: "}{.status.baselineGrams}{" gCO2eq\n"}'
avoided=$(kubectl -n "$JOB_NS" get caj "$JOB" -o jsonpath='{.status.avoidedGrams}')
echo "AVOIDED EMISSIONS: ${avoided} gCO2eq (versus running at once)"
echo "training log of the last pod:"
kubectl -n "$JOB_NS" logs -l job-name="$JOB" --tail=5 2> /dev/null | sed 's/^/  /' || true
grep -Eq '^[0-9.e+-]+$' <<< "$avoided" || die "status.avoidedGrams missing"

log "metrics"
kubectl -n "$NS" port-forward svc/carbonshift-metrics 18080:8080 > /dev/null 2>&1 &
pf=$!
sleep 3
curl -sf localhost:18080/metrics | grep -E '^carbonshift_(avoided_emissions_grams_total|transitions_total|jobs)' || true
kill "$pf" 2> /dev/null || true
log "PASS"
