#!/usr/bin/env python3
"""Assertions on `helm template` output of charts/carbonshift (called by hack/test-chart.sh).

    chart_assertions.py MODE RENDERED.yaml [CHART_DIR]

MODE is default | all-on | namespaced | no-crds | no-keep | rbac-comments. Prints one
PASS/FAIL line per assertion; exits 1 if any failed.
"""
import json
import os
import re
import sys

import yaml

mode, rendered = sys.argv[1], sys.argv[2]
chart = sys.argv[3] if len(sys.argv) > 3 else "charts/carbonshift"
failed = 0


def check(cond, what):
    global failed
    print(("PASS: " if cond else "FAIL: ") + f"[{mode}] {what}")
    if not cond:
        failed += 1
    return cond


def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]


def find(docs, kind, name_re=".*"):
    return [d for d in docs if d["kind"] == kind and re.fullmatch(name_re, d["metadata"]["name"])]


def one(docs, kind, name_re=".*"):
    found = find(docs, kind, name_re)
    if not check(len(found) == 1, f"exactly one {kind} matching {name_re!r} (found {len(found)})"):
        return None
    return found[0]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def rules_of(role):
    return sorted(
        (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))), tuple(sorted(r.get("verbs", []))))
        + ((tuple(r["resourceNames"]),) if r.get("resourceNames") else ())
        for r in role["rules"])


chart_meta = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))

# What the operator needs, and nothing else (the RBAC contract, see docs/install.md#rbac).
CORE_RULES = sorted([
    (("carbonshift.io",), ("carbonawarejobs",), ("get", "list", "watch")),
    (("carbonshift.io",), ("carbonawarejobs/status",), ("get", "patch")),
    (("carbonshift.io",), ("carbonawarejobs/finalizers",), ("update",)),
    (("batch",), ("jobs",), tuple(sorted(["create", "get", "list", "watch", "patch"]))),
    (("events.k8s.io",), ("events",), ("create", "patch")),
])
LEASE_RULES = sorted([
    (("coordination.k8s.io",), ("leases",), ("create",)),
    (("coordination.k8s.io",), ("leases",), ("get", "update"), ("carbonshift-leader",)),
])
NODE_RULES = [(("",), ("nodes",), ("get", "list"))]

if mode == "rbac-comments":
    # Every RBAC rule in the template carries a comment saying why.
    lines = open(rendered).read().splitlines()
    bad = [i + 1 for i, l in enumerate(lines)
           if l.strip().startswith("- apiGroups:") and not lines[i - 1].strip().startswith("#")]
    check(not bad, f"every rule in templates/rbac.yaml has a comment line above it (missing at lines {bad})")
    sys.exit(1 if failed else 0)

docs = load(rendered)

unlabelled = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
              if "helm.sh/chart" not in d["metadata"].get("labels", {})]
check(not unlabelled, f"all {len(docs)} objects carry the standard labels {unlabelled or ''}")

dep = one(docs, "Deployment")
crds = find(docs, "CustomResourceDefinition")

if dep and mode in ("default", "all-on"):
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    # Restricted Pod Security Standard, field by field.
    check(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True, "runAsNonRoot")
    check(psc.get("runAsUser") == 65532 and isinstance(psc.get("runAsUser"), int), "numeric runAsUser 65532")
    check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc.get("capabilities", {}).get("add"),
          "capabilities drop ALL, add none")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    check(not pod.get("hostNetwork") and not pod.get("hostPID") and
          not any("hostPath" in v for v in pod.get("volumes", [])), "no host namespaces or hostPath")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz",
          "probes on /healthz and /readyz")
    check(c["args"][0] == "run", "container runs `carbonshift run`")
    check(env.get("CARBONSHIFT_LEADER_ELECTION") == "true", "leader election on")
    check(env.get("CARBONSHIFT_LEASE_NAME") == "carbonshift-leader", "Lease named after the release")
    check(c["resources"].get("requests") and c["resources"].get("limits", {}).get("memory"),
          "resource requests and a memory limit")
    svc = one(docs, "Service")
    if svc:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
              "metrics Service selects the operator pods")
        check(svc["spec"]["ports"][0]["targetPort"] == "http-metrics" and
              any(p["name"] == "http-metrics" for p in c["ports"]), "Service targets the http-metrics port")
if dep:
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]

if mode == "default":
    check(c["image"] == f"ghcr.io/carbonshift/carbonshift:{chart_meta['appVersion']}", f"image tag defaults to appVersion ({c['image']})")
    check(dep["spec"]["replicas"] == 1, "one replica by default")
    check(env.get("CARBONSHIFT_FORECAST_PROVIDER") == "embedded", "embedded provider by default")
    check(not any(k.endswith("_FILE") and "TOKEN" in k for k in env), "no credentials without a Secret")
    cr = one(docs, "ClusterRole", r".*carbonshift")
    if cr:
        check(rules_of(cr) == CORE_RULES, "ClusterRole grants exactly the operator's needs")
    crb = one(docs, "ClusterRoleBinding")
    if crb:
        check(crb["subjects"][0]["name"] == sa, "ClusterRoleBinding binds the pod's ServiceAccount")
    le = one(docs, "Role", r".*leader-election")
    if le:
        check(rules_of(le) == LEASE_RULES, "leader-election Role grants Leases only")
    check(not any(r for d in find(docs, "ClusterRole") for r in d["rules"] if "nodes" in r["resources"]),
          "no node access unless regionDiscovery.fromNodeLabels")
    for kind in ("ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "ConfigMap"):
        check(not find(docs, kind), f"no {kind} by default")
    check(len(crds) == 1, "the CRD is rendered (crds.enabled defaults to true)")
    if crds:
        crd = crds[0]
        src = yaml.safe_load(open(os.path.join(chart, "files/crds/carbonshift.io_carbonawarejobs.yaml")))
        check(crd["metadata"]["name"] == "carbonawarejobs.carbonshift.io", "CRD name carbonawarejobs.carbonshift.io")
        check(crd["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep",
              "CRD annotated helm.sh/resource-policy: keep")
        check(crd["spec"] == src["spec"], "CRD spec is the chart's copy of crds/, unchanged")
        names = crd["spec"]["names"]
        check(names["shortNames"] == ["caj"] and names["plural"] == "carbonawarejobs", "CRD names caj/carbonawarejobs")

if mode == "all-on":
    check(dep["spec"]["replicas"] == 2, "two replicas")
    check(env.get("CARBONSHIFT_REGION") == "DE", "region passed")
    check(env.get("CARBONSHIFT_FORECAST_REFRESH") == "10m" and env.get("CARBONSHIFT_FORECAST_MAX_AGE") == "3h"
          and env.get("CARBONSHIFT_FORECAST_FALLBACK") == "embedded", "refresh/maxAge/fallback passed")
    check(env.get("CARBONSHIFT_REGION_MAP") == "eu-central-1=DE;europe-west2=GB,uk=13", "region map joined with ;")
    pod = dep["spec"]["template"]["spec"]
    tok = env.get("ELECTRICITYMAPS_TOKEN_FILE", "")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    check("ELECTRICITYMAPS_TOKEN" not in env, "the token itself is never in the pod spec")
    check(tok.endswith("/ELECTRICITYMAPS_TOKEN") and "forecast-credentials" in mounts
          and tok.startswith(mounts["forecast-credentials"]["mountPath"] + "/")
          and mounts["forecast-credentials"].get("readOnly") is True,
          "ELECTRICITYMAPS_TOKEN_FILE points into the read-only Secret mount")
    check(vols.get("forecast-credentials", {}).get("secret", {}).get("secretName") == "carbonshift-forecast",
          "credentials volume is forecast.existingSecret")
    check(pod.get("priorityClassName") == "system-cluster-critical" and pod.get("tolerations")
          and pod.get("nodeSelector") and pod.get("topologySpreadConstraints"), "scheduling knobs passed through")
    sm = one(docs, "ServiceMonitor")
    if sm:
        ep = sm["spec"]["endpoints"][0]
        check(ep["port"] == "http-metrics" and ep["path"] == "/metrics", "ServiceMonitor scrapes http-metrics /metrics")
        check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "ServiceMonitor extra labels")
        svc_labels = one(docs, "Service")["metadata"]["labels"]
        check(all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
              "ServiceMonitor selects the metrics Service")
    pr = one(docs, "PrometheusRule")
    if pr:
        src = yaml.safe_load(open(os.path.join(chart, "files/alerts.yaml")))
        check(pr["spec"]["groups"] == src["groups"], "PrometheusRule groups are files/alerts.yaml, unchanged")
        for g in pr["spec"]["groups"]:
            for r in g["rules"]:
                a = r.get("annotations", {})
                check(all(k in a for k in ("summary", "description", "runbook", "runbook_url")),
                      f"alert {r['alert']} has summary, description, runbook and runbook_url")
    cm = one(docs, "ConfigMap", r".*dashboard")
    if cm:
        check(cm["metadata"]["labels"].get("grafana_dashboard") == "1", 'dashboard ConfigMap labelled grafana_dashboard: "1"')
        dash = json.loads(cm["data"]["carbonshift.json"])
        check(dash == json.load(open(os.path.join(chart, "files/dashboard.json"))),
              "dashboard ConfigMap holds files/dashboard.json, unchanged")
    one(docs, "PodDisruptionBudget")
    nodes = one(docs, "ClusterRole", r".*-nodes")
    if nodes:
        check(rules_of(nodes) == NODE_RULES, "node ClusterRole is get/list on nodes only")

if mode == "namespaced":
    role = one(docs, "Role", r".*carbonshift")
    if role:
        check(role["metadata"]["namespace"] == "ml-team", "operator Role lives in watchNamespace")
        check(rules_of(role) == CORE_RULES, "Role grants exactly the operator's needs")
    rb = one(docs, "RoleBinding", r".*carbonshift")
    if rb:
        check(rb["metadata"]["namespace"] == "ml-team" and rb["roleRef"]["kind"] == "Role", "RoleBinding in watchNamespace")
    check(not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding"), "no cluster-wide RBAC")
    check(env.get("CARBONSHIFT_NAMESPACE") == "ml-team", "CARBONSHIFT_NAMESPACE passed")
    le = one(docs, "Role", r".*leader-election")
    if le:
        check(le["metadata"]["namespace"] != "ml-team", "leader-election Role stays in the release namespace")

if mode == "no-crds":
    check(not crds, "crds.enabled=false renders no CRD")

if mode == "no-keep":
    check(len(crds) == 1 and "helm.sh/resource-policy" not in crds[0]["metadata"].get("annotations", {}),
          "crds.keep=false drops the keep annotation")

sys.exit(1 if failed else 0)
