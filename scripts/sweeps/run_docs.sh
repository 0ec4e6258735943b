#!/usr/bin/env bash
# Re-run the committed DSE studies and refresh docs/dse/ and docs/img/dse/.
# Usage: scripts/sweeps/run_docs.sh [JOBS [STUDY ...]]   (needs pip install -e '.[dse]')
#   JOBS   worker processes (default 2); STUDY: sweep names (default: every
#   scripts/sweeps/*.toml, e.g. "adc_cnn digits_large").
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-2}
shift || true
if [ $# -gt 0 ]; then
  tomls=()
  for s in "$@"; do tomls+=("scripts/sweeps/$s.toml"); done
else
  tomls=(scripts/sweeps/*.toml)
fi
out=build/dse
mkdir -p "$out" docs/dse docs/img/dse
for toml in "${tomls[@]}"; do
  name=$(basename "$toml" .toml)
  rm -rf "${out:?}/$name"
  cimgen dse "$toml" -o "$out/$name" --jobs "$jobs"
  mkdir -p "docs/dse/$name"
  cp "$out/$name/results.csv" "docs/dse/$name/results.csv"
  # Plots go to docs/img/dse/<study>_<plot>.png; the summary links there.
  sed -E "s#\]\((accuracy_vs_[a-z_]+\.png)\)#](../../img/dse/${name}_\1)#" \
    "$out/$name/summary.md" > "docs/dse/$name/summary.md"
  for png in "$out/$name"/*.png; do
    cp "$png" "docs/img/dse/${name}_$(basename "$png")"
  done
done
