#!/usr/bin/env bash
# Re-run the committed DSE studies and refresh docs/dse/ and docs/img/dse/.
# Usage: scripts/sweeps/run_docs.sh [JOBS]   (needs pip install -e '.[dse]')
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-2}
out=build/dse
mkdir -p "$out" docs/dse docs/img/dse
for toml in scripts/sweeps/*.toml; do
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
