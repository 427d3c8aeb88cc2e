# shellcheck shell=bash
# The real node of the local cluster (sourced by hack/cluster.sh; docs/local-cluster.md).
#
# One machine-local node runs real pods: kubelet and kube-proxy built from the same
# k8s.io/kubernetes module as the control plane, containerd, runc and the CNI plugins from
# Debian's packages. Pods live in network namespaces on a bridge this script creates
# (NODE_BRIDGE, NODE_SUBNET); iptables drops anything that would leave the bridge for
# another interface, so nothing a pod sends is routed off the machine. `node_down` removes
# every container, mount, network device, iptables rule and process `node_up` made, and
# puts back the kernel settings the kubelet and the bridge plugin change.
#
# Uses from hack/cluster.sh: ROOT BIN STATE CERTS LOGS PORT_BASE APISERVER_PORT REGION POD_CIDR
# KUBECONFIG_ADMIN, log, die, start, stop_component, wait_for, write_kubeconfig, sign.
# node_certs runs before the API server starts (its flags name the certificates), node_up
# once the control plane is up.

NODE_NAME=carbonshift-node
# A Linux interface name has at most 15 characters.
NODE_BRIDGE=csbr$PORT_BASE
# The real node's pods get addresses here; the host end of the bridge (NODE_IP) is the
# node's InternalIP, the API server's advertised address and the gateway of the pods.
NODE_SUBNET=${CARBONSHIFT_NODE_SUBNET:-10.244.1.0/24}
NODE_PREFIX=${NODE_SUBNET%.*}
NODE_IP=$NODE_PREFIX.1
KUBELET_PORT=$((PORT_BASE + 250))
KUBELET_HEALTHZ_PORT=$((PORT_BASE + 248))
KUBE_PROXY_HEALTHZ_PORT=$((PORT_BASE + 256))
KUBE_PROXY_METRICS_PORT=$((PORT_BASE + 249))
# Sockets live under /run (short paths: a unix socket path has at most 107 bytes, and a
# shim's socket is derived from containerd's state directory).
NODE_RUN=/run/carbonshift-$PORT_BASE
CONTAINERD_SOCK=$NODE_RUN/containerd.sock
NODE_DIR=$STATE/node
# Pods land on the real node only when they tolerate this taint: every other test keeps
# its pods on the kwok nodes, where no image has to exist.
NODE_TAINT_KEY=carbonshift.io/real-node
# Kernel settings changed while the node runs (the kubelet's kernel tunables and the CNI
# bridge plugin's IP forwarding), saved by node_up and restored by node_down.
NODE_SYSCTLS=(net/ipv4/ip_forward vm/overcommit_memory vm/panic_on_oom kernel/panic
  kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
NODE_FW_CHAIN=CARBONSHIFT-$PORT_BASE
PAUSE_IMAGE=localhost/carbonshift/pause:3.10

real_node_enabled() { [[ ${CARBONSHIFT_REAL_NODE:-1} == 1 ]]; }

# --- packages -----------------------------------------------------------------------------

# containerd, runc, the CNI plugins and iptables from Debian, installed when missing.
node_packages() {
  local want=(containerd runc containernetworking-plugins iptables) missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "the real node needs root to install ${missing[*]} (or set CARBONSHIFT_REAL_NODE=0)"
  log "installing ${missing[*]} from Debian's packages"
  apt-get update -qq > "$LOGS/apt.log" 2>&1 || die "apt-get update failed: see $LOGS/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >> "$LOGS/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed: see $LOGS/apt.log"
}

# --- certificates and configuration -------------------------------------------------------

node_certs() {
  (
    cd "$CERTS" || exit 1
    cat >> openssl.cnf << EOF
[kubelet_serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:$NODE_IP,DNS:$NODE_NAME
EOF
    # The kubelet's client identity: the Node authorizer and NodeRestriction admit it.
    sign kubelet client "/O=system:nodes/CN=system:node:$NODE_NAME"
    # The kubelet's serving certificate, checked by the API server (logs, exec).
    sign kubelet-serving kubelet_serving "/CN=system:node:$NODE_NAME"
    # kube-proxy's user, bound to system:node-proxier by the API server's default RBAC.
    sign kube-proxy client "/CN=system:kube-proxy"
    # The API server's identity towards kubelets (logs, exec, port-forward).
    sign apiserver-kubelet-client client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    rm -f ./*.csr ./*.srl
  )
  write_kubeconfig "$STATE/kubelet.kubeconfig" kubelet
  write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy
}

# The API server's flags that make the real node reachable: it advertises the bridge
# address (the `kubernetes` Service's endpoint, so pods reach it through kube-proxy) and
# talks to the kubelet by InternalIP, verifying its certificate.
node_apiserver_flags() {
  printf '%s\n' --bind-address=0.0.0.0 --advertise-address="$NODE_IP" \
    --kubelet-client-certificate="$CERTS/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$CERTS/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$CERTS/ca.crt" \
    --kubelet-preferred-address-types=InternalIP
}

node_configs() {
  mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/cni/ipam" "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs" "$NODE_RUN"
  cat > "$NODE_DIR/containerd.toml" << EOF
version = 2
root = "$NODE_DIR/containerd"
state = "$NODE_RUN/containerd"
# Plugins that need kernel features or disks this node has no use for.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  # Built from Kubernetes' pause.c and imported (hack/images.sh): nothing can be pulled.
  sandbox_image = "$PAUSE_IMAGE"
  # This machine lacks CAP_SYS_RESOURCE: lowering a container's oom_score_adj below
  # containerd's own fails every sandbox ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, so node_down finds every one.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  # No masquerade and no portmap NAT to the outside: pods reach each other, the host and
  # Services; the FORWARD rules of node_firewall stop anything else.
  cat > "$NODE_DIR/cni/net.d/10-carbonshift.conflist" << EOF
{
  "cniVersion": "1.0.0",
  "name": "carbonshift",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat > "$NODE_DIR/kubelet.yaml" << EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine mounts cgroup v1, which kubelet 1.35 refuses unless told to accept it.
failCgroupV1: false
# No systemd here: cgroups are managed through the cgroupfs, as runc does by default.
cgroupDriver: cgroupfs
# No QoS cgroup tree and no node-allocatable enforcement: both need writable cgroup
# hierarchies the kubelet owns, which a shared machine does not give it.
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $CERTS/kubelet-serving.crt
tlsPrivateKeyFile: $CERTS/kubelet-serving.key
# Only clients with a certificate of the cluster CA (the API server) reach the kubelet API.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CERTS/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $NODE_DIR/pod-logs
# No cluster DNS and no host resolver inside pods: nothing in a pod resolves or reaches
# names off this machine.
resolvConf: ""
registerWithTaints:
  - {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
# Images are imported, never pulled: never garbage-collect them, and evict only when the
# machine is really short.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
maxPods: 50
EOF
  cat > "$NODE_DIR/kube-proxy.yaml" << EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
# Leave the machine's conntrack table sizes alone.
conntrack: {maxPerCore: 0, min: 0}
nodePortAddresses: ["$NODE_IP/32"]
EOF
}

# --- network ------------------------------------------------------------------------------

node_save_sysctls() {
  local k
  for k in "${NODE_SYSCTLS[@]}"; do
    [[ -r /proc/sys/$k ]] && printf '%s=%s\n' "$k" "$(cat "/proc/sys/$k")"
  done > "$NODE_DIR/sysctls.saved"
}

node_restore_sysctls() {
  local line
  [[ -f $NODE_DIR/sysctls.saved ]] || return 0
  while IFS= read -r line; do
    echo "${line#*=}" > "/proc/sys/${line%%=*}" 2> /dev/null || log "could not restore ${line%%=*}"
  done < "$NODE_DIR/sysctls.saved"
}

node_network() {
  if ip -4 route show "$NODE_SUBNET" | grep -q . && ! ip link show "$NODE_BRIDGE" > /dev/null 2>&1; then
    die "$NODE_SUBNET is already routed on this machine (another cluster?); set CARBONSHIFT_NODE_SUBNET"
  fi
  ip link show "$NODE_BRIDGE" > /dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip -4 addr show dev "$NODE_BRIDGE" | grep -qF " $NODE_IP/" || ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  node_firewall
}

# Traffic may flow between pods on the bridge and between pods and this host; a packet
# that would be forwarded between the bridge and any other interface is dropped, so
# nothing from a pod leaves the machine and nothing from outside reaches a pod. The API
# server listens on every address (it must be reachable on the bridge): only loopback and
# the bridge may connect to it.
node_firewall() {
  iptables -w -N "$NODE_FW_CHAIN" 2> /dev/null || iptables -w -F "$NODE_FW_CHAIN"
  iptables -w -A "$NODE_FW_CHAIN" -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j RETURN
  iptables -w -A "$NODE_FW_CHAIN" -i "$NODE_BRIDGE" -j DROP
  iptables -w -A "$NODE_FW_CHAIN" -o "$NODE_BRIDGE" -j DROP
  iptables -w -C FORWARD -j "$NODE_FW_CHAIN" 2> /dev/null || iptables -w -I FORWARD 1 -j "$NODE_FW_CHAIN"
  local in=$NODE_FW_CHAIN-IN
  iptables -w -N "$in" 2> /dev/null || iptables -w -F "$in"
  iptables -w -A "$in" -i lo -j RETURN
  iptables -w -A "$in" -i "$NODE_BRIDGE" -j RETURN
  iptables -w -A "$in" -p tcp --dport "$APISERVER_PORT" -j DROP
  iptables -w -C INPUT -j "$in" 2> /dev/null || iptables -w -I INPUT 1 -j "$in"
}

# The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT) and
# anything kube-proxy --cleanup left: every KUBE-* chain and every rule that jumps to one,
# for IPv4 and IPv6. Skipped while another kubelet runs on this machine.
node_kube_chains_remove() {
  local cmd table line chain
  local pid
  # A live kubelet (a zombie has no executable any more, as ours may be for a moment).
  for pid in $(pgrep -x kubelet); do
    if readlink "/proc/$pid/exe" > /dev/null 2>&1; then
      log "another kubelet (pid $pid) runs here: the KUBE-* iptables chains are left alone"
      return 0
    fi
  done
  for cmd in iptables ip6tables; do
    command -v "$cmd-save" > /dev/null || continue
    for table in filter nat mangle; do
      while IFS= read -r line; do
        # shellcheck disable=SC2086 # a saved rule is a list of arguments
        "$cmd" -w -t "$table" -D ${line#-A } 2> /dev/null || true
      done < <("$cmd-save" -t "$table" 2> /dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-')
      for chain in $("$cmd-save" -t "$table" 2> /dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
        "$cmd" -w -t "$table" -F "$chain" 2> /dev/null || true
      done
      for chain in $("$cmd-save" -t "$table" 2> /dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
        "$cmd" -w -t "$table" -X "$chain" 2> /dev/null || true
      done
    done
  done
}

node_firewall_remove() {
  local chain parent
  for chain in "$NODE_FW_CHAIN:FORWARD" "$NODE_FW_CHAIN-IN:INPUT"; do
    parent=${chain#*:}
    chain=${chain%:*}
    while iptables -w -D "$parent" -j "$chain" 2> /dev/null; do :; done
    iptables -w -F "$chain" 2> /dev/null || true
    iptables -w -X "$chain" 2> /dev/null || true
  done
}

# --- start --------------------------------------------------------------------------------

node_ready() {
  [[ $("$BIN/kubectl" --kubeconfig="$KUBECONFIG_ADMIN" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2> /dev/null) == True ]]
}

node_up() {
  node_packages
  mkdir -p "$NODE_DIR"
  node_save_sysctls
  node_configs
  node_network
  start containerd --config="$NODE_DIR/containerd.toml"
  wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
  "$ROOT/hack/images.sh" import --address "$CONTAINERD_SOCK" pause python >> "$LOGS/images.log" 2>&1 ||
    { tail -n 20 "$LOGS/images.log" >&2; die "importing the node's images failed: see $LOGS/images.log"; }
  start kubelet --config="$NODE_DIR/kubelet.yaml" --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$NODE_DIR/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --node-labels="type=real,topology.kubernetes.io/region=$REGION,topology.kubernetes.io/zone=${REGION}a"
  start kube-proxy --config="$NODE_DIR/kube-proxy.yaml"
  wait_for "the real node $NODE_NAME Ready" 120 node_ready
}

# --- stop ---------------------------------------------------------------------------------

# Every mount below a directory, deepest first.
mounts_below() {
  local dir
  for dir in "$@"; do
    awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts
  done | sort -r -u
}

node_unmount() {
  local m
  for _ in 1 2 3; do
    while IFS= read -r m; do
      [[ -n $m ]] && { umount "$m" 2> /dev/null || umount -l "$m" 2> /dev/null || true; }
    done < <(mounts_below "$NODE_DIR" "$NODE_RUN")
    [[ -z $(mounts_below "$NODE_DIR" "$NODE_RUN") ]] && return 0
  done
  log "mounts left under $NODE_DIR or $NODE_RUN: $(mounts_below "$NODE_DIR" "$NODE_RUN" | tr '\n' ' ')"
}

# containerd's shims (and the containers under them) outlive containerd: find them by the
# address of this cluster's containerd on their command line.
node_shim_pids() {
  local link pid
  for link in /proc/[0-9]*/cmdline; do
    pid=${link#/proc/}
    pid=${pid%/cmdline}
    # The process may exit between the glob and the read: the redirection's own error is
    # silenced too, by the braces.
    { tr '\0' ' ' < "$link"; } 2> /dev/null | grep -q "^/usr/bin/containerd-shim.* -address $CONTAINERD_SOCK " && echo "$pid"
  done
  return 0
}

# Kills a process and everything below it.
kill_tree() {
  local pid=$1 child
  # shellcheck disable=SC2013 # the file is one line of space-separated PIDs
  for child in $(cat "/proc/$pid/task/"*/children 2> /dev/null); do kill_tree "$child"; done
  kill -KILL "$pid" 2> /dev/null || true
}

# Stops the containers, then containerd, then everything it leaves; safe to run when the
# node is half up, or after the processes died.
node_down() {
  local name pid ids
  for name in kube-proxy kubelet; do stop_component "$name"; done
  if [[ -S $CONTAINERD_SOCK ]]; then
    local ctr=(ctr --address "$CONTAINERD_SOCK" -n k8s.io --timeout 10s)
    ids=$("${ctr[@]}" tasks ls -q 2> /dev/null || true)
    for pid in $ids; do "${ctr[@]}" tasks kill -s SIGKILL "$pid" > /dev/null 2>&1 || true; done
    for pid in $ids; do "${ctr[@]}" tasks rm -f "$pid" > /dev/null 2>&1 || true; done
  fi
  stop_component containerd
  for pid in $(node_shim_pids); do kill_tree "$pid"; done
  node_unmount
  if [[ -x $BIN/kube-proxy && -f $NODE_DIR/kube-proxy.yaml ]]; then
    "$BIN/kube-proxy" --cleanup --config="$NODE_DIR/kube-proxy.yaml" > /dev/null 2>&1 || true
  fi
  node_kube_chains_remove
  node_firewall_remove
  ip link show "$NODE_BRIDGE" > /dev/null 2>&1 && ip link delete "$NODE_BRIDGE"
  node_restore_sysctls
  rm -rf "$NODE_RUN"
}

# Prints what a stopped real node left behind (nothing, after node_down): processes,
# mounts, network devices, iptables chains, state directories.
node_leftovers() {
  local pid exe line
  for pid in $(node_shim_pids); do echo "process $pid: $({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null)"; done
  for exe in /proc/[0-9]*/exe; do
    line=$(readlink "$exe" 2> /dev/null) || continue
    pid=${exe#/proc/}
    pid=${pid%/exe}
    case ${line% (deleted)} in
    "$BIN/kubelet" | "$BIN/kube-proxy" | /usr/bin/containerd)
      { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null | grep -qF -- "$STATE/" && echo "process $pid: $line"
      ;;
    esac
  done
  mounts_below "$NODE_DIR" "$NODE_RUN" | sed 's/^/mount /'
  ip link show "$NODE_BRIDGE" > /dev/null 2>&1 && echo "network device $NODE_BRIDGE"
  ip -o link show type veth 2> /dev/null | awk -v b="$NODE_BRIDGE" '$0 ~ "master " b {print "network device " $2}'
  for line in iptables ip6tables; do
    command -v "$line-save" > /dev/null || continue
    "$line-save" 2> /dev/null | sed -n "s/^:\(KUBE-[^ ]*\|CNI-[^ ]*\|${NODE_FW_CHAIN}[^ ]*\) .*/$line chain \1/p"
  done
  [[ -e $NODE_RUN ]] && echo "directory $NODE_RUN"
  return 0
}

node_env_lines() {
  printf 'export CONTAINERD_ADDRESS=%q\n' "$CONTAINERD_SOCK"
  printf 'export CARBONSHIFT_REAL_NODE_NAME=%q\n' "$NODE_NAME"
  printf 'export CARBONSHIFT_REAL_NODE_IP=%q\n' "$NODE_IP"
  printf 'export CARBONSHIFT_REAL_NODE_TAINT=%q\n' "$NODE_TAINT_KEY"
}
