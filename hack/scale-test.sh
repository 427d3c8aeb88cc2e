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
#   1. builds the measurement (tests/scale/, a program run through `cargo test --release
#      --test scale`) and checks the arguments with it;
#   2. brings up a private control plane (its own state dir and ports, see below) unless one
#      is already up there, applies the CRD, builds the release binary if it is older than
#      HEAD, creates the namespace and starts `carbonshift run --leader-election false
#      --region DE --forecast-provider file` with its metrics on 127.0.0.1, on a forecast
#      file the script writes (DE, hourly from 2 h ago: 450 gCO2/kWh for the next 24 h,
#      then 60), so that every job waits about a day whatever the date (the embedded
#      replay made the present the cleanest hour for two thirds of the jobs on some days,
#      which then ran pods the three kwok nodes cannot hold);
#   3. runs the measurement against it, which creates N CarbonAwareJobs in the namespace
#      (alternately FlexibleStart and PauseAndResume, maxDelay 48h, 1-3 h of work, CPU-only:
#      no pods while they wait) with kube-rs, --chunk per batch, --parallel batches at a
#      time; waits until every one has status.phase and the operator has gone quiet, and
#      reports the time to converge, the operator's RSS (VmHWM/VmRSS) and CPU, its upstream
#      forecast requests, the child Jobs, and the API writes by resource from the
#      kube-apiserver's apiserver_request_total (before/after); then waits for forecast
#      refreshes (--refresh) and reports the writes of the replans they trigger (target: no
#      Job writes, no status writes unless a plan changed or accrual is due); then counts
#      the writes over a quiet window with the product's default --status-interval
#      (target: none from jobs that wait).
#
# A measurement, not a test: it exits non-zero only when the setup or the measuring fails
# (2 for a bad argument). Not run in CI. Everything it started is stopped on exit (operator,
# namespace, and the cluster if it brought it up; --keep-cluster keeps that).
#
# Options:
#   -n N                  CarbonAwareJobs to create (default 10000)
#   --chunk N             objects per batch, created one after the other (default 500)
#   --parallel N          batches created concurrently (default 2)
#   --refresh DUR         operator --forecast-refresh (default 1m)
#   --status-interval DUR operator --status-interval (default 5m, the product default)
#   --quiet-window DUR    after the replans, count the writes over DUR (default two status
#                         intervals and a minute; 0s: not measured)
#   --converge-timeout S  give up waiting for phases after S seconds (default 1800)
#   --replans K           refreshes to follow (default 2: the first in detail, then RSS and
#                         writes of each, to see whether memory keeps growing)
#   --no-replan           follow no refresh
#   --keep-cluster        do not stop the cluster this script started
#
# Environment: CARBONSHIFT_SCALE_DIR (work dir, default /tmp/cs-scale), CARBONSHIFT_CLUSTER_DIR
# (default $CARBONSHIFT_SCALE_DIR/cluster), CARBONSHIFT_CLUSTER_PORT_BASE (default 43000),
# CARBONSHIFT_SCALE_METRICS_PORT (operator metrics, default 43080), CARBONSHIFT_BIN (use this
# binary instead of $CARGO_TARGET_DIR/release/carbonshift, no build), CARGO_TARGET_DIR,
# CARBONSHIFT_SCALE_WRAP (run the operator under this command, e.g. "heaptrack -o FILE").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

N=10000
CHUNK=500
PARALLEL=2
REFRESH=1m
STATUS_INTERVAL=5m
CONVERGE_TIMEOUT=1800
REPLAN=1
REPLANS=2
QUIET_WINDOW=
KEEP_CLUSTER=0
while (($#)); do
  case $1 in
    -n) N=$2; shift 2 ;;
    --chunk) CHUNK=$2; shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --refresh) REFRESH=$2; shift 2 ;;
    --status-interval) STATUS_INTERVAL=$2; shift 2 ;;
    --quiet-window) QUIET_WINDOW=$2; shift 2 ;;
    --converge-timeout) CONVERGE_TIMEOUT=$2; shift 2 ;;
    --no-replan) REPLAN=0; shift ;;
    --replans) REPLANS=$2; shift 2 ;;
    --keep-cluster) KEEP_CLUSTER=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

WORK=${CARBONSHIFT_SCALE_DIR:-/tmp/cs-scale}
export CARBONSHIFT_CLUSTER_DIR=${CARBONSHIFT_CLUSTER_DIR:-$WORK/cluster}
export CARBONSHIFT_CLUSTER_PORT_BASE=${CARBONSHIFT_CLUSTER_PORT_BASE:-43000}
# kwok nodes only: the scale scenario runs no real pod, and the real node's subnet is the
# test cluster's.
export CARBONSHIFT_REAL_NODE=${CARBONSHIFT_REAL_NODE:-0}
METRICS_PORT=${CARBONSHIFT_SCALE_METRICS_PORT:-43080}
METRICS=http://127.0.0.1:$METRICS_PORT
NS=carbonshift-scale
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET

log() { printf '[scale %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[scale] setup failed: %s\n' "$*" >&2; exit 1; }

# --- the measurement: built first, so a bad argument is refused before any setup --------
log "building the measurement (cargo test --release --test scale)"
MEASURE=$(cd "$ROOT" && cargo test --release --quiet --test scale --no-run --message-format=json-render-diagnostics |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "scale" and m.get("executable"):
        print(m["executable"])') || die "cargo test --release --test scale --no-run"
[[ -x $MEASURE ]] || die "no executable of the scale measurement"
export CARBONSHIFT_SCALE=1
MEASURE_ARGS=(-n "$N" --chunk "$CHUNK" --parallel "$PARALLEL" --refresh "$REFRESH"
  --status-interval "$STATUS_INTERVAL" --converge-timeout "$CONVERGE_TIMEOUT" --replans "$REPLANS"
  --namespace "$NS")
((REPLAN)) || MEASURE_ARGS+=(--no-replan)
[[ -z $QUIET_WINDOW ]] || MEASURE_ARGS+=(--quiet-window "$QUIET_WINDOW")
"$MEASURE" "${MEASURE_ARGS[@]}" --check-args || exit 2

RUN=$WORK/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN"

# --- cleanup ---------------------------------------------------------------------------
OP_PID=
CLUSTER_STARTED=0
NS_CREATED=0
cleanup() {
  local rc=$?
  set +e
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
  BIN=$TARGET/release/carbonshift
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
FORECAST=$RUN/forecast.csv
python3 - "$FORECAST" << 'PY' || die "writing the forecast file"
import datetime, sys
now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
with open(sys.argv[1], "w") as f:
    f.write("timestamp,region,gco2_per_kwh\n")
    for h in range(-2, 96):
        t = now + datetime.timedelta(hours=h)
        f.write(f"{t:%Y-%m-%dT%H:%M:%SZ},DE,{450 if h < 24 else 60}\n")
PY
log "starting the operator: $BIN run --leader-election false --region DE --forecast-provider file --forecast-file $FORECAST --forecast-refresh $REFRESH --status-interval $STATUS_INTERVAL"
# CARBONSHIFT_SCALE_WRAP: a command the operator runs under, e.g. "heaptrack -o $RUN/heap"
# (a heap profile); the operator's own pid is then looked up under it.
read -r -a WRAP <<< "${CARBONSHIFT_SCALE_WRAP:-}"
"${WRAP[@]}" "$BIN" run --leader-election false --region DE --metrics-addr "127.0.0.1:$METRICS_PORT" \
  --forecast-provider file --forecast-file "$FORECAST" \
  --forecast-refresh "$REFRESH" --status-interval "$STATUS_INTERVAL" > "$RUN/operator.log" 2>&1 &
OP_PID=$!
if ((${#WRAP[@]})); then
  WRAP_PID=$OP_PID
  for _ in $(seq 40); do
    OP_PID=$(pgrep -n -f "^$BIN run --leader-election false" || true)
    [[ -n $OP_PID ]] && break
    sleep 0.25
  done
  [[ -n $OP_PID ]] || die "no operator process under ${WRAP[*]}"
  log "operator pid $OP_PID under ${WRAP[*]} (pid $WRAP_PID)"
fi
for _ in $(seq 60); do
  curl -fsS "$METRICS/readyz" > /dev/null 2>&1 && break
  kill -0 "$OP_PID" 2> /dev/null || die "the operator exited (see $RUN/operator.log)"
  sleep 0.5
done
curl -fsS "$METRICS/readyz" > /dev/null 2>&1 || die "operator not ready (see $RUN/operator.log)"

# --- measure and report ----------------------------------------------------------------
"$MEASURE" "${MEASURE_ARGS[@]}" --pid "$OP_PID" --metrics "$METRICS" \
  --operator-log "$RUN/operator.log" --run-dir "$RUN" \
  --binary "$BIN ($(git -C "$ROOT" rev-parse --short HEAD))" | tee "$RUN/summary.txt"
