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
#   - target/debug/carbonshift built (`cargo build`; $CARGO_TARGET_DIR/debug when that is set).
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
# What the output of each command must be is said in hack/tests/chart_assertions.py (renders,
# refused values, can-i answers, logs and scrapes); this script runs the commands and the
# processes, and counts the verdicts. Prints PASS/FAIL lines, ends with "N passed, M failed",
# exits 1 on any failure.
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
BIN=${CARGO_TARGET_DIR:-target}/debug/carbonshift
ASSERT=hack/tests/chart_assertions.py
WORK=$ROOT/.cache/test-chart
RUNS=$WORK/runs                # captured commands: ID.out, ID.err, ID.rc (see capture)
[[ -d $ROOT/.cache/bin ]] && export PATH="$ROOT/.cache/bin:$PATH"
# Offline renders (helm template/lint) assume this Kubernetes version; the chart requires
# >= 1.29. Default: the local control plane's version from hack/versions.env.
KUBE_VERSION=${KUBE_VERSION:-$(sed -n 's/^K8S_VERSION=//p' hack/versions.env 2> /dev/null)}
KUBE_VERSION=${KUBE_VERSION:-v1.35.4}

rm -rf "$WORK"
mkdir -p "$WORK/logs" "$RUNS"

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

# capture ID CMD...: runs CMD for chart_assertions.py to judge: stdout in $RUNS/ID.out,
# stderr in $RUNS/ID.err, exit status in $RUNS/ID.rc.
capture() {
  local id=$1
  shift
  "$@" > "$RUNS/$id.out" 2> "$RUNS/$id.err"
  echo $? > "$RUNS/$id.rc"
}

# run_plan TOOL PLAN...: captures every command of `chart_assertions.py plan PLAN...` (one a
# line: ID, then TOOL's arguments, tab-separated).
run_plan() {
  local tool=$1 line
  shift
  while IFS=$'\t' read -r -a line; do
    capture "${line[0]}" "$tool" "${line[@]:1}"
  done < <(python3 "$ASSERT" plan "$@")
}

# assertions MODE ARGS...: runs chart_assertions.py, which prints its own PASS/FAIL lines;
# counts them. One that prints no verdict, or exits non-zero without a FAIL, is a FAIL.
assertions() {
  local out rc p f
  out=$(python3 "$ASSERT" "$@" 2>&1)
  rc=$?
  [[ -n $out ]] && printf '%s\n' "$out"
  p=$(grep -c '^PASS: ' <<< "$out")
  f=$(grep -c '^FAIL: ' <<< "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  if ((p + f == 0 || (rc != 0 && f == 0))); then
    fail "chart_assertions.py $1: exit $rc with $p PASS and $f FAIL verdicts"
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
  check "helm template (CarbonshiftForecastStale after 600 s for 5m)" render stale-rule \
    --set prometheusRule.enabled=true --set prometheusRule.forecastStaleAfterSeconds=600 \
    --set prometheusRule.forecastStaleFor=5m --show-only templates/prometheusrule.yaml
  [[ -s $WORK/stale-rule.yaml ]] && assertions stale-rule "$WORK/stale-rule.yaml" 600 5m
  check "helm template (defaults)" render default
  check "helm template (everything on)" render all-on -f hack/tests/values-all-on.yaml
  check "helm template (watchNamespace=$WATCH_NS)" render namespaced --set watchNamespace=$WATCH_NS
  check "helm template (crds.enabled=false)" render no-crds --set crds.enabled=false
  check "helm template (crds.keep=false)" render no-keep --set crds.keep=false
  check "helm template (provider file from a ConfigMap)" render file-provider \
    --set forecast.provider=file --set forecast.fileConfigMap.name=grid-forecast
  check "helm template (provider watttime)" render watttime \
    --set forecast.provider=watttime --set forecast.existingSecret=wt
  [[ -s $WORK/watttime.yaml ]] && assertions watttime "$WORK/watttime.yaml" wt
  [[ -s $WORK/file-provider.yaml ]] && assertions file-provider "$WORK/file-provider.yaml" grid-forecast

  section "chart: wrong values are refused"
  run_plan helm values "$CHART" "$RELEASE" "$NS" "$KUBE_VERSION"
  assertions refused "$RUNS" values

  section "chart: rendered objects"
  for mode in default all-on namespaced no-crds no-keep; do
    [[ -s $WORK/$mode.yaml ]] && assertions "$mode" "$WORK/$mode.yaml" "$CHART"
  done
  assertions rbac-comments "$CHART/templates/rbac.yaml"

  if [[ -x $BIN ]]; then
    capture run-help "$BIN" run --help
    assertions env-vars "$RUNS/run-help.out" "$WORK"/{default,all-on,namespaced,file-provider}.yaml
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
    assertions rules-file "$WORK/all-on.yaml" "$WORK/rendered-rules.yaml"
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

# Server-side dry runs with strict field validation (chart_assertions.py dry-run also fails
# on Pod Security warnings: restricted is enforced in $NS).
dry=()
for mode in default all-on namespaced; do
  if [[ -s $WORK/$mode.yaml ]]; then
    capture "dry-run-$mode" k apply --dry-run=server --validate=strict -f "$WORK/$mode.yaml"
    dry+=("$mode")
  fi
done
((${#dry[@]})) && assertions dry-run "$RUNS" "${dry[@]}"

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
capture notes helm get notes "$RELEASE" -n "$NS"
assertions notes "$RUNS"

section "cluster: the operator runs with the chart's ServiceAccount (RBAC sufficient)"
SA=$(k -n "$NS" get deployment $RELEASE -o jsonpath='{.spec.template.spec.serviceAccountName}')
SUBJECT=system:serviceaccount:$NS:$SA
SA_KUBECONFIG=$WORK/sa.kubeconfig
make_sa_kubeconfig() {
  local token server ca
  token=$(k -n "$NS" create token "$SA" --duration=1h) || return 1
  server=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
  cat > "$SA_KUBECONFIG" << YAML
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
YAML
}
check "kubeconfig from a token of ServiceAccount $SA (kubectl create token)" make_sa_kubeconfig
capture whoami env KUBECONFIG="$SA_KUBECONFIG" kubectl auth whoami -o jsonpath='{.status.userInfo.username}'
assertions identity "$RUNS" "$SUBJECT"

check "forecast CSV for the operator (chart_assertions.py forecast-csv)" \
  python3 "$ASSERT" forecast-csv "$WORK/forecast.csv"
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

check "a CarbonAwareJob is accepted" k apply -n "$JOBS_NS" -f hack/tests/fixtures/chart-rbac-proof.yaml
# Waits up to 4 minutes for the job to finish; chart_assertions.py job judges the outcome.
phase=""
for _ in $(seq 120); do
  phase=$(k -n "$JOBS_NS" get caj chart-rbac-proof -o jsonpath='{.status.phase}' 2> /dev/null)
  [[ $phase == Succeeded || $phase == Failed ]] && break
  [[ -n $operator_pid ]] && ! kill -0 "$operator_pid" 2> /dev/null && break
  sleep 2
done
capture caj k -n "$JOBS_NS" get caj chart-rbac-proof -o json
capture events k get events -A --field-selector involvedObject.name=chart-rbac-proof -o json
assertions job "$RUNS"
if [[ $phase != Succeeded ]]; then
  k -n "$JOBS_NS" get caj,jobs,pods -o wide 2>&1 | sed 's/^/    | /'
  grep -iE 'error|forbidden|warn' "$WORK/operator.log" | tail -n 20 | sed 's/^/    | /'
fi
if [[ -n $operator_pid ]]; then
  assertions operator-log "$WORK/operator.log"
  if curl -sf --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" > "$WORK/metrics.txt"; then
    pass "metrics scraped"
    assertions metrics "$WORK/metrics.txt"
    check "dashboard and alerts agree with the live scrape (check-dashboard.sh --scrape)" \
      hack/check-dashboard.sh --scrape "$WORK/metrics.txt"
  else
    fail "metrics scraped"
  fi
fi

section "cluster: RBAC is not excessive"
run_plan kubectl can-i "$NS" "$JOBS_NS" "$SUBJECT"
assertions can-i "$RUNS" "$NS" "$JOBS_NS" "$SUBJECT"
k -n "$JOBS_NS" create secret generic decoy --from-literal=k=v --dry-run=client -o yaml | k apply -f - > /dev/null
capture secret-delete env KUBECONFIG="$SA_KUBECONFIG" kubectl -n "$JOBS_NS" delete secret decoy
assertions refused "$RUNS" secret-delete
check "the Secret is still there" k -n "$JOBS_NS" get secret decoy

section "cluster: two replicas (leader election with the chart's Lease permissions)"
if [[ -n $operator_pid ]]; then
  STANDBY_PORT=$(free_port)
  start_operator standby "$STANDBY_PORT"
  standby_pid=$!
  sleep 8
  capture standby-while-led cat "$WORK/standby.log"
  capture lease-holder k -n "$NS" get lease carbonshift-leader -o jsonpath='{.spec.holderIdentity}'
  # A clean shutdown releases the Lease, so the standby takes over at once.
  stop_pid "$operator_pid"
  operator_pid=""
  for _ in $(seq 40); do grep -q 'became leader' "$WORK/standby.log" && break; sleep 0.5; done
  capture standby-after cat "$WORK/standby.log"
  stop_pid "$standby_pid"
  standby_pid=""
  # The first replica's POD_NAME is "operator" (start_operator), the holder "operator_<uid>".
  assertions leader "$RUNS" operator_
fi

section "cluster: uninstall keeps the CRD and the users' jobs"
check "helm uninstall" helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m
check "CRD kept (crds.keep)" k get crd "$CRD"
check "users' CarbonAwareJobs kept" k -n "$JOBS_NS" get caj chart-rbac-proof
capture deployment-gone k -n "$NS" get deployment "$RELEASE"
capture clusterrole-gone k get clusterrole "$RELEASE"
assertions refused "$RUNS" deployment-gone clusterrole-gone
check "re-install adopts the kept CRD" helm install "$RELEASE" "$CHART" -n "$NS" --set region=DE --wait --timeout 3m
check "final helm uninstall" helm uninstall "$RELEASE" -n "$NS" --wait --timeout 2m

# Leave the cluster as we found it, except for the kept CRD (the point of crds.keep).
k delete namespace "$JOBS_NS" "$WATCH_NS" --wait=false > /dev/null 2>&1
k delete -f hack/tests/fixtures/monitoring.coreos.com-crds.yaml --wait=false > /dev/null 2>&1

finish
