#!/usr/bin/env bash
# Control plane at scale: measures the operator against the design's control-plane targets
# (O(regions) forecast calls; at most one Job write and one status write per transition;
# 10,000 CarbonAwareJobs with operator memory under 100 MiB) on a private local cluster
# (hack/cluster.sh, see docs/local-cluster.md). Results: docs/benchmarks.md,
# "Control plane at scale".
#
#   hack/scale-test.sh [-n N]
#
# What it does:
#   1. brings up a private control plane (its own state dir and ports, see below) unless one
#      is already up there, applies the CRD, builds the release binary if it is older than
#      HEAD, and starts `carbonshift run --leader-election false --region DE` (embedded
#      forecast) with its metrics on 127.0.0.1;
#   2. creates N CarbonAwareJobs in one namespace (alternately FlexibleStart and
#      PauseAndResume, maxDelay 48h, 1-3 h of work, CPU-only: no pods while they wait) from
#      generated multi-document YAML, `kubectl create -f` in chunks;
#   3. waits until every one has status.phase and the operator has gone quiet, and reports
#      the time to converge, the operator's RSS (VmHWM/VmRSS) and CPU, its upstream
#      forecast requests, the child Jobs, and the API writes by resource from the
#      kube-apiserver's apiserver_request_total (before/after);
#   4. waits for one forecast refresh (--refresh) and reports the writes of the replan it
#      triggers (target: no Job writes, no status writes unless a plan changed or accrual
#      is due; --status-interval is long by default so no accrual falls in the window).
#
# A measurement, not a test: it exits non-zero only when the setup fails. Not run in CI.
# Everything it started is stopped on exit (operator, namespace, and the cluster if it
# brought it up; --keep-cluster keeps that).
#
# Options:
#   -n N                  CarbonAwareJobs to create (default 10000)
#   --chunk N             objects per `kubectl create -f` (default 500)
#   --parallel N          chunks created concurrently (default 2)
#   --refresh DUR         operator --forecast-refresh (default 1m)
#   --status-interval DUR operator --status-interval (default 30m; 5m is the product default)
#   --converge-timeout S  give up waiting for phases after S seconds (default 1800)
#   --replans K           refreshes to follow (default 2: the first in detail, then RSS and
#                         writes of each, to see whether memory keeps growing)
#   --no-replan           skip step 4
#   --keep-cluster        do not stop the cluster this script started
#
# Environment: CARBONSHIFT_SCALE_DIR (work dir, default /tmp/cs-scale), CARBONSHIFT_CLUSTER_DIR
# (default $CARBONSHIFT_SCALE_DIR/cluster), CARBONSHIFT_CLUSTER_PORT_BASE (default 43000),
# CARBONSHIFT_SCALE_METRICS_PORT (operator metrics, default 43080), CARBONSHIFT_BIN (use this
# binary instead of target/release/carbonshift, no build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

N=10000
CHUNK=500
PARALLEL=2
REFRESH=1m
STATUS_INTERVAL=30m
CONVERGE_TIMEOUT=1800
REPLAN=1
REPLANS=2
KEEP_CLUSTER=0
while (($#)); do
  case $1 in
    -n) N=$2; shift 2 ;;
    --chunk) CHUNK=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --refresh) REFRESH=$2; shift 2 ;;
    --status-interval) STATUS_INTERVAL=$2; shift 2 ;;
    --converge-timeout) CONVERGE_TIMEOUT=$2; shift 2 ;;
    --no-replan) REPLAN=0; shift ;;
    --replans) REPLANS=$2; shift 2 ;;
    --keep-cluster) KEEP_CLUSTER=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || { echo "-n wants a positive integer" >&2; exit 2; }

WORK=${CARBONSHIFT_SCALE_DIR:-/tmp/cs-scale}
export CARBONSHIFT_CLUSTER_DIR=${CARBONSHIFT_CLUSTER_DIR:-$WORK/cluster}
export CARBONSHIFT_CLUSTER_PORT_BASE=${CARBONSHIFT_CLUSTER_PORT_BASE:-43000}
# kwok nodes only: the scale scenario runs no real pod, and the real node's subnet is the
# test cluster's.
export CARBONSHIFT_REAL_NODE=${CARBONSHIFT_REAL_NODE:-0}
METRICS_PORT=${CARBONSHIFT_SCALE_METRICS_PORT:-43080}
METRICS=http://127.0.0.1:$METRICS_PORT
NS=carbonshift-scale
RUN=$WORK/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"

log() { printf '[scale %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[scale] setup failed: %s\n' "$*" >&2; exit 1; }

# --- cleanup ---------------------------------------------------------------------------
OP_PID=
CLUSTER_STARTED=0
NS_CREATED=0
cleanup() {
  local rc=$?
  set +e
  [[ -n ${WATCH_PID:-} ]] && kill "$WATCH_PID" 2> /dev/null
  if [[ -n $OP_PID ]] && kill -0 "$OP_PID" 2> /dev/null; then
    log "stopping the operator (pid $OP_PID)"
    kill -TERM "$OP_PID"
    for _ in $(seq 20); do kill -0 "$OP_PID" 2> /dev/null || break; sleep 0.5; done
    kill -0 "$OP_PID" 2> /dev/null && kill -KILL "$OP_PID"
    wait "$OP_PID" 2> /dev/null
  fi
  if ((CLUSTER_STARTED && !KEEP_CLUSTER)); then
    log "stopping the private cluster"
    "$ROOT/hack/cluster.sh" down > "$RUN/cluster-down.log" 2>&1 || log "cluster down failed: see $RUN/cluster-down.log"
  elif ((NS_CREATED)); then
    log "deleting namespace $NS (in the background of the API server)"
    kubectl delete namespace "$NS" --wait=false > /dev/null 2>&1
  fi
  log "logs and snapshots kept in $RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- setup -----------------------------------------------------------------------------
if "$ROOT/hack/cluster.sh" status > /dev/null 2>&1; then
  log "cluster already up in $CARBONSHIFT_CLUSTER_DIR: using it (and leaving it up)"
else
  log "starting a private cluster in $CARBONSHIFT_CLUSTER_DIR (port base $CARBONSHIFT_CLUSTER_PORT_BASE)"
  CLUSTER_STARTED=1
  "$ROOT/hack/cluster.sh" up > "$RUN/cluster-up.log" 2>&1 || die "hack/cluster.sh up (see $RUN/cluster-up.log)"
fi
eval "$("$ROOT/hack/cluster.sh" env)"
command -v kubectl > /dev/null || die "no kubectl"
kubectl get --raw /readyz > /dev/null || die "API server not ready"

if [[ -n ${CARBONSHIFT_BIN:-} ]]; then
  BIN=$CARBONSHIFT_BIN
else
  BIN=$ROOT/target/release/carbonshift
  head_time=$(git -C "$ROOT" log -1 --format=%ct HEAD)
  if [[ ! -x $BIN ]] || (($(stat -c %Y "$BIN") < head_time)); then
    log "building the release binary (older than HEAD or missing)"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release"
  fi
fi
[[ -x $BIN ]] || die "no binary $BIN"

"$BIN" crd | kubectl apply --server-side -f - > /dev/null || die "applying the CRD"
kubectl wait --for=condition=Established crd/carbonawarejobs.carbonshift.io --timeout=60s > /dev/null ||
  die "CRD not established"
if kubectl get namespace "$NS" > /dev/null 2>&1; then
  die "namespace $NS exists (a previous run still deleting?); delete it first"
fi
kubectl create namespace "$NS" > /dev/null || die "creating namespace $NS"
NS_CREATED=1

(exec 3<> "/dev/tcp/127.0.0.1/$METRICS_PORT") 2> /dev/null && die "port $METRICS_PORT is taken"
log "starting the operator: $BIN run --leader-election false --region DE --forecast-refresh $REFRESH --status-interval $STATUS_INTERVAL"
"$BIN" run --leader-election false --region DE --metrics-addr "127.0.0.1:$METRICS_PORT" \
  --forecast-refresh "$REFRESH" --status-interval "$STATUS_INTERVAL" > "$RUN/operator.log" 2>&1 &
OP_PID=$!
for _ in $(seq 60); do
  curl -fsS "$METRICS/readyz" > /dev/null 2>&1 && break
  kill -0 "$OP_PID" 2> /dev/null || die "the operator exited (see $RUN/operator.log)"
  sleep 0.5
done
curl -fsS "$METRICS/readyz" > /dev/null 2>&1 || die "operator not ready (see $RUN/operator.log)"

# --- measuring helpers -----------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# "VmHWM VmRSS" in KiB
op_mem() { awk '/^VmHWM:/ {h=$2} /^VmRSS:/ {r=$2} END {print h, r}' "/proc/$OP_PID/status"; }
# user+system CPU seconds (fields after the parenthesised comm: utime is 14, stime 15)
op_cpu() { sed 's/^.*) //' "/proc/$OP_PID/stat" | awk -v t="$CLK_TCK" '{printf "%.2f\n", ($12 + $13) / t}'; }
op_metrics() { curl -fsS "$METRICS/metrics"; }
# sum of an operator metric family (optionally a label filter regex) from /metrics
op_sum() {
  op_metrics | awk -v m="$1" -v f="${2:-}" '
    $1 ~ "^"m"({|$)" && (f == "" || $1 ~ f) {s += $NF} END {printf "%d\n", s}'
}
reconciles() { op_sum carbonshift_reconcile_duration_seconds_count; }
forecast_requests() { op_sum carbonshift_forecast_requests_total; }
snap_api() { kubectl get --raw /metrics | grep '^apiserver_request_total{' > "$1"; }
now() { date +%s.%N; }
mib() { python3 -c "print('%.1f MiB' % ($1 / 1024))"; }
secs() { python3 -c "print('%.1f s' % ($2 - $1))"; }
sub() { python3 -c "print('%.2f' % ($2 - $1))"; }
# counts of CarbonAwareJobs by phase ("-" for none), from the server's table (light on the
# API server and kubectl: only the printer columns come back)
# (an unset cell is blank, so the PHASE column is cut by its position under the header)
phase_counts() {
  kubectl get caj -n "$NS" 2> /dev/null |
    awk 'NR == 1 {a = index($0, "PHASE"); b = index($0, "REGION"); next}
         {p = substr($0, a, b - a); gsub(/ /, "", p); if (p == "") p = "-"; c[p]++}
         END {for (k in c) printf "%s=%d ", k, c[k]}'
}

# Table of API requests between two apiserver_request_total snapshots, by verb and
# resource; writes first, then the reads of jobs and carbonawarejobs.
api_diff() {
  python3 - "$1" "$2" "$N" << 'EOF'
import re, sys
def load(path):
    out = {}
    for line in open(path):
        m = re.match(r'apiserver_request_total\{(.*)\} (\S+)$', line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""),
               labels.get("subresource", ""))
        out[key] = out.get(key, 0) + float(m.group(2))
    return out
a, b, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
who = {
    ("batch", "jobs", ""): "operator (child Job apply)",
    ("carbonshift.io", "carbonawarejobs", "status"): "operator (status apply)",
    ("events.k8s.io", "events", ""): "operator (Events)",
    ("batch", "jobs", "status"): "kube-controller-manager (Job controller)",
    ("", "events", ""): "kube-controller-manager (core Events)",
    ("carbonshift.io", "carbonawarejobs", ""): "kubectl (creating the jobs)",
    ("", "nodes", "status"): "kwok (node heartbeats)",
    ("", "serviceaccounts", "token"): "kube-controller-manager",
}
writes = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
rows = []
for k in sorted(set(a) | set(b)):
    d = b.get(k, 0) - a.get(k, 0)
    verb, group, res, sub = k
    if d <= 0 or verb not in writes or res in ("leases", "", "tokenreviews", "subjectaccessreviews"):
        continue
    rows.append((verb, group, res, sub, int(d)))
print("  %-6s %-32s %9s %9s  %s" % ("verb", "resource", "requests", "per job", "by"))
if not rows:
    print("  (no writes)")
for verb, group, res, sub, d in rows:
    r = (group + "/" if group else "") + res + ("/" + sub if sub else "")
    print("  %-6s %-32s %9d %9.3f  %s" % (verb, r, d, d / n, who.get((group, res, sub), "")))
reads = []
for k in sorted(set(a) | set(b)):
    d = b.get(k, 0) - a.get(k, 0)
    verb, group, res, sub = k
    if d > 0 and verb in ("GET", "LIST", "WATCH") and res in ("jobs", "carbonawarejobs"):
        reads.append((verb, group, res, sub, int(d)))
if reads:
    print("  reads (informational; LISTs include this script's polling):")
    for verb, group, res, sub, d in reads:
        r = (group + "/" if group else "") + res + ("/" + sub if sub else "")
        print("  %-6s %-32s %9d %9.3f" % (verb, r, d, d / n))
EOF
}

# Waits until the operator's reconcile count stops moving (3 polls, 5 s apart, unchanged),
# at most 10 minutes. After a large creation this takes a while: the Job controller of
# kube-controller-manager (20 QPS by default) sets each suspended Job's status long after
# the operator created it, and every such update is a reconcile.
settle() {
  local last=-1 same=0 cur
  for _ in $(seq 120); do
    cur=$(reconciles)
    if [[ $cur == "$last" ]]; then same=$((same + 1)); else same=0; fi
    ((same >= 3)) && return 0
    last=$cur
    sleep 5
  done
  log "warning: the operator never went quiet (reconciles still rising)"
}

# Operator writes between two snapshots: "jobs J, status S, events E".
op_writes() {
  python3 - "$1" "$2" << 'EOF'
import re, sys
def load(path):
    out = {}
    for line in open(path):
        m = re.match(r'apiserver_request_total\{(.*)\} (\S+)$', line.strip())
        if m:
            l = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if l.get("verb") in ("POST", "PUT", "PATCH", "APPLY"):
                k = (l.get("group", ""), l.get("resource", ""), l.get("subresource", ""))
                out[k] = out.get(k, 0) + float(m.group(2))
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
d = lambda k: int(b.get(k, 0) - a.get(k, 0))
print("jobs %d, status %d, events %d" % (d(("batch", "jobs", "")),
      d(("carbonshift.io", "carbonawarejobs", "status")), d(("events.k8s.io", "events", ""))))
EOF
}

# --- create ----------------------------------------------------------------------------
log "generating $N CarbonAwareJobs"
mkdir -p "$RUN/objects"
python3 - "$N" "$CHUNK" "$RUN/objects" "$NS" << 'EOF'
import sys
n, chunk, out, ns = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
doc = """apiVersion: carbonshift.io/v1alpha1
kind: CarbonAwareJob
metadata:
  name: scale-{i:05d}
  namespace: {ns}
  labels:
    carbonshift.io/scale-test: "true"
spec:
  schedule:
    strategy: {strategy}
    maxDelay: 48h
    expectedDuration: {hours}h
  power:
    watts: 300
  template:
    spec:
      backoffLimit: 1
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: work
              image: busybox:1.36
              command: ["sh", "-c", "sleep 3600"]
              resources:
                requests:
                  cpu: 100m
"""
for start in range(0, n, chunk):
    with open("%s/chunk-%05d.yaml" % (out, start // chunk), "w") as f:
        for i in range(start, min(n, start + chunk)):
            f.write("---\n" + doc.format(i=i, ns=ns,
                    strategy="FlexibleStart" if i % 2 == 0 else "PauseAndResume",
                    hours=1 + i % 3))
EOF

# Status changes as watch events (an apply that changes nothing is a request but no event):
# MODIFIED events of CarbonAwareJobs = status writes that changed something.
kubectl get caj -n "$NS" --watch-only --output-watch-events -o jsonpath='{.type}{"\n"}' \
  > "$RUN/caj-watch-events.txt" 2> "$RUN/caj-watch.err" &
WATCH_PID=$!
modified() { grep -c '^MODIFIED$' "$RUN/caj-watch-events.txt" || true; }
snap_api "$RUN/api-0-before.txt"
REC0=$(reconciles)
FC0=$(forecast_requests)
CPU0=$(op_cpu)
read -r _ RSS0 <<< "$(op_mem)"
log "operator idle: RSS $((RSS0 / 1024)) MiB, $FC0 forecast requests so far"

log "creating $N CarbonAwareJobs ($CHUNK per kubectl create, $PARALLEL at a time)"
T0=$(now)
# shellcheck disable=SC2016 # $1 and $2 are the inner shell's
printf '%s\n' "$RUN"/objects/chunk-*.yaml |
  xargs -P "$PARALLEL" -I{} sh -c 'kubectl create -f "$1" > /dev/null 2>> "$2" || echo "failed: $1" >> "$2"' _ {} "$RUN/create-errors.log"
T_CREATED=$(now)
grep -q '^failed: ' "$RUN/create-errors.log" 2> /dev/null && { head -5 "$RUN/create-errors.log" >&2; die "kubectl create failed (see $RUN/create-errors.log)"; }
log "created in $(python3 -c "print(round($T_CREATED - $T0, 1))") s"

# --- converge --------------------------------------------------------------------------
poll=$((N >= 5000 ? 15 : 5))
PEAK_DURING=0
while :; do
  pc=$(phase_counts)
  have=$(tr ' ' '\n' <<< "$pc" | awk -F= '$1 != "-" && $1 != "" {s += $2} END {print s + 0}')
  read -r _ rss <<< "$(op_mem)"
  ((rss > PEAK_DURING)) && PEAK_DURING=$rss
  log "with a phase: $have/$N  ($pc) RSS $((rss / 1024)) MiB, CPU $(op_cpu) s, reconciles $(($(reconciles) - REC0))"
  ((have >= N)) && break
  kill -0 "$OP_PID" 2> /dev/null || die "the operator exited (see $RUN/operator.log)"
  if (($(date +%s) - ${T0%.*} > CONVERGE_TIMEOUT)); then
    log "not converged after ${CONVERGE_TIMEOUT}s: reporting what there is"
    break
  fi
  sleep "$poll"
done
T_CONVERGED=$(now)
CONVERGED=$have
CPU_CONVERGED=$(op_cpu)
REC_CONVERGED=$(($(reconciles) - REC0))
FC_CONVERGED=$(($(forecast_requests) - FC0))
log "every job has a phase; waiting for the operator to go quiet"
settle
T_SETTLED=$(now)
snap_api "$RUN/api-1-settled.txt"
CPU_SETTLED=$(op_cpu)
read -r HWM1 RSS1 <<< "$(op_mem)"
REC_SETTLED=$(($(reconciles) - REC0))
MOD_SETTLED=$(modified)
FC_SETTLED=$(forecast_requests)
REFRESHES_SETTLED=$(grep -c 'forecast refreshed' "$RUN/operator.log" || true)
PHASES=$(phase_counts)
JOBS=$(kubectl get jobs -n "$NS" -o name | wc -l)
UNSUSPENDED=$(kubectl get jobs -n "$NS" -o jsonpath='{range .items[*]}{.spec.suspend}{"\n"}{end}' | grep -vc '^true$' || true)
PODS=$(kubectl get pods -n "$NS" -o name | wc -l)
TRANSITIONS=$(op_sum carbonshift_transitions_total)
op_metrics > "$RUN/operator-metrics-settled.txt"

# --- replan ----------------------------------------------------------------------------
if ((REPLAN && REPLANS > 0)); then
  SAMPLE=scale-00001
  kubectl get caj -n "$NS" "$SAMPLE" -o json > "$RUN/sample-before.json"
  snap_api "$RUN/api-2-before-replan.txt"
  R_REC0=$(reconciles)
  R_FC0=$(forecast_requests)
  R_REF0=$(grep -c 'forecast refreshed' "$RUN/operator.log" || true)
  R_CPU0=$(op_cpu)
  R_MOD0=$(modified)
  R_TR0=$TRANSITIONS
  log "waiting for the next forecast refresh (--forecast-refresh $REFRESH, checked every 30 s)"
  refreshed() { (($(grep -c 'forecast refreshed' "$RUN/operator.log" || true) > R_REF0 || $(forecast_requests) > R_FC0)); }
  for _ in $(seq 120); do
    refreshed && break
    sleep 5
  done
  if refreshed; then
    R_T0=$(now)
    # the refresh triggers a reconcile of every job: wait for about N of them, then quiet
    for _ in $(seq 360); do
      (($(reconciles) - R_REC0 >= N)) && break
      sleep 2
    done
    settle
    R_T1=$(now)
    snap_api "$RUN/api-3-after-replan.txt"
    R_REC=$(($(reconciles) - R_REC0))
    R_REF=$(($(grep -c 'forecast refreshed' "$RUN/operator.log" || true) - R_REF0))
    R_CPU=$(python3 -c "print(round($(op_cpu) - $R_CPU0, 2))")
    R_TR=$(($(op_sum carbonshift_transitions_total) - R_TR0))
    R_MOD=$(($(modified) - R_MOD0))
    kubectl get caj -n "$NS" "$SAMPLE" -o json > "$RUN/sample-after.json"
    REPLAN_OK=1
    read -r _ RSS_R1 <<< "$(op_mem)"
    MORE=()
    for k in $(seq 2 "$REPLANS"); do
      snap_api "$RUN/api-r$k-0.txt"
      R_REF0=$(grep -c 'forecast refreshed' "$RUN/operator.log" || true)
      R_FC0=$(forecast_requests)
      k_rec0=$(reconciles) k_cpu0=$(op_cpu) k_mod0=$(modified)
      log "replan $k: waiting for the next refresh"
      for _ in $(seq 120); do refreshed && break; sleep 5; done
      refreshed || break
      for _ in $(seq 360); do (($(reconciles) - k_rec0 >= N)) && break; sleep 2; done
      settle
      snap_api "$RUN/api-r$k-1.txt"
      read -r _ k_rss <<< "$(op_mem)"
      MORE+=("$(printf '  %-46s %s' "replan $k" "reconciles $(($(reconciles) - k_rec0)), CPU $(sub "$k_cpu0" "$(op_cpu)") s, operator writes $(op_writes "$RUN/api-r$k-0.txt" "$RUN/api-r$k-1.txt"), MODIFIED $(($(modified) - k_mod0)), RSS after $(mib "$k_rss")")")
    done
  else
    log "no forecast refresh within 10 minutes: replan not measured"
    REPLAN_OK=0
  fi
fi
read -r HWM2 RSS2 <<< "$(op_mem)"

# --- report ----------------------------------------------------------------------------
{
  echo
  echo "=== carbonshift control plane at scale: N=$N CarbonAwareJobs, $(date -u '+%Y-%m-%d %H:%M UTC') ==="
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg); binary $BIN ($(git -C "$ROOT" rev-parse --short HEAD))"
  echo "operator: --region DE (embedded forecast) --forecast-refresh $REFRESH --status-interval $STATUS_INTERVAL"
  echo
  printf '  %-46s %s\n' \
    "jobs with a phase / created" "$CONVERGED / $N  ($PHASES)" \
    "create (kubectl, $CHUNK per file, $PARALLEL parallel)" "$(secs "$T0" "$T_CREATED")" \
    "converge (first create -> every phase set)" "$(secs "$T0" "$T_CONVERGED")" \
    "operator quiet (-> reconciles stop)" "$(secs "$T0" "$T_SETTLED")" \
    "operator RSS idle (before any job)" "$(mib "$RSS0")" \
    "operator RSS steady (after converging)" "$(mib "$RSS1")" \
    "operator RSS end (after the replan)" "$(mib "$RSS2")" \
    "operator peak RSS (VmHWM) converged / end" "$(mib "$HWM1") / $(mib "$HWM2")  (target < 100 MiB at 10,000)" \
    "RSS per job (steady - idle)" "$(python3 -c "print('%.1f KiB' % (($RSS1 - $RSS0) / $N))")" \
    "operator CPU to converge" "$(sub "$CPU0" "$CPU_CONVERGED") s  (until quiet: $(sub "$CPU0" "$CPU_SETTLED") s)" \
    "reconciles to converge / until quiet" "$REC_CONVERGED / $REC_SETTLED" \
    "forecast upstream requests (all regions)" "$FC_SETTLED total; $FC_CONVERGED while converging; $REFRESHES_SETTLED fetches logged (1 + refreshes)" \
    "child Jobs / not suspended / pods" "$JOBS / $UNSUSPENDED / $PODS" \
    "transitions counted by the operator" "$TRANSITIONS" \
    "CarbonAwareJob MODIFIED watch events" "$MOD_SETTLED  (status applies that changed the object)"
  echo
  echo "API requests from creation until the operator was quiet (kube-apiserver apiserver_request_total):"
  api_diff "$RUN/api-0-before.txt" "$RUN/api-1-settled.txt"
  if ((REPLAN && REPLANS > 0)); then
    echo
    if ((REPLAN_OK)); then
      echo "Replan after a forecast refresh ($R_REF refresh(es) in the window, $(secs "$R_T0" "$R_T1") from the refresh to quiet):"
      printf '  %-46s %s\n' \
        "reconciles" "$R_REC" \
        "operator CPU" "$R_CPU s" \
        "transitions (start/pause/resume)" "$R_TR" \
        "CarbonAwareJob MODIFIED watch events" "$R_MOD"
      api_diff "$RUN/api-2-before-replan.txt" "$RUN/api-3-after-replan.txt"
      printf '  %-46s %s\n' "replan 1" "RSS after $(mib "$RSS_R1")"
      ((${#MORE[@]})) && printf '%s\n' "${MORE[@]}"
      echo "  status fields of $SAMPLE that changed in the replan:"
      python3 - "$RUN/sample-before.json" "$RUN/sample-after.json" << 'EOF'
import json, sys
a, b = (json.load(open(p)).get("status", {}) for p in sys.argv[1:3])
ch = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
print("   ", ", ".join("%s: %s -> %s" % (k, a.get(k), b.get(k)) for k in ch) if ch else "    (none)")
EOF
    else
      echo "Replan: not measured (no forecast refresh seen)."
    fi
  fi
  echo
} | tee "$RUN/summary.txt"
