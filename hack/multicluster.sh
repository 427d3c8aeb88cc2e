#!/usr/bin/env bash
# Three local clusters for MultiKueue end-to-end tests: a manager and two workers.
#
# Each is a cluster of hack/cluster.sh (control plane, kwok GPU nodes, Kueue and JobSet; no
# real node) with its own state directory and port base. The manager's Kueue is a MultiKueue
# manager whose worker clusters an external dispatcher chooses (multiKueue.dispatcherName,
# CARBONSHIFT_KUEUE_DISPATCHER in hack/lib/kueue.sh): it copies a Workload only to the
# workers named in the Workload's status.nominatedClusterNames. `up` connects the manager to
# both workers: in kueue-system one Secret per worker (key `kubeconfig`, the worker's admin
# kubeconfig with its certificates embedded, as MultiKueue requires) and one
# MultiKueueCluster per worker naming it, and waits until both are Active. Queues,
# AdmissionChecks and the MultiKueueConfig are the test's to create (an example:
# hack/multicluster/example.yaml).
#
#   hack/multicluster.sh up              start manager, worker-a and worker-b one after
#                                        another (binaries cached in .cache/bin), then
#                                        connect the manager to the workers
#   hack/multicluster.sh env             print export lines: eval "$(hack/multicluster.sh env)"
#   hack/multicluster.sh status          each cluster's status, and the MultiKueueClusters
#   hack/multicluster.sh logs-tail [N]   each cluster's component logs, last N lines (50)
#   hack/multicluster.sh down            stop all three and remove their state
#
# Settings (environment; the lists give manager, worker-a, worker-b in that order):
#   CARBONSHIFT_MULTICLUSTER_DIR         parent of the three state directories manager/,
#                                        worker-a/, worker-b/ (default .cache/multicluster)
#   CARBONSHIFT_MULTICLUSTER_PORT_BASES  their CARBONSHIFT_CLUSTER_PORT_BASE
#                                        (default "27000 28000 29000"; API servers at +443)
#   CARBONSHIFT_MULTICLUSTER_NODES       their number of kwok GPU nodes (default "1 3 3";
#                                        hack/cluster.sh needs at least one)
#   CARBONSHIFT_MULTICLUSTER_REGIONS     their nodes' topology.kubernetes.io/region
#                                        (default "eu-central-1 eu-west-3 eu-central-1":
#                                        worker-a in Paris (FR), worker-b in Frankfurt (DE))
#   CARBONSHIFT_MULTICLUSTER_DISPATCHER  the manager's multiKueue.dispatcherName (default
#                                        carbonshift.io/multikueue-dispatcher)
#   CARBONSHIFT_KUEUE_MULTIKUEUE_GC_INTERVAL, _ORIGIN, _WORKER_LOST_TIMEOUT
#                                        passed to the manager (hack/lib/kueue.sh)
#   CARBONSHIFT_CACHE_DIR                as for hack/cluster.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CARBONSHIFT_CACHE_DIR:-$ROOT/.cache}
BIN=$CACHE/bin
MC_DIR=${CARBONSHIFT_MULTICLUSTER_DIR:-$CACHE/multicluster}
DISPATCHER=${CARBONSHIFT_MULTICLUSTER_DISPATCHER:-carbonshift.io/multikueue-dispatcher}
# Kueue's namespace (hack/lib/kueue.sh): MultiKueue reads the kubeconfig Secrets there.
KUEUE_NAMESPACE=kueue-system

CLUSTERS=(manager worker-a worker-b)
WORKERS=(worker-a worker-b)
read -r -a PORT_BASES <<< "${CARBONSHIFT_MULTICLUSTER_PORT_BASES:-27000 28000 29000}"
read -r -a NODE_COUNTS <<< "${CARBONSHIFT_MULTICLUSTER_NODES:-1 3 3}"
read -r -a REGIONS <<< "${CARBONSHIFT_MULTICLUSTER_REGIONS:-eu-central-1 eu-west-3 eu-central-1}"

log() { printf '[multicluster] %s\n' "$*" >&2; }
die() { printf '[multicluster] error: %s\n' "$*" >&2; exit 1; }

check_settings() {
  local n
  ((${#PORT_BASES[@]} == 3)) || die "CARBONSHIFT_MULTICLUSTER_PORT_BASES needs three words, got '${PORT_BASES[*]}'"
  ((${#NODE_COUNTS[@]} == 3)) || die "CARBONSHIFT_MULTICLUSTER_NODES needs three words, got '${NODE_COUNTS[*]}'"
  ((${#REGIONS[@]} == 3)) || die "CARBONSHIFT_MULTICLUSTER_REGIONS needs three words, got '${REGIONS[*]}'"
  for n in "${PORT_BASES[@]}" "${NODE_COUNTS[@]}"; do
    [[ $n =~ ^[0-9]+$ ]] || die "not a number: '$n'"
  done
  [[ ${PORT_BASES[0]} != "${PORT_BASES[1]}" && ${PORT_BASES[0]} != "${PORT_BASES[2]}" &&
    ${PORT_BASES[1]} != "${PORT_BASES[2]}" ]] || die "the three port bases must differ: ${PORT_BASES[*]}"
}

# index NAME: the position of cluster NAME in CLUSTERS.
index() {
  local i
  for i in "${!CLUSTERS[@]}"; do [[ ${CLUSTERS[i]} == "$1" ]] && echo "$i" && return 0; done
  die "no cluster $1"
}

state_of() { echo "$MC_DIR/$1"; }
kubeconfig_of() { echo "$MC_DIR/$1/kubeconfig"; }
server_of() { echo "https://127.0.0.1:$((PORT_BASES[$(index "$1")] + 443))"; }
kueue_readyz_of() { echo "http://127.0.0.1:$((PORT_BASES[$(index "$1")] + 462))/readyz"; }
secret_of() { echo "multikueue-$1"; }

# cluster NAME COMMAND...: hack/cluster.sh COMMAND with cluster NAME's settings. Always with
# Kueue and without the real node; the dispatcher only on the manager.
cluster() {
  local name=$1 i
  shift
  i=$(index "$name")
  local settings=(
    CARBONSHIFT_CLUSTER_DIR="$(state_of "$name")"
    CARBONSHIFT_CLUSTER_PORT_BASE="${PORT_BASES[i]}"
    CARBONSHIFT_CLUSTER_NODES="${NODE_COUNTS[i]}"
    CARBONSHIFT_CLUSTER_REGION="${REGIONS[i]}"
    CARBONSHIFT_REAL_NODE=0
    CARBONSHIFT_KUEUE=1
  )
  if [[ $name == manager ]]; then
    env "${settings[@]}" CARBONSHIFT_KUEUE_DISPATCHER="$DISPATCHER" "$ROOT/hack/cluster.sh" "$@"
  else
    env -u CARBONSHIFT_KUEUE_DISPATCHER "${settings[@]}" "$ROOT/hack/cluster.sh" "$@"
  fi
}

kubectl_on() {
  local name=$1
  shift
  "$BIN/kubectl" --kubeconfig="$(kubeconfig_of "$name")" "$@"
}

# --- up -----------------------------------------------------------------------------------

# The Secret holding worker NAME's kubeconfig (hack/cluster.sh writes it with
# --embed-certs: certificate-authority-data, client-certificate-data and client-key-data,
# which MultiKueue requires: it refuses certificate file paths, see validateKubeconfig in
# Kueue's pkg/controller/admissionchecks/multikueue/multikueuecluster.go) and the
# MultiKueueCluster NAME that points at it.
connect_worker() {
  local worker=$1 secret
  secret=$(secret_of "$worker")
  if ! grep -q '^    certificate-authority-data: ' "$(kubeconfig_of "$worker")" ||
    ! grep -q '^    client-key-data: ' "$(kubeconfig_of "$worker")"; then
    die "$(kubeconfig_of "$worker") has no embedded certificates"
  fi
  kubectl_on manager create secret generic "$secret" -n "$KUEUE_NAMESPACE" \
    --from-file=kubeconfig="$(kubeconfig_of "$worker")" --dry-run=client -o yaml |
    kubectl_on manager apply --server-side --force-conflicts --field-manager=carbonshift-multicluster -f - > /dev/null
  kubectl_on manager apply --server-side --force-conflicts --field-manager=carbonshift-multicluster -f - > /dev/null <<EOF
apiVersion: kueue.x-k8s.io/v1beta2
kind: MultiKueueCluster
metadata:
  name: $worker
spec:
  clusterSource:
    kubeConfig:
      locationType: Secret
      location: $secret
EOF
}

cluster_active() {
  [[ $(kubectl_on manager get multikueuecluster "$1" \
    -o jsonpath='{.status.conditions[?(@.type=="Active")].status}' 2> /dev/null) == True ]]
}

wait_active() {
  local worker=$1 deadline=$((SECONDS + 60))
  until cluster_active "$worker"; do
    if ((SECONDS >= deadline)); then
      kubectl_on manager get multikueuecluster "$worker" -o yaml >&2 || true
      die "MultiKueueCluster $worker is not Active after 60s"
    fi
    sleep 0.5
  done
}

is_up() { cluster "$1" status > /dev/null 2>&1; }

# The clusters this `up` started (not up before it).
FRESH=()

up() {
  check_settings
  local started=$SECONDS name
  # A failed up prints every cluster's last log lines, then stops the clusters it started
  # that still run (hack/cluster.sh has already stopped the one that failed, keeping its
  # state and logs).
  trap 'if (($? != 0)); then up_failed; fi' EXIT
  for name in "${CLUSTERS[@]}"; do
    is_up "$name" || FRESH+=("$name")
    log "$name: hack/cluster.sh up in $(state_of "$name"), port base ${PORT_BASES[$(index "$name")]}"
    cluster "$name" up
  done
  for name in "${WORKERS[@]}"; do connect_worker "$name"; done
  for name in "${WORKERS[@]}"; do wait_active "$name"; done
  trap - EXIT
  log "up in $((SECONDS - started))s: manager at $(server_of manager) (dispatcher $DISPATCHER), worker-a at $(server_of worker-a), worker-b at $(server_of worker-b)"
  log "use them with: eval \"\$(hack/multicluster.sh env)\""
}

# shellcheck disable=SC2317 # called by up's EXIT trap
up_failed() {
  log "up failed; last log lines of each cluster:"
  logs_tail 30 >&2 || true
  local name
  for name in "${FRESH[@]}"; do
    is_up "$name" || continue
    log "stopping $name, started by this run"
    cluster "$name" down || true
  done
}

# --- other commands -----------------------------------------------------------------------

down() {
  check_settings
  local name rc=0
  # Workers first: the manager's Kueue then only loses its connections.
  for name in worker-b worker-a manager; do
    log "$name: hack/cluster.sh down"
    cluster "$name" down || rc=1
  done
  rmdir "$MC_DIR" 2> /dev/null || true
  return $rc
}

env_lines() {
  check_settings
  local name var
  printf 'export KUBECONFIG=%q\n' "$(kubeconfig_of manager)"
  # shellcheck disable=SC2016 # $PATH is for the shell that evals this
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
  printf 'export CARBONSHIFT_MC_DISPATCHER=%q\n' "$DISPATCHER"
  printf 'export CARBONSHIFT_MC_KUEUE_NAMESPACE=%q\n' "$KUEUE_NAMESPACE"
  printf 'export CARBONSHIFT_MC_WORKERS=%q\n' "${WORKERS[*]}"
  for name in "${CLUSTERS[@]}"; do
    var=CARBONSHIFT_MC_$(tr 'a-z-' 'A-Z_' <<< "$name")
    printf 'export %s_KUBECONFIG=%q\n' "$var" "$(kubeconfig_of "$name")"
    printf 'export %s_SERVER=%q\n' "$var" "$(server_of "$name")"
    printf 'export %s_LOGS=%q\n' "$var" "$(state_of "$name")/logs"
    printf 'export %s_KUEUE_READYZ=%q\n' "$var" "$(kueue_readyz_of "$name")"
    printf 'export %s_REGION=%q\n' "$var" "${REGIONS[$(index "$name")]}"
    if [[ $name != manager ]]; then
      # The MultiKueueCluster's name (what nominatedClusterNames and clusterName hold) and
      # its kubeconfig Secret in the manager's kueue-system.
      printf 'export %s_NAME=%q\n' "$var" "$name"
      printf 'export %s_SECRET=%q\n' "$var" "$(secret_of "$name")"
    fi
  done
}

status() {
  check_settings
  local name rc=0
  for name in "${CLUSTERS[@]}"; do
    echo "== $name ($(state_of "$name"), $(server_of "$name"))"
    cluster "$name" status || rc=1
  done
  echo "== MultiKueueClusters on the manager"
  kubectl_on manager get multikueueclusters 2>&1 || rc=1
  for name in "${WORKERS[@]}"; do cluster_active "$name" || rc=1; done
  return $rc
}

logs_tail() {
  check_settings
  local name
  for name in "${CLUSTERS[@]}"; do
    echo "== $name"
    if [[ -d $(state_of "$name") ]]; then
      cluster "$name" logs-tail "${1:-50}"
    else
      echo "(no state in $(state_of "$name"))"
    fi
  done
}

main() {
  case ${1:-} in
  up) up ;;
  down) down ;;
  env) env_lines ;;
  status) status ;;
  logs-tail) logs_tail "${2:-50}" ;;
  *)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
  esac
}

main "$@"; exit
