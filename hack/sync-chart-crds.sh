#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, from `carbonshift crd`) into the chart
# (charts/carbonshift/files/crds/), which templates/crds.yaml embeds. The chart keeps its
# own copy because `helm package` only sees files under the chart directory.
#   hack/sync-chart-crds.sh           update the chart's copy
#   hack/sync-chart-crds.sh --check   exit 1 if the copy is stale (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds
dst=charts/carbonshift/files/crds
check=0
[[ "${1:-}" == "--check" ]] && check=1

shopt -s nullglob
srcs=("$src"/*.yaml)
if [[ ${#srcs[@]} -eq 0 ]]; then
  echo "FAIL: no CRDs in $src/ (generate them with: cargo run -- crd > $src/carbonshift.io_carbonawarejobs.yaml)" >&2
  exit 1
fi

stale=0
for f in "${srcs[@]}"; do
  t="$dst/$(basename "$f")"
  if ! cmp -s "$f" "$t"; then
    stale=1
    if [[ $check == 1 ]]; then
      echo "FAIL: $t differs from $f" >&2
    else
      mkdir -p "$dst"
      cp "$f" "$t"
      echo "updated $t"
    fi
  fi
done
for t in "$dst"/*.yaml; do
  if [[ ! -e "$src/$(basename "$t")" ]]; then
    stale=1
    if [[ $check == 1 ]]; then
      echo "FAIL: $t has no source in $src/" >&2
    else
      rm -f "$t"
      echo "removed $t"
    fi
  fi
done

if [[ $check == 1 ]]; then
  if [[ $stale == 1 ]]; then
    echo "FAIL: the chart's CRDs are stale: run hack/sync-chart-crds.sh and commit the result" >&2
    exit 1
  fi
  echo "PASS: chart CRDs match $src/"
fi
