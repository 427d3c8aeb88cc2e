#!/usr/bin/env bash
# The whole test suite, from a fresh machine with only the Rust and Go toolchains:
#   1. static checks (format, clippy, CRD and chart CRD copies up to date, benches compile);
#   2. builds (once, cached in .cache/) and starts the local control plane: etcd,
#      kube-apiserver, kube-controller-manager, kube-scheduler, kwok GPU nodes and one
#      real node (kubelet, kube-proxy, containerd: needs root; images built locally), with
#      Kueue's manager and the JobSet controller (`up --kueue`);
#   3. runs every cargo test with the end-to-end tests enabled against that cluster (the
#      Kueue test required: CARBONSHIFT_E2E_KUEUE=1);
#   4. runs the Helm chart tests (lint, render, server dry-run, install, RBAC, uninstall)
#      and the alert-rule unit tests;
#   5. stops the control plane, whatever happened, and fails if the real node left any
#      process, mount, network device or iptables chain behind.
# Set CARBONSHIFT_SKIP_E2E=1 to run only what needs no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "static checks"
cargo fmt --all -- --check
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --all-targets -- -D warnings
else
  echo "clippy not installed: skipped (rustup component add clippy)"
fi

# The API docs build without a broken or ambiguous link.
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet

step "build"
cargo build --locked --all-targets
hack/sync-chart-crds.sh --check

if [[ "${CARBONSHIFT_SKIP_E2E:-0}" == 1 ]]; then
  step "cargo test (no cluster)"
  cargo test --locked
  exit 0
fi

step "local control plane"
hack/cluster.sh up --kueue
trap 'hack/cluster.sh down || true' EXIT
eval "$(hack/cluster.sh env)"

step "cargo test (unit, property, HTTP, reconcile, CLI, end-to-end)"
export CARBONSHIFT_E2E=1 CARBONSHIFT_E2E_KUEUE=1
# The fault scenarios take about 12 minutes, mostly waiting on the cluster: their test
# binary runs beside all the others (each test has a namespace of its own), straight from
# the build, so that the two lanes do not queue on cargo's lock. Its output follows theirs.
faults_exe=$(cargo test --locked --no-run --message-format=json --test e2e_faults |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "e2e_faults" and m.get("executable"):
        print(m["executable"])')
faults_log=$(mktemp)
"$faults_exe" > "$faults_log" 2>&1 &
faults_pid=$!
others=()
for f in tests/*.rs tests/scale/main.rs; do
  t=$(basename "$f" .rs)
  [[ $t == main ]] && t=scale
  [[ $t == e2e_faults ]] || others+=(--test "$t")
done
status=0
cargo test --locked --lib --bins "${others[@]}" || status=$?
cargo test --locked --doc || status=$?
faults_status=0
wait "$faults_pid" || faults_status=$?
step "cargo test --test e2e_faults (ran beside the tests above; exit $faults_status)"
cat "$faults_log"
rm -f "$faults_log"
[[ $faults_status -eq 0 ]] || status=$faults_status

step "chart and alert tests"
chart_status=0
hack/test-chart.sh || chart_status=$?

if [[ $status -ne 0 || $chart_status -ne 0 ]]; then
  hack/cluster.sh logs-tail 2>/dev/null || true
fi

step "stop the local control plane"
trap - EXIT
down_status=0
hack/cluster.sh down || down_status=$?
left=$(hack/cluster.sh leftovers 2>&1) || left+=$'\n'"(hack/cluster.sh leftovers itself failed)"
if [[ -n $left ]]; then
  printf 'hack/cluster.sh down left behind:\n%s\n' "$left"
  down_status=1
fi

if [[ $status -ne 0 || $chart_status -ne 0 || $down_status -ne 0 ]]; then
  echo "FAILED: cargo test exit $status, chart tests exit $chart_status, cluster down exit $down_status"
  exit 1
fi
echo "all test stages passed"
