# shellcheck shell=bash
# Kueue and JobSet on the local cluster (sourced by hack/cluster.sh; docs/local-cluster.md).
#
# With `up --kueue` (or CARBONSHIFT_KUEUE=1) the Kueue manager (sigs.k8s.io/kueue/cmd/kueue)
# and the JobSet controller (sigs.k8s.io/jobset) run as host processes next to the control
# plane, built from the modules pinned in hack/tools/kueue and hack/tools/jobset. Their CRDs
# come from the modules' config/components/crd/bases; their webhook configurations are the
# modules' config/components/webhook manifests, rendered by hack/kueue/render-webhooks.py
# to call https://127.0.0.1:<port><path> with a CA of their own. Kueue runs in a private
# mount namespace that shows $KUEUE_DIR/etc at /etc/kueue (hack/kueue/etc-kueue.sh): Kueue
# v0.17 reads its metrics certificate from that hard-coded path.
#
# Uses from hack/cluster.sh: ROOT BIN STATE LOGS PORT_BASE KUBECONFIG_ADMIN, log, die,
# start, wait_for, new_ca, sign, go_env, check_running.

KUEUE_WEBHOOK_PORT=$((PORT_BASE + 461))
KUEUE_HEALTH_PORT=$((PORT_BASE + 462))
KUEUE_METRICS_PORT=$((PORT_BASE + 463))
JOBSET_WEBHOOK_PORT=$((PORT_BASE + 471))
JOBSET_HEALTH_PORT=$((PORT_BASE + 472))
JOBSET_METRICS_PORT=$((PORT_BASE + 473))
KUEUE_DIR=$STATE/kueue
JOBSET_DIR=$STATE/jobset
# One CA and one serving certificate for 127.0.0.1, shared by both webhook servers and
# both metrics servers.
KUEUE_CERTS=$KUEUE_DIR/certs
KUEUE_TOOLS=(kueue jobset)

# Asked for (up, build); and for the commands that look at a cluster (down, status, logs,
# env), also when the cluster was started with it.
kueue_requested() { [[ ${CARBONSHIFT_KUEUE:-0} == 1 ]]; }
kueue_enabled() { kueue_requested || [[ -f $PIDS/kueue.pid ]]; }

kueue_ports() { echo "$KUEUE_WEBHOOK_PORT $KUEUE_HEALTH_PORT $KUEUE_METRICS_PORT $JOBSET_WEBHOOK_PORT $JOBSET_HEALTH_PORT $JOBSET_METRICS_PORT"; }

# --- build ------------------------------------------------------------------------------

# Kueue's and JobSet's own inputs: a change there rebuilds only them, and the other tools'
# fingerprint leaves them out.
kueue_fingerprint() {
  (
    cd "$ROOT/hack" || exit
    grep -E '^(KUEUE|JOBSET)_' versions.env
    cat tools/kueue/go.mod tools/kueue/go.sum tools/jobset/go.mod tools/jobset/go.sum
    declare -f build_kueue
    go version
  ) | sha256sum | cut -d' ' -f1
}

kueue_tools_present() {
  local t
  for t in "${KUEUE_TOOLS[@]}"; do [[ -x $BIN/$t ]] || return 1; done
}

build_kueue() {
  local stamp=$BIN/.fingerprint-kueue fp
  check_pins
  fp=$(kueue_fingerprint)
  if [[ -f $stamp && $(cat "$stamp") == "$fp" ]] && kueue_tools_present; then
    return 0
  fi
  go_env
  mkdir -p "$BIN"
  local started=$SECONDS tmp common=(-p "${GO_BUILD_P:-2}" -trimpath)
  rm -rf "$CACHE"/build-kueue.* # left by an interrupted build
  tmp=$(mktemp -d "$CACHE/build-kueue.XXXXXX")
  log "building kueue $KUEUE_VERSION (with JobSet, a cold build takes about 10 minutes: see docs/local-cluster.md)"
  (cd "$ROOT/hack/tools/kueue" && go build "${common[@]}" -o "$tmp/kueue" \
    -ldflags="-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" sigs.k8s.io/kueue/cmd/kueue)
  log "building jobset $JOBSET_VERSION"
  (cd "$ROOT/hack/tools/jobset" && go build "${common[@]}" -o "$tmp/jobset" \
    -ldflags="-s -w -X sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION" sigs.k8s.io/jobset)
  mv -f "$tmp"/* "$BIN/"
  rmdir "$tmp"
  echo "$fp" > "$stamp"
  log "kueue and jobset built into $BIN in $((SECONDS - started))s"
}

pin_kueue() {
  (cd "$ROOT/hack/tools/kueue" && go mod edit -require="sigs.k8s.io/kueue@$KUEUE_VERSION" && go mod tidy)
  (cd "$ROOT/hack/tools/jobset" && go mod edit -require="sigs.k8s.io/jobset@$JOBSET_VERSION" && go mod tidy)
}

# The directory of module MODULE as pinned by hack/tools/DIR (downloaded if missing).
module_dir() {
  local dir=$1 module=$2
  (
    go_env
    cd "$ROOT/hack/tools/$dir" || exit
    go mod download "$module"
    go list -m -f '{{.Dir}}' "$module"
  )
}

# --- certificates and configuration -------------------------------------------------------

kueue_certs() {
  mkdir -p "$KUEUE_CERTS" "$KUEUE_DIR/etc/metrics/certs"
  (
    cd "$KUEUE_CERTS" || exit
    kueue_sign
  )
  # What /etc/kueue/metrics/certs shows inside Kueue's mount namespace.
  cp "$KUEUE_CERTS/tls.crt" "$KUEUE_CERTS/tls.key" "$KUEUE_DIR/etc/metrics/certs/"
}

# In the certificate directory: a CA and a serving certificate for IP 127.0.0.1.
kueue_sign() {
  cat > openssl.cnf <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
EOF
  new_ca ca carbonshift-local-kueue-ca
  # controller-runtime's webhook server reads tls.crt and tls.key from its certDir.
  sign tls server "/CN=kueue-webhook"
  rm -f ./*.csr ./*.srl
}

kueue_config() {
  cat > "$KUEUE_DIR/config.yaml" <<EOF
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
webhook:
  host: 127.0.0.1
  port: $KUEUE_WEBHOOK_PORT
  certDir: $KUEUE_CERTS
health:
  healthProbeBindAddress: 127.0.0.1:$KUEUE_HEALTH_PORT
metrics:
  bindAddress: 127.0.0.1:$KUEUE_METRICS_PORT
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
manageJobsWithoutQueueName: false
# waitForPodsReady is left out: off.
integrations:
  frameworks:
  - batch/job
  - jobset.x-k8s.io/jobset
featureGates:
  # The visibility API is an aggregated API server on 0.0.0.0:8082; nothing here uses it.
  VisibilityOnDemand: false
EOF
  if [[ -n ${CARBONSHIFT_KUEUE_DISPATCHER:-} ]]; then kueue_multikueue_config >> "$KUEUE_DIR/config.yaml"; fi
  cat > "$JOBSET_DIR/config.yaml" <<EOF
apiVersion: config.jobset.x-k8s.io/v1alpha1
kind: Configuration
webhook:
  host: 127.0.0.1
  port: $JOBSET_WEBHOOK_PORT
  certDir: $KUEUE_CERTS
health:
  healthProbeBindAddress: 127.0.0.1:$JOBSET_HEALTH_PORT
metrics:
  bindAddress: 127.0.0.1:$JOBSET_METRICS_PORT
  certDir: $KUEUE_CERTS
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
EOF
}

# With CARBONSHIFT_KUEUE_DISPATCHER: the multiKueue section of a MultiKueue manager (used by
# hack/multicluster.sh). The MultiKueue feature gate is Beta and on by default in v0.17.0,
# and MultiKueueBatchJobWithManagedBy GA (locked on), so no gate is set. With a dispatcher
# other than Kueue's two built-in ones (kueue.x-k8s.io/multikueue-dispatcher-all-at-once,
# -incremental), Kueue copies a Workload only to the workers its
# status.nominatedClusterNames names and leaves that list to the named dispatcher.
#   CARBONSHIFT_KUEUE_MULTIKUEUE_GC_INTERVAL        how often remote objects whose manager
#                                                   Workload is gone are deleted (default 1m,
#                                                   Kueue's default; 0 turns the GC off)
#   CARBONSHIFT_KUEUE_MULTIKUEUE_ORIGIN             the kueue.x-k8s.io/multikueue-origin label
#                                                   value of remote objects (default
#                                                   multikueue, Kueue's default)
#   CARBONSHIFT_KUEUE_MULTIKUEUE_WORKER_LOST_TIMEOUT  how long a Workload's MultiKueue check
#                                                   stays Ready while its worker is unreachable
#                                                   (default 15m, Kueue's default)
kueue_multikueue_config() {
  cat <<EOF
multiKueue:
  dispatcherName: $CARBONSHIFT_KUEUE_DISPATCHER
  gcInterval: ${CARBONSHIFT_KUEUE_MULTIKUEUE_GC_INTERVAL:-1m}
  origin: ${CARBONSHIFT_KUEUE_MULTIKUEUE_ORIGIN:-multikueue}
  workerLostTimeout: ${CARBONSHIFT_KUEUE_MULTIKUEUE_WORKER_LOST_TIMEOUT:-15m}
EOF
}

# --- start --------------------------------------------------------------------------------

# apply_crds DIR: server-side apply every CRD in DIR and wait until all are Established.
apply_crds() {
  local k=("$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN")
  "${k[@]}" apply --server-side --force-conflicts --field-manager=carbonshift-cluster -f "$1" > /dev/null
  # Retried: kubectl wait fails at once ("accessor error: <nil>") on a CRD the API server
  # has not yet given any status.conditions.
  wait_for "the CRDs of $1 to be Established" 60 \
    "${k[@]}" wait --for=condition=Established --timeout=10s -f "$1"
}

# render_webhooks NAME SRC PORT [--serve G/R]...: NAME's webhook configurations for its server
# on 127.0.0.1:PORT, applied.
render_webhooks() {
  local name=$1 src=$2 port=$3
  shift 3
  python3 "$ROOT/hack/kueue/render-webhooks.py" --name-prefix "$name-" \
    --manifests "$src/config/components/webhook/manifests.yaml" \
    --kustomization "$src/config/components/webhook/kustomization.yaml" \
    --url-base "https://127.0.0.1:$port" --ca-file "$KUEUE_CERTS/ca.crt" "$@" \
    > "$STATE/$name/webhooks.yaml"
  "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" apply --server-side --force-conflicts \
    --field-manager=carbonshift-cluster -f "$STATE/$name/webhooks.yaml" > /dev/null
}

# serves_tls PORT: an HTTPS answer (any status) with a certificate the Kueue CA signed.
serves_tls() { curl -s -o /dev/null --max-time 2 --cacert "$KUEUE_CERTS/ca.crt" "https://127.0.0.1:$1/"; }

# Through the API server and both webhook servers: server-side dry runs of a ResourceFlavor
# (Kueue's webhooks) and a JobSet (JobSet's, then Kueue's).
webhooks_answer() {
  "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" create --dry-run=server -o name \
    -f "$ROOT/hack/kueue/probe.yaml"
}

kueue_up() {
  command -v python3 > /dev/null || die "python3 (with PyYAML) is needed to render Kueue's webhooks"
  command -v unshare > /dev/null || die "unshare (util-linux) is needed to run Kueue"
  [[ $(id -u) == 0 ]] || die "Kueue runs in a mount namespace of its own, which needs root"
  local kueue_src jobset_src
  kueue_src=$(module_dir kueue "sigs.k8s.io/kueue@$KUEUE_VERSION")
  jobset_src=$(module_dir jobset "sigs.k8s.io/jobset@$JOBSET_VERSION")
  mkdir -p "$KUEUE_DIR" "$JOBSET_DIR"
  log "installing the CRDs of kueue $KUEUE_VERSION and jobset $JOBSET_VERSION"
  apply_crds "$kueue_src/config/components/crd/bases"
  apply_crds "$jobset_src/config/components/crd/bases"
  "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" create namespace kueue-system > /dev/null
  kueue_certs
  kueue_config

  KUBECONFIG=$KUBECONFIG_ADMIN start jobset --config="$JOBSET_DIR/config.yaml" --zap-devel=false
  # A private mount namespace: the bind mount over /etc/kueue is seen by Kueue alone and
  # goes away with it.
  # shellcheck disable=SC2034 # read by start
  local START_VIA=(unshare --mount --propagation private
    "$ROOT/hack/kueue/etc-kueue.sh" "$KUEUE_DIR/etc" "$KUEUE_DIR/etc-overlay")
  KUBECONFIG=$KUBECONFIG_ADMIN start kueue --config="$KUEUE_DIR/config.yaml"
  wait_for "jobset /readyz" 60 curl -sf --max-time 2 "http://127.0.0.1:$JOBSET_HEALTH_PORT/readyz"
  wait_for "kueue /readyz" 60 curl -sf --max-time 2 "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz"
  wait_for "jobset's webhook server" 30 serves_tls "$JOBSET_WEBHOOK_PORT"
  wait_for "kueue's webhook server" 30 serves_tls "$KUEUE_WEBHOOK_PORT"
  wait_for "kueue's metrics server (certificate from /etc/kueue/metrics/certs)" 30 serves_tls "$KUEUE_METRICS_PORT"

  # Only now: with failurePolicy Fail, a webhook without its server blocks the writes it
  # covers.
  render_webhooks jobset "$jobset_src" "$JOBSET_WEBHOOK_PORT"
  render_webhooks kueue "$kueue_src" "$KUEUE_WEBHOOK_PORT" \
    --serve 'kueue.x-k8s.io/*' --serve batch/jobs --serve jobset.x-k8s.io/jobsets
  wait_for "kueue's and jobset's webhooks through the API server" 30 webhooks_answer
  log "kueue $KUEUE_VERSION and jobset $JOBSET_VERSION up: webhooks at https://127.0.0.1:$KUEUE_WEBHOOK_PORT and :$JOBSET_WEBHOOK_PORT"
}

kueue_env_lines() {
  echo 'export CARBONSHIFT_KUEUE=1'
  printf 'export CARBONSHIFT_KUEUE_READYZ=%q\n' "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz"
}

kueue_status() {
  local what port
  for what in kueue:$KUEUE_HEALTH_PORT jobset:$JOBSET_HEALTH_PORT; do
    port=${what#*:}
    if curl -sf --max-time 2 "http://127.0.0.1:$port/readyz" > /dev/null; then
      printf '%-24s ready at 127.0.0.1:%s\n' "${what%%:*} /readyz" "$port"
    else
      printf '%-24s not ready\n' "${what%%:*} /readyz"
      return 1
    fi
  done
}
