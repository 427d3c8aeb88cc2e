#!/usr/bin/env python3
"""What hack/test-chart.sh asserts. The shell runs helm, kubectl, promtool and the operator;
this file says what their output must be. Each judging mode prints one PASS/FAIL line per
assertion (details indented under a FAIL) and exits 1 if any failed.

Renders (`helm template` output):
    chart_assertions.py default|all-on|namespaced|no-crds|no-keep RENDERED.yaml [CHART_DIR]
    chart_assertions.py rbac-comments TEMPLATES/rbac.yaml
    chart_assertions.py stale-rule RENDERED.yaml SECONDS FOR   (forecastStaleAfterSeconds/For set)
    chart_assertions.py watttime RENDERED.yaml SECRET           (forecast.existingSecret=SECRET)
    chart_assertions.py file-provider RENDERED.yaml CONFIGMAP   (forecast.fileConfigMap.name)
    chart_assertions.py env-vars RUN_HELP.txt RENDERED.yaml...  (every CARBONSHIFT_* is read)
    chart_assertions.py rules-file RENDERED.yaml OUT.yaml       (writes the PrometheusRule's rules)

Commands planned here, run by the shell (one a line: ID<TAB>ARG<TAB>ARG...; the shell runs
them as `TOOL ARG...` through its `capture`), then judged here:
    chart_assertions.py plan values CHART RELEASE NAMESPACE KUBE_VERSION   helm arguments
    chart_assertions.py plan can-i NAMESPACE JOBS_NAMESPACE SUBJECT        kubectl arguments

Judges of commands the shell captured (RUNS/ID.out, RUNS/ID.err, RUNS/ID.rc):
    chart_assertions.py refused RUNS ID...        values (all planned value refusals) or the
                                                  ids of CLUSTER_REFUSALS
    chart_assertions.py can-i RUNS NAMESPACE JOBS_NAMESPACE SUBJECT
    chart_assertions.py dry-run RUNS MODE...      ids dry-run-MODE
    chart_assertions.py notes RUNS                id notes (`helm get notes`)
    chart_assertions.py identity RUNS SUBJECT     id whoami (`kubectl auth whoami`)
    chart_assertions.py job RUNS                  ids caj and events (`kubectl get -o json`)
    chart_assertions.py leader RUNS PREFIX        ids standby-while-led, lease-holder,
                                                  standby-after

Files the operator wrote:
    chart_assertions.py operator-log LOG
    chart_assertions.py metrics METRICS.txt       (a /metrics scrape)

Fixtures:
    chart_assertions.py forecast-csv OUT.csv      a flat-ish 1-minute forecast around now
"""
import json
import os
import re
import sys
from datetime import datetime, timedelta, timezone

import yaml

mode = sys.argv[1] if len(sys.argv) > 1 else ""
failed = 0


def check(cond, what, details=""):
    global failed
    print(("PASS: " if cond else "FAIL: ") + f"[{mode}] {what}")
    if not cond:
        failed += 1
        for line in str(details).splitlines()[-25:]:
            print(f"    | {line}")
    return cond


def usage(msg):
    sys.exit(f"chart_assertions.py: {msg} (usage: the docstring at the top of {__file__})")


def args(n, names):
    """The mode's arguments; exits with usage when fewer than n are given."""
    rest = sys.argv[2:]
    if len(rest) < n:
        usage(f"{mode} wants {names}")
    return rest


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


def operator_container(docs):
    dep = one(docs, "Deployment")
    return (dep, dep["spec"]["template"]["spec"]["containers"][0]) if dep else (None, None)


def rules_of(role):
    return sorted(
        (tuple(sorted(r.get("apiGroups", []))), tuple(sorted(r.get("resources", []))), tuple(sorted(r.get("verbs", []))))
        + ((tuple(r["resourceNames"]),) if r.get("resourceNames") else ())
        for r in role["rules"])


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
# kueue.enabled: the namespaced part (in the operator's Role or ClusterRole) and the
# cluster-scoped part (its own ClusterRole).
KUEUE_RULES = sorted([
    (("kueue.x-k8s.io",), ("workloads",), ("get", "list", "patch", "watch")),
    (("kueue.x-k8s.io",), ("workloads/status",), ("patch",)),
    (("carbonshift.io",), ("carbonwindows",), ("create", "get", "list", "patch")),
    (("carbonshift.io",), ("carbonwindows/status",), ("patch",)),
    (("",), ("pods",), ("list", "watch")),
    (("jobset.x-k8s.io",), ("jobsets",), ("get",)),
])
MULTIKUEUE_CLUSTER_RULES = [
    (("kueue.x-k8s.io",), ("admissionchecks", "multikueueclusters", "multikueueconfigs"), ("get", "list", "watch")),
]
KUEUE_CLUSTER_RULES = sorted([
    (("kueue.x-k8s.io",), ("admissionchecks",), ("get", "list", "watch")),
    (("kueue.x-k8s.io",), ("admissionchecks/status",), ("patch",)),
    (("carbonshift.io",), ("carbonwindowparameters",), ("get",)),
])

# Values the chart must refuse, each for its own reason: id -> (what, regex the error must
# match, the `helm template` --set values).
VALUE_REFUSALS = {
    "stale-for": ("prometheusRule.forecastStaleFor that is no duration", "forecastStaleFor",
                  ["prometheusRule.enabled=true", "prometheusRule.forecastStaleFor=soon"]),
    "replicas": ("replicaCount 2 without leader election", "leaderElection",
                 ["replicaCount=2", "leaderElection.enabled=false"]),
    "file-no-file": ("provider file without a file", "forecast.file", ["forecast.provider=file"]),
    "fallback-no-file": ("fallback file without a file", "forecast.file", ["forecast.fallback=file"]),
    "em-no-secret": ("provider electricitymaps without a Secret", "existingSecret",
                     ["forecast.provider=electricitymaps"]),
    "provider": ("unknown provider (schema)", "provider", ["forecast.provider=bogus"]),
    "misspelt": ("misspelt value key (schema)", "additional properties|not allowed|replicacount",
                 ["replicacount=2"]),
    "duration": ("bad duration (schema)", "refresh|pattern", ["forecast.refresh=5min"]),
    # Not a value: the chart's kubeVersion constraint (rendered without --namespace and with
    # this --kube-version instead of the default one).
    "old-kube": ("Kubernetes older than 1.29", "kubeVersion", None),
}
OLD_KUBE = "v1.27.0"

# Requests the cluster must refuse: id -> (what, regex the error must match). The shell
# captures these under the same ids.
CLUSTER_REFUSALS = {
    "secret-delete": ("the operator's identity cannot delete a Secret (real request)", "forbidden"),
    "deployment-gone": ("operator Deployment removed", "not ?found"),
    "clusterrole-gone": ("operator ClusterRole removed", "not ?found"),
}

# `kubectl auth can-i` as the chart's ServiceAccount: what it must be allowed, and what
# refused ({ns}: the release namespace, {jobs}: a namespace of CarbonAwareJobs).
CAN_I_ALLOWED = [
    "list carbonawarejobs.carbonshift.io -A",
    "watch carbonawarejobs.carbonshift.io -A",
    "patch carbonawarejobs.carbonshift.io --subresource=status -n {jobs}",
    "create jobs.batch -n {jobs}",
    "patch jobs.batch -n {jobs}",
    "create events.events.k8s.io -n {jobs}",
    "update leases.coordination.k8s.io/carbonshift-leader -n {ns}",
]
CAN_I_DENIED = [
    "get secrets -n {ns}",
    "list secrets -A",
    "create carbonawarejobs.carbonshift.io -n {jobs}",
    "delete carbonawarejobs.carbonshift.io -n {jobs}",
    "update carbonawarejobs.carbonshift.io -n {jobs}",
    "patch carbonawarejobs.carbonshift.io -n {jobs}",
    "update jobs.batch -n {jobs}",
    "delete jobs.batch -n {jobs}",
    "create events -n {jobs}",
    "create pods -n {jobs}",
    "delete pods -n {jobs}",
    "list nodes",
    "update leases.coordination.k8s.io/someone-elses-lease -n {ns}",
    "update leases.coordination.k8s.io -n kube-system",
    "create customresourcedefinitions.apiextensions.k8s.io",
    "create clusterrolebindings.rbac.authorization.k8s.io",
    "* *",
]


def can_i_cases(ns, jobs):
    """(id, argument list, expected answer), allowed first."""
    cases = []
    for prefix, answer, lst in (("allow", "yes", CAN_I_ALLOWED), ("deny", "no", CAN_I_DENIED)):
        for i, a in enumerate(lst, 1):
            cases.append((f"can-i-{prefix}-{i:02d}", a.format(ns=ns, jobs=jobs).split(" "), answer))
    return cases


# --- captured commands ---------------------------------------------------------------------

def outcome(runs, id_):
    """(exit status, stdout, stderr) of the command the shell captured as id_, or None."""
    base = os.path.join(runs, id_)
    try:
        rc = int(open(base + ".rc").read().strip())
    except (OSError, ValueError):
        return None

    def text(ext):
        try:
            return open(base + ext, errors="replace").read()
        except OSError:
            return ""
    return rc, text(".out"), text(".err")


def ran(runs, id_, what):
    """The outcome of id_; a FAIL when the shell did not run it."""
    o = outcome(runs, id_)
    if o is None:
        check(False, f"{what}: not run (no capture {id_!r} in {runs})")
    return o


def plan(kind):
    if kind == "values":
        chart, release, ns, kube = args(5, "values CHART RELEASE NAMESPACE KUBE_VERSION")[1:5]
        for id_, (_, _, sets) in VALUE_REFUSALS.items():
            if sets is None:
                argv = ["template", release, chart, "--kube-version", OLD_KUBE]
            else:
                argv = ["template", release, chart, "--namespace", ns, "--kube-version", kube]
                for s in sets:
                    argv += ["--set", s]
            print("\t".join([id_] + argv))
    elif kind == "can-i":
        ns, jobs, subject = args(4, "can-i NAMESPACE JOBS_NAMESPACE SUBJECT")[1:4]
        for id_, argv, _ in can_i_cases(ns, jobs):
            print("\t".join([id_, "auth", "can-i"] + argv + [f"--as={subject}"]))
    else:
        usage(f"unknown plan {kind!r}")


def refused(runs, ids):
    table = {k: v[:2] for k, v in VALUE_REFUSALS.items()} | CLUSTER_REFUSALS
    if ids == ["values"]:
        ids = list(VALUE_REFUSALS)
    for id_ in ids:
        if id_ not in table:
            usage(f"no refusal {id_!r}")
        what, regex = table[id_]
        o = ran(runs, id_, what)
        if o is None:
            continue
        rc, out, err = o
        text = out + err
        if rc == 0:
            check(False, f"{what}: was accepted", text)
        elif re.search(regex, text, re.I):
            check(True, what)
        else:
            check(False, f"{what}: failed, but not with /{regex}/", text)


def can_i(runs, ns, jobs, subject):
    for id_, argv, answer in can_i_cases(ns, jobs):
        what = f"can-i {' '.join(argv)}"
        o = ran(runs, id_, what)
        if o is None:
            continue
        got = o[1].strip()
        check(got == answer, f"{what}: {answer}" if got == answer else f"{what}: expected {answer}, got {got!r}",
              o[2])


def dry_run(runs, modes):
    # Pod Security warnings (restricted is enforced in the release namespace) count as failures.
    for m in modes:
        what = f"API server accepts the {m} render (dry-run=server, strict)"
        o = ran(runs, f"dry-run-{m}", what)
        if o is None:
            continue
        rc, out, err = o
        check(rc == 0 and not re.search("would violate PodSecurity", out + err, re.I), what, out + err)


def notes(runs):
    o = ran(runs, "notes", "helm get notes")
    if o is not None:
        missing = [c for c in ("kubectl apply -f", "kubectl get caj -w") if c not in o[1]]
        check(o[0] == 0 and not missing, f"NOTES.txt tells the user the next commands (missing {missing})"
              if missing else "NOTES.txt tells the user the next commands", o[1] + o[2])


def identity(runs, subject):
    o = ran(runs, "whoami", "kubectl auth whoami")
    if o is not None:
        got = o[1].strip()
        check(o[0] == 0 and got == subject, f"the ServiceAccount's kubeconfig authenticates as {subject} (got {got!r})",
              o[2])


def job(runs):
    o = ran(runs, "caj", "kubectl get caj")
    if o is not None:
        try:
            st = json.loads(o[1]).get("status", {}) if o[0] == 0 else {}
        except json.JSONDecodeError:
            st = {}
        grams = st.get("emissionsGrams")
        check(st.get("phase") == "Succeeded",
              f"CarbonAwareJob completed (phase Succeeded) under the chart's RBAC (phase {st.get('phase')!r})")
        check(isinstance(grams, (int, float)) and grams > 0,
              f"status carries accounted emissions (emissionsGrams {grams!r})", o[1][-2000:] + o[2])
    o = ran(runs, "events", "kubectl get events")
    if o is not None:
        try:
            items = json.loads(o[1]).get("items", []) if o[0] == 0 else []
        except json.JSONDecodeError:
            items = []
        check(len(items) >= 1, f"the operator recorded Events for the job ({len(items)})", o[2])


def leader(runs, prefix):
    o = ran(runs, "standby-while-led", "standby log")
    if o is not None:
        check("became leader" not in o[1], "a second replica stays standby while the first holds the Lease", o[1])
    o = ran(runs, "lease-holder", "kubectl get lease")
    if o is not None:
        holder = o[1].strip()
        check(holder.startswith(prefix), f"Lease carbonshift-leader held by the first replica (holder {holder!r})",
              o[2])
    o = ran(runs, "standby-after", "standby log")
    if o is not None:
        check("became leader" in o[1], "the standby takes over when the leader stops", o[1])


def operator_log(path):
    # The one expected refusal: listing nodes for the default region, which the operator
    # tries best-effort and the chart only allows with regionDiscovery.fromNodeLabels.
    lines = open(path, errors="replace").read().splitlines()
    bad = [l for l in lines if "forbidden" in l.lower() and "cannot list nodes" not in l]
    check(lines and not bad, "operator log has no 'forbidden' API errors (other than the optional node list)"
          + ("" if lines else ": the log is empty"), "\n".join(bad[:5]))


def metrics(path):
    text = open(path, errors="replace").read()
    m = re.search(r'^carbonshift_transitions_total\{action="start"\} (\S+)$', text, re.M)
    value = float(m.group(1)) if m else None
    check(value is not None and value >= 1, f'carbonshift_transitions_total{{action="start"}} counted the start ({value})')


def forecast_csv(out):
    # A 1-minute forecast around now (from 30 minutes ago, 6 hours), flat but for a ramp
    # within each hour: a RunNow job starts at once.
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)
    with open(out, "w") as f:
        f.write("timestamp,gco2_per_kwh\n")
        for i in range(6 * 60):
            f.write(f"{(t0 + timedelta(minutes=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},{250 + (i % 60)}\n")


# --- renders -------------------------------------------------------------------------------

def rbac_comments(path):
    # Every RBAC rule in the template carries a comment saying why.
    lines = open(path).read().splitlines()
    bad = [i + 1 for i, l in enumerate(lines)
           if l.strip().startswith("- apiGroups:") and not lines[i - 1].strip().startswith("#")]
    rules = sum(1 for l in lines if l.strip().startswith("- apiGroups:"))
    check(rules and not bad, f"every rule in templates/rbac.yaml ({rules}) has a comment line above it "
          f"(missing at lines {bad})")


def stale_rule(path, seconds, hold):
    alerts = [r for d in load(path) if d["kind"] == "PrometheusRule"
              for g in d["spec"]["groups"] for r in g["rules"] if r.get("alert") == "CarbonshiftForecastStale"]
    if check(len(alerts) == 1, f"one CarbonshiftForecastStale alert (found {len(alerts)})"):
        r = alerts[0]
        check(r["expr"].rstrip().endswith(f"> {seconds}") and r.get("for") == hold,
              f"prometheusRule.forecastStaleAfterSeconds/For set CarbonshiftForecastStale's threshold "
              f"({seconds}) and hold time ({hold})", json.dumps(r, indent=1))


def credentials_mount(docs, secret):
    """The container, its env and the mount path of the forecast credentials Secret."""
    dep, c = operator_container(docs)
    if not dep:
        return None, {}, None
    pod = dep["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vol = vols.get("forecast-credentials", {}).get("secret", {}).get("secretName")
    check(vol == secret, f"credentials volume is forecast.existingSecret {secret!r} ({vol!r})")
    m = mounts.get("forecast-credentials", {})
    return c, env_of(c), (m.get("mountPath") if m.get("readOnly") is True else None)


def watttime(path, secret):
    c, env, mount = credentials_mount(load(path), secret)
    if c:
        files = [env.get(f"WATTTIME_{k}_FILE") or "" for k in ("USERNAME", "PASSWORD")]
        check(mount and all(f == f"{mount}/WATTTIME_{k}" for f, k in zip(files, ("USERNAME", "PASSWORD")))
              and not {"WATTTIME_USERNAME", "WATTTIME_PASSWORD"} & set(env),
              "watttime credentials passed as *_FILE in the read-only Secret mount", f"{files}, mount {mount}")


def file_provider(path, configmap):
    dep, c = operator_container(load(path))
    if c:
        env = env_of(c)
        pod = dep["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        mounted = {m["mountPath"]: vols.get(m["name"], {}).get("configMap", {}).get("name")
                   for m in c.get("volumeMounts", [])}
        f = env.get("CARBONSHIFT_FORECAST_FILE") or ""
        check(env.get("CARBONSHIFT_FORECAST_PROVIDER") == "file" and f == "/etc/carbonshift/forecast/forecast.csv"
              and mounted.get(os.path.dirname(f)) == configmap,
              f"file provider reads the mounted ConfigMap {configmap!r}", f"{f!r}, mounts {mounted}")


def env_vars(help_path, renders):
    # Every CARBONSHIFT_* variable the chart sets must be one `carbonshift run` reads (clap
    # shows each as `[env: NAME=]`; the wrapped help may break the line after `env:`).
    read = set(re.findall(r"\[env:\s+(CARBONSHIFT_[A-Z0-9_]+)=", open(help_path).read()))
    set_ = set()
    for r in renders:
        for d in load(r):
            if d["kind"] == "Deployment":
                for c in d["spec"]["template"]["spec"]["containers"]:
                    set_ |= {k for k in env_of(c) if k.startswith("CARBONSHIFT_")}
    check(read, f"carbonshift run --help names the variables it reads ({len(read)})")
    check(set_, f"the renders set CARBONSHIFT_* variables ({len(set_)})")
    missing = sorted(set_ - read)
    check(not missing, "every CARBONSHIFT_* env var the chart sets is read by carbonshift run"
          + (f"; not read: {' '.join(missing)}" if missing else ""))


def rules_file(path, out):
    # The PrometheusRule as rendered, back into a rule file: what prometheus-operator loads.
    rules = [d for d in load(path) if d["kind"] == "PrometheusRule"]
    if check(len(rules) == 1, f"one PrometheusRule in the render to check as a rule file (found {len(rules)})"):
        with open(out, "w") as f:
            yaml.safe_dump(rules[0]["spec"], f)


def render(rendered, chart):
    chart_meta = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))
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
        check(not find(docs, "ClusterRole", r".*-kueue") and "CARBONSHIFT_KUEUE_ADMISSION_CHECKS" not in env,
              "no Kueue controller or Kueue RBAC unless kueue.enabled")
        check(not find(docs, "ClusterRole", r".*-multikueue") and "CARBONSHIFT_MULTIKUEUE_DISPATCHER" not in env,
              "no MultiKueue dispatcher or its RBAC unless multikueue.dispatcher")
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
        check(env.get("CARBONSHIFT_KUEUE_ADMISSION_CHECKS") == "true", "kueue.enabled runs the admission check controller")
        cr = one(docs, "ClusterRole", r".*carbonshift")
        if cr:
            check(rules_of(cr) == sorted(CORE_RULES + KUEUE_RULES),
                  "ClusterRole grants exactly the operator's and the Kueue controller's needs")
        kr = one(docs, "ClusterRole", r".*-kueue")
        if kr:
            check(rules_of(kr) == KUEUE_CLUSTER_RULES, "Kueue ClusterRole: AdmissionChecks and their parameters only")
        kb = one(docs, "ClusterRoleBinding", r".*-kueue")
        if kb:
            check(kb["roleRef"]["name"] == kr["metadata"]["name"] if kr else False, "Kueue ClusterRoleBinding binds it")
        check(env.get("CARBONSHIFT_MULTIKUEUE_DISPATCHER") == "true" and env.get("CARBONSHIFT_DISPATCH_TIMEOUT") == "2m",
              "multikueue.dispatcher runs the dispatcher with multikueue.dispatchTimeout")
        mr = one(docs, "ClusterRole", r".*-multikueue")
        if mr:
            check(rules_of(mr) == MULTIKUEUE_CLUSTER_RULES,
                  "MultiKueue ClusterRole: read AdmissionChecks, MultiKueueConfigs and MultiKueueClusters only")
        mb = one(docs, "ClusterRoleBinding", r".*-multikueue")
        if mb:
            check(mb["roleRef"]["name"] == mr["metadata"]["name"] if mr else False, "MultiKueue ClusterRoleBinding binds it")
        check(sorted(d["metadata"]["name"] for d in crds) ==
              ["carbonawarejobs.carbonshift.io", "carbonwindowparameters.carbonshift.io", "carbonwindows.carbonshift.io"],
              "kueue.enabled adds the CarbonWindow and CarbonWindowParameters CRDs")

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


def main():
    a = sys.argv[2:]
    if mode in ("default", "all-on", "namespaced", "no-crds", "no-keep"):
        args(1, "RENDERED.yaml [CHART_DIR]")
        render(a[0], a[1] if len(a) > 1 else "charts/carbonshift")
    elif mode == "rbac-comments":
        rbac_comments(args(1, "TEMPLATES/rbac.yaml")[0])
    elif mode == "stale-rule":
        stale_rule(*args(3, "RENDERED.yaml SECONDS FOR")[:3])
    elif mode == "watttime":
        watttime(*args(2, "RENDERED.yaml SECRET")[:2])
    elif mode == "file-provider":
        file_provider(*args(2, "RENDERED.yaml CONFIGMAP")[:2])
    elif mode == "env-vars":
        a = args(2, "RUN_HELP.txt RENDERED.yaml...")
        env_vars(a[0], a[1:])
    elif mode == "rules-file":
        rules_file(*args(2, "RENDERED.yaml OUT.yaml")[:2])
    elif mode == "plan":
        plan(args(1, "values|can-i ...")[0])
        return
    elif mode == "refused":
        a = args(2, "RUNS ID...")
        refused(a[0], a[1:])
    elif mode == "can-i":
        can_i(*args(4, "RUNS NAMESPACE JOBS_NAMESPACE SUBJECT")[:4])
    elif mode == "dry-run":
        a = args(2, "RUNS MODE...")
        dry_run(a[0], a[1:])
    elif mode == "notes":
        notes(args(1, "RUNS")[0])
    elif mode == "identity":
        identity(*args(2, "RUNS SUBJECT")[:2])
    elif mode == "job":
        job(args(1, "RUNS")[0])
    elif mode == "leader":
        leader(*args(2, "RUNS HOLDER_PREFIX")[:2])
    elif mode == "operator-log":
        operator_log(args(1, "LOG")[0])
    elif mode == "metrics":
        metrics(args(1, "METRICS.txt")[0])
    elif mode == "forecast-csv":
        forecast_csv(args(1, "OUT.csv")[0])
        return
    else:
        usage(f"unknown mode {mode!r}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
