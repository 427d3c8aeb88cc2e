#!/usr/bin/env bash
# A real local Kubernetes control plane for end-to-end tests, without Docker.
#
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from their
# published Go modules at the versions in hack/versions.env and run as plain processes on
# 127.0.0.1; kwok stands in for kubelets and plays the pod lifecycle in hack/kwok/stages.yaml
# on fake GPU nodes. Beside them one real node (kubelet, kube-proxy, containerd, runc, CNI;
# hack/lib/node.sh) runs real pods from locally built images (hack/images.sh). With
# --kueue, Kueue's manager and the JobSet controller run beside them as host processes
# (hack/lib/kueue.sh). See docs/local-cluster.md.
#
#   hack/cluster.sh up        build the tools once (cached in .cache/bin), start the cluster
#   hack/cluster.sh up --kueue  the same, with Kueue and JobSet (built on first use)
#   hack/cluster.sh env       print export lines: eval "$(hack/cluster.sh env)"
#   hack/cluster.sh status    show what runs and whether the API server is ready
#   hack/cluster.sh logs [N]  print each component's log path and its last N lines (default 0)
#   hack/cluster.sh logs-tail [N]  the same with N defaulting to 50 (for failed test runs)
#   hack/cluster.sh down      stop what `up` started and remove the cluster's state
#   hack/cluster.sh leftovers print what a stopped cluster's real node left behind (nothing)
#   hack/cluster.sh build [--kueue]  only build the tools (with --kueue: Kueue and JobSet too)
#   hack/cluster.sh pin       rewrite hack/tools/**/go.mod and go.sum from hack/versions.env
#
# Settings (environment):
#   CARBONSHIFT_CLUSTER_DIR        state: certs, kubeconfig, etcd data, logs, pids
#                                  (default .cache/cluster)
#   CARBONSHIFT_CLUSTER_PORT_BASE  ports are BASE+379 etcd, +380 etcd peer, +443 apiserver,
#                                  +257 controller-manager, +259 scheduler, +247 kwok; the
#                                  real node's +250 kubelet, +248 its healthz, +256 and +249
#                                  kube-proxy's healthz and metrics; with Kueue +461 Kueue's
#                                  webhooks, +462 its healthz/readyz, +463 its metrics, +471
#                                  JobSet's webhooks, +472 its healthz/readyz, +473 its metrics
#                                  (default 26000); give parallel clusters distinct bases and dirs
#   CARBONSHIFT_CLUSTER_NODES      number of fake GPU nodes (default 3)
#   CARBONSHIFT_CLUSTER_REGION     topology.kubernetes.io/region of the nodes, their zones
#                                  REGION+a/b/c (default eu-central-1)
#   CARBONSHIFT_REAL_NODE          1 (default): add the real node (needs root); 0: kwok only
#   CARBONSHIFT_NODE_SUBNET        the real node's pod subnet, a /24 (default 10.244.1.0/24)
#   CARBONSHIFT_KUEUE              1: as --kueue (default 0); down, status and logs find a
#                                  running Kueue without it
#   CARBONSHIFT_KUEUE_DISPATCHER   when set, Kueue's configuration gets a multiKueue section
#                                  with this dispatcherName (a MultiKueue manager whose
#                                  worker clusters an external dispatcher nominates; its
#                                  other settings: hack/lib/kueue.sh); unset: no such section
#   CARBONSHIFT_CACHE_DIR          where built tools go (default .cache; binaries in .cache/bin)
#   GO_BUILD_P                     go build -p (default 2)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

CACHE=${CARBONSHIFT_CACHE_DIR:-$ROOT/.cache}
BIN=$CACHE/bin
STATE=${CARBONSHIFT_CLUSTER_DIR:-$CACHE/cluster}
CERTS=$STATE/certs
LOGS=$STATE/logs
PIDS=$STATE/pids
KUBECONFIG_ADMIN=$STATE/kubeconfig

PORT_BASE=${CARBONSHIFT_CLUSTER_PORT_BASE:-26000}
ETCD_PORT=$((PORT_BASE + 379))
ETCD_PEER_PORT=$((PORT_BASE + 380))
APISERVER_PORT=$((PORT_BASE + 443))
KCM_PORT=$((PORT_BASE + 257))
SCHEDULER_PORT=$((PORT_BASE + 259))
KWOK_PORT=$((PORT_BASE + 247))
SERVER=https://127.0.0.1:$APISERVER_PORT

NODES=${CARBONSHIFT_CLUSTER_NODES:-3}
GPUS_PER_NODE=8
REGION=${CARBONSHIFT_CLUSTER_REGION:-eu-central-1}
# The kubernetes Service gets the first address of this range; nothing is ever routed there.
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
# Addresses kwok gives its fake pods: nothing answers there, so keep them apart from the
# real node's subnet.
KWOK_POD_CIDR=10.244.128.0/17

# shellcheck source=hack/lib/node.sh
source "$ROOT/hack/lib/node.sh"
# shellcheck source=hack/lib/kueue.sh
source "$ROOT/hack/lib/kueue.sh"

# --kueue anywhere on the command line is CARBONSHIFT_KUEUE=1.
for arg in "$@"; do [[ $arg == --kueue ]] && export CARBONSHIFT_KUEUE=1; done

# Start order; `down` stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
real_node_enabled && COMPONENTS+=(containerd kubelet kube-proxy)
kueue_enabled && COMPONENTS+=(jobset kueue)
TOOLS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm promtool prometheus)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# --- build ------------------------------------------------------------------------------

# Everything the binaries depend on, the build commands included; a change rebuilds them
# (Go's build cache keeps that to a few minutes of linking). Kueue and JobSet have their
# own (kueue_fingerprint): moving them rebuilds neither these tools nor the other way round.
build_fingerprint() {
  (
    cd "$ROOT/hack"
    grep -Ev '^(#|$|KUEUE_|JOBSET_)' versions.env
    cat tools/go.mod tools/go.sum
    local m
    for m in kwok helm promtool; do cat "tools/$m/go.mod" "tools/$m/go.sum"; done
    declare -f build
    go version
  ) | sha256sum | cut -d' ' -f1
}

check_pins() {
  local minor=${K8S_VERSION#v1.}
  local want=(
    "tools/go.mod:k8s.io/kubernetes $K8S_VERSION"
    "tools/go.mod:k8s.io/api => k8s.io/api v0.$minor"
    "tools/go.mod:go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    "tools/kwok/go.mod:sigs.k8s.io/kwok $KWOK_VERSION"
    "tools/helm/go.mod:helm.sh/helm/v3 $HELM_VERSION"
    "tools/promtool/go.mod:github.com/prometheus/prometheus $PROMETHEUS_VERSION"
    "tools/kueue/go.mod:sigs.k8s.io/kueue $KUEUE_VERSION"
    "tools/jobset/go.mod:sigs.k8s.io/jobset $JOBSET_VERSION"
  )
  local w
  for w in "${want[@]}"; do
    grep -qF "${w#*:}" "$ROOT/hack/${w%%:*}" ||
      die "hack/${w%%:*} does not pin '${w#*:}' from hack/versions.env; run hack/cluster.sh pin"
  done
}

go_env() {
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
}

build() {
  local stamp=$BIN/.fingerprint fp
  check_pins
  fp=$(build_fingerprint)
  if [[ -f $stamp && $(cat "$stamp") == "$fp" ]] && all_tools_present; then
    return 0
  fi
  go_env
  mkdir -p "$BIN"
  local started=$SECONDS minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local common=(-p "${GO_BUILD_P:-2}" -trimpath)
  # Without these the binaries report v0.0.0-master, which breaks version checks (Helm's
  # kubeVersion, kubectl's skew warning).
  local kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  kver+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  kver+=" -X k8s.io/component-base/version.gitTreeState=clean"
  kver+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  kver+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

  log "building etcd $ETCD_VERSION and Kubernetes $K8S_VERSION (a cold build takes long: see docs/local-cluster.md)"
  local tmp
  rm -rf "$CACHE"/build.* # left by an interrupted build
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  (cd "$ROOT/hack/tools" && go build "${common[@]}" -ldflags="-s -w $kver" -o "$tmp/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy)
  # The etcd main package is the module root go.etcd.io/etcd/server/v3, so go names it "server".
  mv "$tmp/server" "$tmp/etcd"
  log "building kwok $KWOK_VERSION"
  (cd "$ROOT/hack/tools/kwok" && go build "${common[@]}" -ldflags="-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
  log "building helm $HELM_VERSION"
  # Helm's release build (its Makefile) stamps the Kubernetes version of its client-go
  # (v0.N.x is Kubernetes 1.N) as the default cluster version for `helm template` and lint;
  # without it Helm assumes v1.20 and refuses charts with kubeVersion >= 1.29.
  local hclient hminor hpkg=helm.sh/helm/v3
  hclient=$(cd "$ROOT/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)
  hminor=${hclient#v0.}
  hminor=${hminor%%.*}
  local hver="-X $hpkg/internal/version.version=$HELM_VERSION -X $hpkg/internal/version.gitTreeState=clean"
  hver+=" -X $hpkg/pkg/chartutil.k8sVersionMajor=1 -X $hpkg/pkg/chartutil.k8sVersionMinor=$hminor"
  hver+=" -X $hpkg/pkg/lint/rules.k8sVersionMajor=1 -X $hpkg/pkg/lint/rules.k8sVersionMinor=$hminor"
  (cd "$ROOT/hack/tools/helm" && go build "${common[@]}" -ldflags="-s -w $hver" \
    -o "$tmp/helm" $hpkg/cmd/helm)
  # Prometheus tags its Go module v0.MMM.P for release M.MM.P.
  local prom=${PROMETHEUS_VERSION#v0.}
  prom="${prom:0:1}.$((10#${prom:1:2})).${prom#*.}"
  log "building prometheus and promtool (Prometheus $prom)"
  # remove_all_sd drops the cloud service-discovery plugins; enable_kubernetes_sd keeps the
  # Kubernetes one, which the e2e Prometheus uses to find the operator (file discovery is
  # always built in). The server serves its API without the web UI's assets (no
  # builtinassets tag: those need a JavaScript build).
  (cd "$ROOT/hack/tools/promtool" && go build "${common[@]}" -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags="-s -w -X github.com/prometheus/common/version.Version=$prom" \
    -o "$tmp/" github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/prometheus/cmd/prometheus)
  mv -f "$tmp"/* "$BIN/"
  rmdir "$tmp"
  echo "$fp" > "$stamp"
  log "tools built into $BIN in $((SECONDS - started))s"
}

all_tools_present() {
  local t
  for t in "${TOOLS[@]}"; do [[ -x $BIN/$t ]] || return 1; done
}

pin() {
  go_env
  local minor=${K8S_VERSION#v1.} gomod m
  log "pinning k8s.io/kubernetes $K8S_VERSION, staging modules v0.$minor, etcd $ETCD_VERSION"
  (
    cd "$ROOT/hack/tools"
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $gomod ]] || die "could not fetch the go.mod of k8s.io/kubernetes@$K8S_VERSION"
    # k8s.io/kubernetes points each staging module at ./staging/src/...; pin the published one.
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@v0.$minor"
    done
    go mod tidy
  )
  (cd "$ROOT/hack/tools/kwok" && go mod edit -require="sigs.k8s.io/kwok@$KWOK_VERSION" && go mod tidy)
  (cd "$ROOT/hack/tools/helm" && go mod edit -require="helm.sh/helm/v3@$HELM_VERSION" && go mod tidy)
  (cd "$ROOT/hack/tools/promtool" && go mod edit -require="github.com/prometheus/prometheus@$PROMETHEUS_VERSION" && go mod tidy)
  pin_kueue
  check_pins
  log "pinned; commit hack/versions.env and hack/tools"
}

# --- processes ----------------------------------------------------------------------------

pid_of() { [[ -f $PIDS/$1.pid ]] && cat "$PIDS/$1.pid"; }

# The binary a component runs: built into $BIN, except Debian's containerd.
exe_of() {
  case $1 in
  containerd) echo /usr/bin/containerd ;;
  *) echo "$BIN/$1" ;;
  esac
}

# Alive, and still the binary we started (not a recycled PID).
is_ours() {
  local pid=$1 name=$2 exe
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # A rebuild replaces the file under a running process: Linux then shows " (deleted)".
  [[ ${exe% (deleted)} == "$(exe_of "$name")" ]]
}

# start NAME ARGS...: NAME's binary in the background, logging to $LOGS/NAME.log. A caller
# may set the array START_VIA (local to it) to a command that execs the binary in the end
# (Kueue's mount namespace).
start() {
  local name=$1
  shift
  log "starting $name"
  # The state is private (umask 077), but what the node's components create is not: an
  # image layer or a pod volume made 0700 would lock every non-root container out.
  (
    umask 022
    exec nohup "${START_VIA[@]}" "$(exe_of "$name")" "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null
  ) &
  echo $! > "$PIDS/$name.pid"
}

stop_component() {
  local name=$1 pid
  pid=$(pid_of "$name") || return 0
  if is_ours "$pid" "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do is_ours "$pid" "$name" || break; sleep 0.2; done
    if is_ours "$pid" "$name"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$PIDS/$name.pid"
}

# The real node first (its containers, mounts and network need containerd to go), then
# the control plane in reverse start order.
stop_all() {
  local i
  real_node_enabled && node_down
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_component "${COMPONENTS[i]}"; done
}

# Our components still running without their PID file (state deleted under them): found by
# their binary and by this cluster's state directory on their command line, so that another
# checkout's cluster, or one with another CARBONSHIFT_CLUSTER_DIR, is left alone.
stray_pids() {
  local link pid exe name
  for link in /proc/[0-9]*/exe; do
    exe=$(readlink "$link" 2> /dev/null) || continue
    exe=${exe% (deleted)}
    name=${exe##*/}
    [[ " ${COMPONENTS[*]} ${KUEUE_TOOLS[*]} " == *" $name "* && $exe == "$(exe_of "$name")" ]] || continue
    pid=${link#/proc/}
    pid=${pid%/exe}
    { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null | grep -qF -- "=$STATE/" && echo "$pid"
  done
  return 0
}

stop_strays() {
  local pids
  pids=$(stray_pids)
  [[ -n $pids ]] || return 0
  log "stopping leftover components: pids ${pids//$'\n'/ }"
  # shellcheck disable=SC2086
  kill -TERM $pids 2> /dev/null || true
  for _ in $(seq 50); do [[ -z $(stray_pids) ]] && return 0; sleep 0.2; done
  # shellcheck disable=SC2046
  kill -KILL $(stray_pids) 2> /dev/null || true
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND until it succeeds.
wait_for() {
  local what=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" > /dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      show_logs 30 >&2
      return 1
    fi
    check_running
    sleep 0.5
  done
}

# Alive, and not yet the component: `start`'s subshell, nohup or START_VIA (unshare, a
# bash script), a moment before they exec the binary.
still_exec() {
  local exe tool
  kill -0 "$1" 2>/dev/null || return 1
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [[ $exe == "$(readlink -f "$BASH")" ]] && return 0
  for tool in nohup unshare; do
    command -v "$tool" > /dev/null && [[ $exe == "$(readlink -f "$(command -v "$tool")")" ]] && return 0
  done
  return 1
}

# Fail fast when a component died during start-up instead of waiting out a timeout.
check_running() {
  local name pid
  for name in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$name") || continue
    if ! is_ours "$pid" "$name" && ! still_exec "$pid"; then
      log "$name (pid $pid) exited; last lines of $LOGS/$name.log:"
      tail -n 40 "$LOGS/$name.log" >&2 || true
      die "$name failed to start"
    fi
  done
}

port_in_use() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# --- certificates and kubeconfigs ---------------------------------------------------------

gen_certs() {
  mkdir -p "$CERTS"
  cd "$CERTS"
  cat > openssl.cnf <<EOF
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
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:$NODE_IP,IP:${SERVICE_CIDR%.0/*}.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
  new_ca ca carbonshift-local-ca
  # The aggregation layer's request-header CA; without it the controller manager and the
  # scheduler log an error every few seconds about the missing requestheader bundle.
  new_ca front-proxy-ca carbonshift-local-front-proxy-ca
  sign apiserver server "/CN=kube-apiserver"
  sign admin client "/O=system:masters/CN=carbonshift-admin"
  sign kube-controller-manager client "/CN=system:kube-controller-manager"
  sign kube-scheduler client "/CN=system:kube-scheduler"
  # kwok plays every kubelet at once; system:masters is simpler than one identity per node.
  sign kwok client "/O=system:masters/CN=kwok"
  sign front-proxy-client client "/CN=front-proxy-client" front-proxy-ca
  # Service-account tokens: the API server signs with the private key and verifies with the
  # public one; the controller manager's token controller needs the private key and the CA.
  openssl genrsa -out sa.key 2048 2> /dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2> /dev/null
  rm -f ./*.csr ./*.srl
  cd - > /dev/null
}

new_ca() {
  local name=$1 cn=$2
  openssl genrsa -out "$name.key" 2048 2> /dev/null
  openssl req -x509 -new -key "$name.key" -config openssl.cnf -extensions ca -days 3650 \
    -subj "/CN=$cn" -out "$name.crt"
}

# sign NAME PROFILE SUBJECT [CA]: a key and a certificate signed by CA (default ca).
sign() {
  local name=$1 profile=$2 subj=$3 ca=${4:-ca}
  openssl genrsa -out "$name.key" 2048 2> /dev/null
  openssl req -new -key "$name.key" -subj "$subj" -config openssl.cnf -out "$name.csr"
  openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -days 365 \
    -extfile openssl.cnf -extensions "$profile" -out "$name.crt" 2> /dev/null
}

write_kubeconfig() {
  local file=$1 user=$2
  local k=("$BIN/kubectl" --kubeconfig="$file")
  "${k[@]}" config set-cluster carbonshift --server="$SERVER" --certificate-authority="$CERTS/ca.crt" --embed-certs > /dev/null
  "${k[@]}" config set-credentials "$user" --client-certificate="$CERTS/$user.crt" --client-key="$CERTS/$user.key" --embed-certs > /dev/null
  "${k[@]}" config set-context carbonshift --cluster=carbonshift --user="$user" > /dev/null
  "${k[@]}" config use-context carbonshift > /dev/null
}

# --- nodes --------------------------------------------------------------------------------

node_manifests() {
  local i zones=(a b c)
  for ((i = 1; i <= NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-gpu-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-gpu-$i
    node.kubernetes.io/instance-type: gpu-8x
    topology.kubernetes.io/region: $REGION
    topology.kubernetes.io/zone: $REGION${zones[(i - 1) % 3]}
    nvidia.com/gpu.present: "true"
status:
  capacity: &resources
    cpu: "96"
    memory: 1Ti
    ephemeral-storage: 4Ti
    pods: "110"
    nvidia.com/gpu: "$GPUS_PER_NODE"
  allocatable: *resources
EOF
  done
}

# --- commands -----------------------------------------------------------------------------

api_ready() {
  curl -sf --max-time 2 --cacert "$CERTS/ca.crt" --cert "$CERTS/admin.crt" --key "$CERTS/admin.key" \
    "$SERVER/readyz" > /dev/null
}

# shellcheck disable=SC2317 # called through wait_for
nodes_ready() {
  local ready
  ready=$("$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" get nodes -l type=kwok \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
  ((ready == NODES))
}

up() {
  command -v openssl > /dev/null || die "openssl is needed to make the cluster's certificates"
  command -v curl > /dev/null || die "curl is needed to probe the components"
  if real_node_enabled && [[ $(id -u) != 0 ]]; then
    die "the real node (kubelet, containerd, a bridge, iptables) needs root; run as root or set CARBONSHIFT_REAL_NODE=0 for kwok nodes only"
  fi
  build
  if kueue_requested; then build_kueue; fi

  if [[ -d $STATE ]]; then
    local name pid alive=0
    for name in "${COMPONENTS[@]}"; do
      pid=$(pid_of "$name") || continue
      is_ours "$pid" "$name" && alive=$((alive + 1))
    done
    if ((alive == ${#COMPONENTS[@]})) && api_ready; then
      log "already up at $SERVER"
      return 0
    fi
    log "cleaning up state left by an earlier run"
    stop_all
    rm -rf "$STATE"
  fi
  stop_strays

  local p
  # shellcheck disable=SC2046 # one port a word
  for p in $ETCD_PORT $ETCD_PEER_PORT $APISERVER_PORT $KCM_PORT $SCHEDULER_PORT $KWOK_PORT $(kueue_requested && kueue_ports); do
    port_in_use "$p" && die "port $p on 127.0.0.1 is taken by another process; set CARBONSHIFT_CLUSTER_PORT_BASE"
  done

  umask 077 # the state holds private keys
  mkdir -p "$LOGS" "$PIDS"
  # A failed start stops what it started but keeps the logs for the post-mortem.
  trap 'if (($? != 0)); then log "up failed; logs are in $LOGS"; stop_all; fi' EXIT
  gen_certs
  write_kubeconfig "$KUBECONFIG_ADMIN" admin
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$STATE/kwok.kubeconfig" kwok

  # fsync is off: the data is thrown away with the cluster, and it makes etcd much faster.
  start etcd --name=carbonshift --data-dir="$STATE/etcd" --log-level=warn \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="carbonshift=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true
  wait_for etcd 30 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

  # With the real node the API server advertises the bridge address, which becomes the
  # endpoint of the kubernetes Service; without it, --endpoint-reconciler-type=none: the API
  # server would otherwise publish 127.0.0.1, which endpoint validation rejects (loopback).
  local address_flags
  if real_node_enabled; then
    node_certs
    mapfile -t address_flags < <(node_apiserver_flags)
  else
    address_flags=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none)
  fi
  # Audit log of the writes to CarbonAwareJobs, Jobs and Leases (who wrote what, when: the
  # leader-fencing test reads it; docs/local-cluster.md).
  cat > "$STATE/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete]
  resources:
  - group: carbonshift.io
    resources: [carbonawarejobs, carbonawarejobs/status]
  - group: batch
    resources: [jobs]
  - group: coordination.k8s.io
    resources: [leases]
- level: None
POLICY
  start kube-apiserver "${address_flags[@]}" --secure-port="$APISERVER_PORT" \
    --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
    --audit-log-maxsize=200 --audit-log-maxbackup=1 \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$CERTS/apiserver.crt" --tls-private-key-file="$CERTS/apiserver.key" \
    --client-ca-file="$CERTS/ca.crt" \
    --requestheader-client-ca-file="$CERTS/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$CERTS/front-proxy-client.crt" --proxy-client-key-file="$CERTS/front-proxy-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$CERTS/sa.pub" --service-account-signing-key-file="$CERTS/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false
  wait_for "kube-apiserver /readyz" 120 api_ready

  start kube-controller-manager --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kube-controller-manager" \
    --service-account-private-key-file="$CERTS/sa.key" --root-ca-file="$CERTS/ca.crt" \
    --cluster-signing-cert-file="$CERTS/ca.crt" --cluster-signing-key-file="$CERTS/ca.key" \
    --use-service-account-credentials=true --leader-elect=false --cluster-name=carbonshift \
    --profiling=false
  start kube-scheduler --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$STATE/kube-scheduler" \
    --leader-elect=false --profiling=false
  wait_for kube-controller-manager 60 curl -skf --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 60 curl -skf --max-time 2 "https://127.0.0.1:$SCHEDULER_PORT/healthz"

  node_manifests | "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" apply -f - > /dev/null
  start kwok --kubeconfig="$STATE/kwok.kubeconfig" --config="$ROOT/hack/kwok/stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --cidr="$KWOK_POD_CIDR" --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:$KWOK_PORT"
  wait_for "$NODES Ready kwok nodes" 60 nodes_ready
  real_node_enabled && node_up
  # Pods can only be admitted once the namespace's default ServiceAccount exists.
  wait_for "the default ServiceAccount" 60 "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" get serviceaccount default -n default
  if kueue_requested; then kueue_up; fi

  trap - EXIT
  log "up: $SERVER ($NODES kwok nodes with $GPUS_PER_NODE nvidia.com/gpu each$(real_node_enabled && echo ", real node $NODE_NAME at $NODE_IP"))"
  log "use it with: eval \"\$(hack/cluster.sh env)\""
}

down() {
  stop_all
  stop_strays
  if [[ ! -d $STATE ]]; then
    log "not running"
    return 0
  fi
  # Never delete through a mount (a pod volume, the kubelet's root): what could not be
  # unmounted is reported and the state is kept.
  if [[ -n $(mounts_below "$STATE") ]]; then
    die "mounts remain under $STATE, kept it: $(mounts_below "$STATE" | tr '\n' ' ')"
  fi
  rm -rf "$STATE"
  log "down"
}

env_lines() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_ADMIN"
  # shellcheck disable=SC2016 # $PATH is for the shell that evals this
  printf 'export PATH=%q:"$PATH"\n' "$BIN"
  printf 'export CARBONSHIFT_CLUSTER_LOGS=%q\n' "$LOGS"
  printf 'export CARBONSHIFT_AUDIT_LOG=%q\n' "$LOGS/audit.log"
  real_node_enabled && node_env_lines
  if kueue_enabled; then kueue_env_lines; fi
}

status() {
  local name pid rc=0
  for name in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$name" || true)
    if is_ours "$pid" "$name"; then
      printf '%-24s running  pid %s\n' "$name" "$pid"
    else
      printf '%-24s stopped\n' "$name"
      rc=1
    fi
  done
  if [[ -f $CERTS/admin.crt ]] && api_ready; then
    printf '%-24s ready at %s\n' "apiserver /readyz" "$SERVER"
    "$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" get nodes -L topology.kubernetes.io/zone
    if kueue_enabled; then kueue_status || rc=1; fi
  else
    printf '%-24s not ready\n' "apiserver /readyz"
    rc=1
  fi
  return $rc
}

show_logs() {
  local lines=${1:-0} name
  for name in "${COMPONENTS[@]}"; do
    echo "$LOGS/$name.log"
    if ((lines > 0)) && [[ -f $LOGS/$name.log ]]; then
      tail -n "$lines" "$LOGS/$name.log" | sed "s/^/  [$name] /"
    fi
  done
}

main() {
  case ${1:-} in
  up) up ;;
  down) down ;;
  env) env_lines ;;
  status) status ;;
  logs) show_logs "${2:-0}" ;;
  logs-tail) show_logs "${2:-50}" ;;
  leftovers) real_node_enabled && node_leftovers ;;
  build)
    build
    if kueue_requested; then build_kueue; fi
    ;;
  pin) pin ;;
  *)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
  esac
}

# One line, read whole before it runs: editing this file while a build runs cannot derail it.
main "$@"; exit
