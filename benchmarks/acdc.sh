#!/usr/bin/env bash
# Reproduce docs/benchmarks/acdc.md: run (or resume) the ACDC grid, then publish its table.
#   bash benchmarks/acdc.sh                 # CPU protocol (benchmarks/acdc_cpu.yaml), ~3 h on 2 cores
#   bash benchmarks/acdc.sh acdc_gpu        # paper-scale protocol, on a GPU
#   bash benchmarks/acdc.sh acdc_cpu --report-only   # publish the runs complete so far
# Re-running resumes: complete runs are skipped, interrupted ones continue from their checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-acdc_cpu}"
SEMISEG="${SEMISEG:-.venv/bin/semiseg}"
"$SEMISEG" benchmark "benchmarks/${name}.yaml" "${@:2}"
mkdir -p docs/benchmarks
cp "runs/benchmarks/${name}/results.md" "docs/benchmarks/${name%_cpu}.md"
echo "table: docs/benchmarks/${name%_cpu}.md"
