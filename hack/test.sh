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
#      Beside it, three more control planes (hack/multicluster.sh: a MultiKueue manager and
#      two workers, kwok only) for the MultiKueue dispatcher's test;
#   5. stops the control planes, whatever happened, and fails if the real node left any
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

step "three more control planes: a MultiKueue manager and two workers"
trap 'hack/multicluster.sh down || true; hack/cluster.sh down || true' EXIT
hack/multicluster.sh up
# Only their CARBONSHIFT_MC_* variables: KUBECONFIG stays the first cluster's.
eval "$(hack/multicluster.sh env | grep '^export CARBONSHIFT_MC_')"

step "cargo test (unit, property, HTTP, reconcile, CLI, end-to-end)"
export CARBONSHIFT_E2E=1 CARBONSHIFT_E2E_KUEUE=1 CARBONSHIFT_E2E_MULTIKUEUE=1
# The fault scenarios (about 12 minutes), the Kueue scenarios (about 12 minutes) and the
# MultiKueue scenario (about 6 minutes) mostly
# wait on the cluster: their test binaries run beside all the others (each test has a
# namespace of its own, cluster-scoped objects have unique names), straight from the
# build, so that the lanes do not queue on cargo's lock. Their output follows.
background=(e2e_faults e2e_kueue e2e_multikueue)
# Everything built first: compiling the other test binaries beside the Kueue scenarios
# would starve the timed steps of the cluster and the operator on a 2-core machine.
cargo test --locked --no-run --lib --bins --tests
declare -A bg_pid bg_log
for t in "${background[@]}"; do
  exe=$(cargo test --locked --no-run --message-format=json --test "$t" |
    T="$t" python3 -c 'import json,os,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == os.environ["T"] and m.get("executable"):
        print(m["executable"])')
  bg_log[$t]=$(mktemp)
  # The Kueue and MultiKueue tests print their measured figures (docs/kueue.md and
  # docs/multicluster.md quote them).
  args=()
  [[ $t == e2e_kueue || $t == e2e_multikueue ]] && args=(--nocapture)
  "$exe" "${args[@]}" > "${bg_log[$t]}" 2>&1 &
  bg_pid[$t]=$!
done
others=()
for f in tests/*.rs tests/scale/main.rs; do
  t=$(basename "$f" .rs)
  [[ $t == main ]] && t=scale
  [[ " ${background[*]} " == *" $t "* ]] || others+=(--test "$t")
done
status=0
cargo test --locked --lib --bins "${others[@]}" || status=$?
cargo test --locked --doc || status=$?
for t in "${background[@]}"; do
  t_status=0
  wait "${bg_pid[$t]}" || t_status=$?
  step "cargo test --test $t (ran beside the tests above; exit $t_status)"
  cat "${bg_log[$t]}"
  rm -f "${bg_log[$t]}"
  [[ $t_status -eq 0 ]] || status=$t_status
done

step "chart and alert tests"
chart_status=0
hack/test-chart.sh || chart_status=$?

if [[ $status -ne 0 || $chart_status -ne 0 ]]; then
  hack/cluster.sh logs-tail 2>/dev/null || true
  hack/multicluster.sh logs-tail 2>/dev/null || true
fi

step "stop the local control planes"
trap - EXIT
down_status=0
hack/multicluster.sh down || down_status=$?
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
