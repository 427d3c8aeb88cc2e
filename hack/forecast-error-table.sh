#!/usr/bin/env bash
# Pause-and-resume under forecast error on every embedded zone (docs/results.md,
# "Planning under forecast error"): per zone, the share of the oracle's savings kept with
# perfect forecasts and with the per-zone noisy model (seeds 1-3), pauses per job, misses.
#
#   hack/forecast-error-table.sh [BIN] [-- extra simulate flags]
#
# Extra flags go to every run, e.g. `-- --duration 8d --slack 8d --submit-every 21h` or
# `-- --noise absolute`.
set -euo pipefail
bin=${1:-target/release/carbonshift}
shift || true
[[ ${1:-} == -- ]] && shift
extra=("$@")
zones="BE CA-QC CH DE ES FI FR GB IT-NO NL US-CAL-CISO"
row() { # zone model-args... -> "of_oracle pauses misses"
  local z=$1
  shift
  "$bin" simulate --region "$z" --strategy pause-and-resume --strategy oracle-pause-and-resume \
    "${extra[@]}" "$@" | awk '$1=="pause-and-resume"{print $4, $6, $5}'
}
echo "| zone | perfect: of oracle | pauses/job | noisy seed 1 / 2 / 3: of oracle | pauses/job | pauses noisy/perfect | misses |"
echo "|---|---|---|---|---|---|---|"
for z in $zones; do
  read -r po pp pm < <(row "$z")
  of=() ; pa=() ; miss=$pm
  for s in 1 2 3; do
    read -r o p m < <(row "$z" --forecast noisy --seed "$s")
    of+=("$o"); pa+=("$p"); miss=$((miss + m))
  done
  ratio=$(awk -v a="${pa[0]}" -v b="${pa[1]}" -v c="${pa[2]}" -v p="$pp" \
    'BEGIN{ if (p > 0) printf "%.2f", (a+b+c)/3/p; else print "-" }')
  echo "| $z | $po | $pp | ${of[0]} / ${of[1]} / ${of[2]} | ${pa[0]} / ${pa[1]} / ${pa[2]} | $ratio | $miss |"
done
