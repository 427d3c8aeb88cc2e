#!/bin/sh
# Regenerates the embedded traces in this folder from the shared source CSVs.
#
# Usage: data/build.sh [SOURCE_DIR]   (default: /work/shared/data/grid-intensity)
#
# Only the columns carbonshift uses are kept, selected by header name (not position) so a
# reordered source still converts correctly. `gzip -n` omits the file name and mtime, so
# the output is byte-for-byte reproducible with the same gzip version.
set -eu
SRC=${1:-/work/shared/data/grid-intensity}
OUT=$(cd "$(dirname "$0")" && pwd)

# keep COLS... : print the named columns of a CSV on stdin, in the given order.
keep() {
  awk -F, -v want="$*" '
    NR == 1 {
      n = split(want, w, " ")
      for (i = 1; i <= NF; i++) idx[$i] = i
      for (j = 1; j <= n; j++) if (!(w[j] in idx)) { print "missing column " w[j] > "/dev/stderr"; exit 1 }
    }
    {
      line = ""
      for (j = 1; j <= n; j++) line = line (j > 1 ? "," : "") $(idx[w[j]])
      print line
    }'
}

for zone in BE CA-QC CH DE ES FI FR GB IT-NO NL US-CAL-CISO; do
  keep timestamp region gco2_per_kwh <"$SRC/electricitymaps_hourly_$zone.csv" |
    gzip -9n >"$OUT/electricitymaps_hourly_$zone.csv.gz"
done
keep timestamp region gco2_per_kwh <"$SRC/neso_gb_national_actual_2023-03.csv" |
  gzip -9n >"$OUT/neso_gb_national_actual_2023-03.csv.gz"
keep issued_at timestamp region gco2_per_kwh_forecast <"$SRC/neso_gb_national_forecast_vintages_2023-03.csv" |
  gzip -9n >"$OUT/neso_gb_national_forecast_vintages_2023-03.csv.gz"
