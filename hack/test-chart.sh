#!/usr/bin/env bash
# Tests of the Helm chart, the alerting rules and the dashboard, end to end.
#
#   hack/test-chart.sh            everything (needs the local control plane)
#   hack/test-chart.sh --static   only what needs no cluster (lint, render, promtool, dashboard)
#
# Expects (hack/test.sh arranges all three):
#   - KUBECONFIG pointing at a running cluster: `hack/cluster.sh up && eval "$(hack/cluster.sh env)"`
#     (a real kube-apiserver with kwok nodes: pods annotated test.carbonshift.io/run-for
#     succeed after that long);
#   - helm, promtool and kubectl on PATH (.cache/bin is added when present);
#   - target/debug/carbonshift built (`cargo build`).
#
# What it proves, in order:
#   static   CRD copy in sync; helm lint; renders with defaults, everything on, one watched
#            namespace, CRDs off/not kept; wrong values refused; the rendered objects checked
#            field by field (hack/tests/chart_assertions.py: restricted PSS, exact RBAC rules,
#            CRD content, alerts and dashboard embedded unchanged); every CARBONSHIFT_* env var
#            the chart sets is one `carbonshift run` reads; promtool checks and unit-tests the
#            alerts; the dashboard and alerts query only exported metrics.
#   cluster  the API server accepts every render (server-side dry run, strict field
#            validation; ServiceMonitor/PrometheusRule against the reduced CRDs in
#            hack/tests/fixtures, see there); `helm install` into a namespace enforcing the
#            restricted Pod Security Standard; the real operator binary, run out of cluster
#            with a token of the chart's ServiceAccount, completes a CarbonAwareJob (so the
#            chart's RBAC suffices) and its metrics scrape passes the dashboard check; the
#            same identity is refused what it must not do (kubectl auth can-i, and a real
#            Secret delete); `helm uninstall` keeps the CRD and the users' CarbonAwareJobs;
#            a re-install adopts the kept CRD.
# Prints PASS/FAIL lines, ends with "N passed, M failed", exits 1 on any failure.
# Work files and logs: .cache/test-chart/ (kept for debugging).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STATIC_ONLY=0
[[ "${1:-}" == "--static" ]] && STATIC_ONLY=1

CHART=${CHART:-charts/carbonshift}  # overridable to test a modified copy
NS=carbonshift-system          # release namespace (restricted Pod Security enforced)
RELEASE=carbonshift
JOBS_NS=chart-e2e              # where the test CarbonAwareJob runs
WATCH_NS=ml-team               # the namespaced-RBAC render's watchNamespace
CRD=carbonawarejobs.carbonshift.io
BIN=target/debug/carbonshift
WORK=$ROOT/.cache/test-chart
[[ -d $ROOT/.cache/bin ]] && export PATH="$ROOT/.cache/bin:$PATH"
# Offline renders (helm template/lint) assume this Kubernetes version; the chart requires
# >= 1.29. Default: the local control plane's version from hack/versions.env.
KUBE_VERSION=${KUBE_VERSION:-$(sed -n 's/^K8S_VERSION=//p' hack/versions.env 2> /dev/null)}
KUBE_VERSION=${KUBE_VERSION:-v1.35.4}

rm -rf "$WORK"
mkdir -p "$WORK/logs"

passed=0
failed=0
n=0
pass() { printf 'PASS: %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf 'FAIL: %s\n' "$*"; failed=$((failed + 1)); }

# check NAME CMD...: PASS when CMD exits 0; else FAIL and the tail of its output.
check() {
  local name=$1 log
  shift
  n=$((n + 1))
  log="$WORK/logs/$(printf '%03d' "$n").log"
  if "$@" > "$log" 2>&1; then
    pass "$name"
  else
    fail "$name (log: ${log#"$ROOT"/})"
    tail -n 25 "$log" | sed 's/^/    | /'
  fi
}

# refuse NAME REGEX CMD...: PASS when CMD fails with output matching REGEX (a wrong input
# must be refused, and for the right reason).
refuse() {
  local name=$1 re=$2 log
  shift 2
  n=$((n + 1))
  log="$WORK/logs/$(printf '%03d' "$n").log"
  if "$@" > "$log" 2>&1; then
    fail "$name: was accepted (log: ${log#"$ROOT"/})"
  elif grep -Eqi -- "$re" "$log"; then
    pass "$name"
  else
    fail "$name: failed, but not with /$re/ (log: ${log#"$ROOT"/})"
    tail -n 10 "$log" | sed 's/^/    | /'
  fi
}

# Runs a python assertion script that prints its own PASS/FAIL lines; counts them.
assertions() {
  local out
  out=$(python3 "$@" 2>&1)
  printf '%s\n' "$out" | grep -E '^(PASS|FAIL): ' || true
  passed=$((passed + $(printf '%s\n' "$out" | grep -c '^PASS: ')))
  failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
  if ! printf '%s\n' "$out" | grep -qE '^(PASS|FAIL): '; then
    fail "assertions $* produced no verdicts"
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/    | /'
  fi
}

finish() {
  echo
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

have() {
  if command -v "$1" > /dev/null 2>&1; then return 0; fi
  fail "$1 not found on PATH (hack/cluster.sh build puts it in .cache/bin)"
  return 1
}

section() { printf '\n== %s\n' "$*"; }

# --- static: chart ---------------------------------------------------------------------------
section "chart: lint and render"
check "chart CRD copy matches crds/ (hack/sync-chart-crds.sh --check)" hack/sync-chart-crds.sh --check

if have helm; then
  check "helm lint (defaults)" helm lint --strict --kube-version "$KUBE_VERSION" "$CHART"
  check "helm lint (everything on)" helm lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f hack/tests/values-all-on.yaml
  tpl() { helm template "$RELEASE" "$CHART" --namespace "$NS" --kube-version "$KUBE_VERSION" "$@"; }
  render() { local out=$1; shift; tpl "$@" > "$WORK/$out.yaml"; }
  # Without --kube-version Helm assumes its own default cluster version: a released Helm's is
  # the Kubernetes version of its client-go, and hack/cluster.sh builds Helm the same way.
  check "helm template with Helm's default Kubernetes version (as released Helm builds)" \
    helm template "$RELEASE" "$CHART" --namespace "$NS"
  check "helm lint with Helm's default Kubernetes version" helm lint --strict "$CHART"
  stale_rule() {
    tpl --set prometheusRule.enabled=true --set prometheusRule.forecastStaleAfterSeconds=600 \
      --set prometheusRule.forecastStaleFor=5m --show-only templates/prometheusrule.yaml |
      python3 -c 'import sys, yaml
d = yaml.safe_load(sys.stdin)
r = [r for g in d["spec"]["groups"] for r in g["rules"] if r.get("alert") == "CarbonshiftForecastStale"][0]
assert r["expr"].endswith("> 600") and r["for"] == "5m", r'
  }
  check "prometheusRule.forecastStaleAfterSeconds/For set CarbonshiftForecastStale's threshold and hold time" stale_rule
  refuse "prometheusRule.forecastStaleFor that is no duration" "forecastStaleFor" \
    tpl --set prometheusRule.enabled=true --set prometheusRule.forecastStaleFor=soon
  check "helm template (defaults)" render default
  check "helm template (everything on)" render all-on -f hack/tests/values-all-on.yaml
  check "helm template (watchNamespace=$WATCH_NS)" render namespaced --set watchNamespace=$WATCH_NS
  check "helm template (crds.enabled=false)" render no-crds --set crds.enabled=false
  check "helm template (crds.keep=false)" render no-keep --set crds.keep=false
  check "helm template (provider file from a ConfigMap)" render file-provider \
    --set forecast.provider=file --set forecast.fileConfigMap.name=grid-forecast
  check "helm template (provider watttime)" render watttime \
    --set forecast.provider=watttime --set forecast.existingSecret=wt
  grep -q 'WATTTIME_PASSWORD_FILE' "$WORK/watttime.yaml" 2> /dev/null &&
    grep -q 'WATTTIME_USERNAME_FILE' "$WORK/watttime.yaml" &&
    pass "watttime credentials passed as *_FILE" || fail "watttime credentials passed as *_FILE"
  grep -q '/etc/carbonshift/forecast/forecast.csv' "$WORK/file-provider.yaml" 2> /dev/null &&
    pass "file provider reads the mounted ConfigMap" || fail "file provider reads the mounted ConfigMap"

  section "chart: wrong values are refused"
  refuse "replicaCount 2 without leader election" "leaderElection" \
    tpl --set replicaCount=2 --set leaderElection.enabled=false
  refuse "provider file without a file" "forecast.file" tpl --set forecast.provider=file
  refuse "fallback file without a file" "forecast.file" tpl --set forecast.fallback=file
  refuse "provider electricitymaps without a Secret" "existingSecret" tpl --set forecast.provider=electricitymaps
  refuse "unknown provider (schema)" "provider" tpl --set forecast.provider=bogus
  refuse "misspelt value key (schema)" "additional properties|not allowed|replicacount" tpl --set replicacount=2
  refuse "bad duration (schema)" "refresh|pattern" tpl --set forecast.refresh=5min
  refuse "Kubernetes older than 1.29" "kubeVersion" helm template "$RELEASE" "$CHART" --kube-version v1.27.0

  section "chart: rendered objects"
  for mode in default all-on namespaced no-crds no-keep; do
    [[ -s $WORK/$mode.yaml ]] && assertions hack/tests/chart_assertions.py "$mode" "$WORK/$mode.yaml" "$CHART"
  done
  assertions hack/tests/chart_assertions.py rbac-comments "$CHART/templates/rbac.yaml" "$CHART"

  # Every CARBONSHIFT_* variable the chart sets must be one `carbonshift run` reads.
  if [[ -x $BIN ]]; then
    "$BIN" run --help > "$WORK/run-help.txt" 2>&1
    missing=""
    for v in $(cat "$WORK"/{default,all-on,namespaced,file-provider}.yaml 2> /dev/null |
      grep -oE 'name: CARBONSHIFT_[A-Z_]+' | awk '{print $2}' | sort -u); do
      grep -q "$v" "$WORK/run-help.txt" || missing+=" $v"
    done
    [[ -z $missing ]] && pass "every CARBONSHIFT_* env var the chart sets is read by carbonshift run" ||
      fail "env vars the chart sets but carbonshift run does not read:$missing"
  else
    fail "$BIN not built (cargo build): cannot check the chart's env vars against carbonshift run --help"
  fi
fi

# --- static: alerts and dashboard -------------------------------------------------------------
section "alerts and dashboard"
if have promtool; then
  check "promtool check rules (files/alerts.yaml)" promtool check rules "$CHART/files/alerts.yaml"
  check "promtool test rules (hack/tests/alerts_test.yaml)" promtool test rules hack/tests/alerts_test.yaml
  if [[ -s $WORK/all-on.yaml ]]; then
    # The PrometheusRule as rendered, back into a rule file: what prometheus-operator loads.
    python3 - "$WORK/all-on.yaml" > "$WORK/rendered-rules.yaml" << 'PY'
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "PrometheusRule":
        print(yaml.safe_dump(d["spec"]))
PY
    check "promtool check rules (the rendered PrometheusRule)" promtool check rules "$WORK/rendered-rules.yaml"
  fi
fi
check "dashboard JSON and alert expressions use only exported metrics (hack/check-dashboard.sh)" hack/check-dashboard.sh

if [[ $STATIC_ONLY == 1 ]]; then
  finish
fi

# --- cluster -------------------------------------------------------------------------------
section "cluster: server-side validation"
have kubectl && have helm || finish
if ! kubectl get --raw /readyz > /dev/null 2>&1; then
  fail "no reachable cluster (KUBECONFIG=${KUBECONFIG:-unset}); start one: hack/cluster.sh up && eval \"\$(hack/cluster.sh env)\""
  finish
fi

k() { kubectl "$@"; }
operator_pid=""
standby_pid=""
# Stops only the operator processes this script started, by their PIDs.
stop_pid() {
  if [[ -n ${1:-} ]] && kill -0 "$1" 2> /dev/null; then
    kill "$1" 2> /dev/null
    wait "$1" 2> /dev/null
  fi
}
on_exit() {
  stop_pid "$operator_pid"
  stop_pid "$standby_pid"
}
trap on_exit EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Namespaces: the release one enforces the restricted Pod Security Standard, so pod
# admission itself proves the chart's securityContext.
for ns in "$NS" "$JOBS_NS" "$WATCH_NS"; do
  # A namespace still terminating from an earlier run cannot take new objects.
  if [[ $(k get namespace "$ns" -o jsonpath='{.status.phase}' 2> /dev/null) == Terminating ]]; then
    k wait --for=delete "namespace/$ns" --timeout=120s > /dev/null 2>&1
  fi
  k create namespace "$ns" --dry-run=client -o yaml | k apply -f - > /dev/null
done
k label namespace "$NS" --overwrite pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted > /dev/null

# A release left by an interrupted earlier run would make `helm install` fail.
if helm status "$RELEASE" -n "$NS" > /dev/null 2>&1; then
  echo "note: uninstalling release $RELEASE left by an earlier run"
  helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m > /dev/null 2>&1
fi

# A CRD left by earlier tests (kubectl apply -f crds/) is not Helm's: mark it for adoption,
# the documented way (docs/install.md) to move a kubectl-installed CRD under the chart.
if k get crd "$CRD" > /dev/null 2>&1 &&
  [[ -z $(k get crd "$CRD" -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}') ]]; then
  k annotate crd "$CRD" --overwrite meta.helm.sh/release-name=$RELEASE meta.helm.sh/release-namespace=$NS > /dev/null
  k label crd "$CRD" --overwrite app.kubernetes.io/managed-by=Helm > /dev/null
  echo "note: adopted the existing $CRD into release $RELEASE"
fi

check "reduced prometheus-operator CRDs installed (test fixture)" \
  k apply --server-side --field-manager=carbonshift-tests -f hack/tests/fixtures/monitoring.coreos.com-crds.yaml
check "fixture CRDs established" k wait --for=condition=Established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com

# dry_run FILE: server-side dry run with strict field validation; Pod Security warnings
# (restricted is enforced in $NS) count as failures.
dry_run() {
  local out rc
  out=$(k apply --dry-run=server --validate=strict -f "$1" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  [[ $rc -eq 0 ]] || return 1
  ! grep -qi 'would violate PodSecurity' <<< "$out"
}
for mode in default all-on namespaced; do
  [[ -s $WORK/$mode.yaml ]] && check "API server accepts the $mode render (dry-run=server, strict)" dry_run "$WORK/$mode.yaml"
done

section "cluster: install"
check "helm install into $NS (restricted Pod Security enforced)" \
  helm install "$RELEASE" "$CHART" -n "$NS" --set region=DE --wait --timeout 3m
check "operator pods admitted and available" \
  k -n "$NS" rollout status deployment/$RELEASE --timeout=120s
check "CRD established after install" k wait --for=condition=Established --timeout=60s crd/$CRD
# The examples users are pointed at must be valid against the installed CRD.
while IFS= read -r f; do
  check "example $f accepted by the API server (dry-run=server)" k apply --dry-run=server -f "$f"
done < <(find examples -name '*.yaml' ! -name kustomization.yaml ! -path '*/checkpointing/*' 2> /dev/null | sort)
[[ -f examples/checkpointing/kustomization.yaml ]] &&
  check "example examples/checkpointing accepted by the API server (kubectl apply -k, dry-run=server)" \
    k apply --dry-run=server -k examples/checkpointing
check "NOTES.txt tells the user the next commands" bash -c \
  "helm get notes $RELEASE -n $NS | grep -q 'kubectl apply -f' && helm get notes $RELEASE -n $NS | grep -q 'kubectl get caj -w'"

section "cluster: the operator runs with the chart's ServiceAccount (RBAC sufficient)"
SA=$(k -n "$NS" get deployment $RELEASE -o jsonpath='{.spec.template.spec.serviceAccountName}')
SUBJECT=system:serviceaccount:$NS:$SA
SA_KUBECONFIG=$WORK/sa.kubeconfig
make_sa_kubeconfig() {
  local token server ca
  token=$(k -n "$NS" create token "$SA" --duration=1h) || return 1
  server=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  cat > "$SA_KUBECONFIG" << EOF
apiVersion: v1
kind: Config
clusters:
  - name: c
    cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
  - name: $SA
    user: {token: "$token"}
contexts:
  - name: sa
    context: {cluster: c, user: $SA, namespace: $NS}
current-context: sa
EOF
  KUBECONFIG=$SA_KUBECONFIG kubectl auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx "$SUBJECT"
}
check "kubeconfig from a token of ServiceAccount $SA (kubectl create token)" make_sa_kubeconfig

# A 1-minute forecast around now, flat: the RunNow job starts at once.
python3 - > "$WORK/forecast.csv" << 'PY'
from datetime import datetime, timedelta, timezone
t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=30)
print("timestamp,gco2_per_kwh")
for i in range(6 * 60):
    print(f"{(t0 + timedelta(minutes=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},{250 + (i % 60)}")
PY
# start_operator NAME PORT: the operator binary as the chart's ServiceAccount, configured
# through the same CARBONSHIFT_* variables the chart sets; log in $WORK/NAME.log.
start_operator() {
  KUBECONFIG=$SA_KUBECONFIG POD_NAMESPACE=$NS POD_NAME=$1 \
    CARBONSHIFT_REGION=DE CARBONSHIFT_FORECAST_PROVIDER=file \
    CARBONSHIFT_FORECAST_FILE="$WORK/forecast.csv" CARBONSHIFT_FORECAST_REFRESH=30s \
    CARBONSHIFT_METRICS_ADDR=127.0.0.1:$2 CARBONSHIFT_LEADER_ELECTION=true \
    CARBONSHIFT_LEASE_NAME=carbonshift-leader \
    CARBONSHIFT_LOG_FORMAT=text RUST_LOG=info NO_COLOR=1 \
    "$BIN" run > "$WORK/$1.log" 2>&1 &
}
METRICS_PORT=$(free_port)
if [[ -x $BIN ]]; then
  start_operator operator "$METRICS_PORT"
  operator_pid=$!
  ready() { curl -sf --max-time 2 "http://127.0.0.1:$METRICS_PORT/readyz" > /dev/null; }
  for _ in $(seq 120); do ready && break; kill -0 "$operator_pid" 2> /dev/null || break; sleep 0.5; done
  if ready; then pass "operator (pid $operator_pid) serves /readyz as $SUBJECT"; else
    fail "operator did not become ready (log: .cache/test-chart/operator.log)"
    tail -n 30 "$WORK/operator.log" | sed 's/^/    | /'
  fi
  curl -sf --max-time 2 "http://127.0.0.1:$METRICS_PORT/healthz" > /dev/null &&
    pass "operator serves /healthz" || fail "operator serves /healthz"
else
  fail "$BIN not built (cargo build): cannot run the operator as the chart's ServiceAccount"
fi

cat > "$WORK/job.yaml" << EOF
apiVersion: carbonshift.io/v1alpha1
kind: CarbonAwareJob
metadata:
  name: chart-rbac-proof
  namespace: $JOBS_NS
spec:
  region: DE
  schedule:
    strategy: RunNow
    maxDelay: 15m
    expectedDuration: 30s
  power:
    watts: 300
  template:
    spec:
      backoffLimit: 0
      template:
        metadata:
          annotations:
            test.carbonshift.io/run-for: 30s
        spec:
          restartPolicy: Never
          containers:
            - name: main
              image: registry.k8s.io/pause:3.10
EOF
check "a CarbonAwareJob is accepted" k apply -f "$WORK/job.yaml"
phase=""
for _ in $(seq 120); do
  phase=$(k -n "$JOBS_NS" get caj chart-rbac-proof -o jsonpath='{.status.phase}' 2> /dev/null)
  [[ $phase == Succeeded || $phase == Failed ]] && break
  [[ -n $operator_pid ]] && ! kill -0 "$operator_pid" 2> /dev/null && break
  sleep 2
done
if [[ $phase == Succeeded ]]; then
  pass "CarbonAwareJob completed (phase Succeeded) under the chart's RBAC"
else
  fail "CarbonAwareJob did not succeed within 4 minutes (phase '${phase:-none}'; log: .cache/test-chart/operator.log)"
  k -n "$JOBS_NS" get caj,jobs,pods -o wide 2>&1 | sed 's/^/    | /'
  grep -iE 'error|forbidden|warn' "$WORK/operator.log" | tail -n 20 | sed 's/^/    | /'
fi
check "status carries accounted emissions" bash -c \
  "kubectl -n $JOBS_NS get caj chart-rbac-proof -o jsonpath='{.status.emissionsGrams}' | grep -Eq '^[0-9.e+-]+\$'"
check "the operator recorded Events for the job" bash -c \
  "kubectl get events -A --field-selector involvedObject.name=chart-rbac-proof -o name | grep -q ."
if [[ -n $operator_pid ]]; then
  # The one expected refusal: listing nodes for the default region, which the operator
  # tries best-effort and the chart only allows with regionDiscovery.fromNodeLabels.
  if grep -i 'forbidden' "$WORK/operator.log" | grep -qv 'cannot list nodes'; then
    fail "operator log has no 'forbidden' API errors (other than the optional node list)"
    grep -i forbidden "$WORK/operator.log" | grep -v 'cannot list nodes' | head -n 5 | sed 's/^/    | /'
  else
    pass "operator log has no 'forbidden' API errors (other than the optional node list)"
  fi
  if curl -sf --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" > "$WORK/metrics.txt"; then
    pass "metrics scraped"
    grep -Eq '^carbonshift_transitions_total\{action="start"\} [1-9]' "$WORK/metrics.txt" &&
      pass 'carbonshift_transitions_total{action="start"} counted the start' ||
      fail 'carbonshift_transitions_total{action="start"} counted the start'
    check "dashboard and alerts agree with the live scrape (check-dashboard.sh --scrape)" \
      hack/check-dashboard.sh --scrape "$WORK/metrics.txt"
  else
    fail "metrics scraped"
  fi
fi

section "cluster: RBAC is not excessive"
can() { k auth can-i "$@" --as="$SUBJECT" 2> /dev/null; }
allowed=(
  "list carbonawarejobs.carbonshift.io -A"
  "watch carbonawarejobs.carbonshift.io -A"
  "patch carbonawarejobs.carbonshift.io --subresource=status -n $JOBS_NS"
  "create jobs.batch -n $JOBS_NS"
  "patch jobs.batch -n $JOBS_NS"
  "create events.events.k8s.io -n $JOBS_NS"
  "update leases.coordination.k8s.io/carbonshift-leader -n $NS"
)
denied=(
  "get secrets -n $NS"
  "list secrets -A"
  "create carbonawarejobs.carbonshift.io -n $JOBS_NS"
  "delete carbonawarejobs.carbonshift.io -n $JOBS_NS"
  "update carbonawarejobs.carbonshift.io -n $JOBS_NS"
  "patch carbonawarejobs.carbonshift.io -n $JOBS_NS"
  "update jobs.batch -n $JOBS_NS"
  "delete jobs.batch -n $JOBS_NS"
  "create events -n $JOBS_NS"
  "create pods -n $JOBS_NS"
  "delete pods -n $JOBS_NS"
  "list nodes"
  "update leases.coordination.k8s.io/someone-elses-lease -n $NS"
  "update leases.coordination.k8s.io -n kube-system"
  "create customresourcedefinitions.apiextensions.k8s.io"
  "create clusterrolebindings.rbac.authorization.k8s.io"
  "* *"
)
set -f # "* *" is a verb and a resource, not a glob
for a in "${allowed[@]}"; do
  # shellcheck disable=SC2086
  [[ $(can $a) == yes ]] && pass "can-i $a: yes" || fail "can-i $a: expected yes"
done
for d in "${denied[@]}"; do
  # shellcheck disable=SC2086
  [[ $(can $d) == no ]] && pass "can-i $d: no" || fail "can-i $d: expected no"
done
set +f
k -n "$JOBS_NS" create secret generic decoy --from-literal=k=v --dry-run=client -o yaml | k apply -f - > /dev/null
refuse "the operator's identity cannot delete a Secret (real request)" "forbidden" \
  env KUBECONFIG="$SA_KUBECONFIG" kubectl -n "$JOBS_NS" delete secret decoy
check "the Secret is still there" k -n "$JOBS_NS" get secret decoy

section "cluster: two replicas (leader election with the chart's Lease permissions)"
if [[ -n $operator_pid ]]; then
  STANDBY_PORT=$(free_port)
  start_operator standby "$STANDBY_PORT"
  standby_pid=$!
  sleep 8
  if grep -q 'became leader' "$WORK/standby.log"; then
    fail "a second replica stays standby while the first holds the Lease"
  else
    pass "a second replica stays standby while the first holds the Lease"
  fi
  holder=$(k -n "$NS" get lease carbonshift-leader -o jsonpath='{.spec.holderIdentity}' 2> /dev/null)
  [[ $holder == operator_* ]] && pass "Lease carbonshift-leader held by the first replica ($holder)" ||
    fail "Lease carbonshift-leader held by the first replica (holder '$holder')"
  # A clean shutdown releases the Lease, so the standby takes over at once.
  stop_pid "$operator_pid"
  operator_pid=""
  for _ in $(seq 40); do grep -q 'became leader' "$WORK/standby.log" && break; sleep 0.5; done
  if grep -q 'became leader' "$WORK/standby.log"; then
    pass "the standby takes over when the leader stops"
  else
    fail "the standby takes over when the leader stops (log: .cache/test-chart/standby.log)"
    tail -n 15 "$WORK/standby.log" | sed 's/^/    | /'
  fi
  stop_pid "$standby_pid"
  standby_pid=""
fi

section "cluster: uninstall keeps the CRD and the users' jobs"
check "helm uninstall" helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m
check "CRD kept (crds.keep)" k get crd "$CRD"
check "users' CarbonAwareJobs kept" k -n "$JOBS_NS" get caj chart-rbac-proof
refuse "operator Deployment removed" "not ?found" k -n "$NS" get deployment "$RELEASE"
refuse "operator ClusterRole removed" "not ?found" k get clusterrole "$RELEASE"
check "re-install adopts the kept CRD" helm install "$RELEASE" "$CHART" -n "$NS" --set region=DE --wait --timeout 3m
check "final helm uninstall" helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m

# Leave the cluster as we found it, except for the kept CRD (the point of crds.keep).
k delete namespace "$JOBS_NS" "$WATCH_NS" --wait=false > /dev/null 2>&1
k delete -f hack/tests/fixtures/monitoring.coreos.com-crds.yaml --wait=false > /dev/null 2>&1

finish
