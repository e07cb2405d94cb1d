#!/usr/bin/env bash
# Run (or resume) a benchmark grid, then publish its table as docs/benchmarks/<name without _cpu>.md.
#   bash benchmarks/grid.sh acdc_cpu        # CPU protocol (benchmarks/acdc_cpu.yaml), 3 seeds: ~23 h on 2 cores (~8 h a seed)
#   bash benchmarks/grid.sh acdc_gpu        # paper-scale protocol, on a GPU
#   bash benchmarks/grid.sh acdc_cpu --report-only   # publish the runs complete so far
#   bash benchmarks/grid.sh acdc_equireg_cpu  # EquiReg vs its baseline, 3 seeds (docs/benchmarks/acdc_equireg.md)
#   bash benchmarks/grid.sh la_cpu          # left atrium, CPU protocol (docs/benchmarks/la.md), ~12 h on 2 cores
#   DOC=acdc_progress bash benchmarks/grid.sh acdc_cpu --report-only   # publish under another name (a grid in progress)
# Re-running resumes: complete runs are skipped, interrupted ones continue from their checkpoint; the records of
# complete runs (benchmarks/records/<name>, committed) let a fresh clone resume where an earlier machine stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-acdc_cpu}"
SEMISEG="${SEMISEG:-.venv/bin/semiseg}"
log=$(mktemp)
# run records (no weights) are kept in benchmarks/records/<the file's output folder name, else the grid's name>:
# a fresh machine resumes the grid from them; grids that share an output folder share their records too
out=$(sed -n 's/^output: *//p' "benchmarks/${name}.yaml" | head -1)
records="benchmarks/records/$(basename "${out:-$name}")"
"$SEMISEG" benchmark "benchmarks/${name}.yaml" --records "$records" "${@:2}" | tee "$log"
md=$(grep -E '^results' "$log" | tail -1 | sed 's/.*: //')   # the results file this grid wrote
rm -f "$log"
mkdir -p docs/benchmarks
doc="${DOC:-${name%_cpu}}"
png="${md%.md}.png"
sed "s#($(basename "$png"))#(${doc}.png)#" "$md" > "docs/benchmarks/${doc}.md"
if [ -f "$png" ]; then cp "$png" "docs/benchmarks/${doc}.png"; fi
echo "table: docs/benchmarks/${doc}.md"
