"""``semiseg benchmark CONFIG``: a grid of runs (methods x labeled counts x seeds) and one results table.

The benchmark file (YAML) names the runs of one *cell* (one labeled count and one seed)::

    name: acdc_cpu
    description: what the grid measures (copied into results.md)
    output: runs/benchmarks/acdc_cpu
    labeled: [3, 7]            # split.labeled of each cell (counts or fractions)
    seeds: [0]
    vary_split: false          # true: each seed also draws the labeled cases (split.seed)
    jobs: 2                    # runs trained side by side (e.g. two 1-thread runs on 2 cores)
    overrides: [train.threads=1, data.root=../shared/data/acdc]   # every run
    lower: lower_bound         # rows for the relative improvement and the bridging coefficient
    upper: upper_bound
    runs:
      lower_bound: {preset: acdc2d_supervised}
      upper_bound: {preset: acdc2d_supervised, init_from: lower_bound, overrides: [split.all_labeled=true]}
      roam:        {preset: acdc2d_roam, init_from: lower_bound}

Grids may share an output folder (``output``) to reuse each other's complete runs when their
configurations are equal (compared by value), each writing its own ``results`` files.

``init_from: RUN`` starts a run from the best checkpoint of run ``RUN`` of the same cell (it waits
for it). Every run lives in ``OUTPUT/labeled_<n>/seed_<s>/<run>``; a complete run (final
checkpoint and test evaluation present) is skipped, an interrupted one resumed, so the command
can be re-run until the grid is complete. Model selection is on validation cases only; each
run's test cases are scored once, after training. Wall time per run accumulates in
``benchmark_time.json`` across resumes. Results: ``results.csv`` (one row per run and cell) and
``results.md`` (mean over seeds per labeled count, with the command, machine and commit).
"""

from semiseg.benchmark.execution import RECORD_SKIP, copy_records, execute_job, run_benchmark
from semiseg.benchmark.planning import Job, is_complete, plan
from semiseg.benchmark.report import markdown_results, write_plot, write_results
from semiseg.benchmark.results import case_mean_dice, collect_results, dice_interval, train_seconds, trained_on
from semiseg.benchmark.schema import BenchmarkConfig, BenchmarkRun, command_line, load_benchmark

__all__ = [
    "RECORD_SKIP", "BenchmarkConfig", "BenchmarkRun", "Job", "case_mean_dice", "collect_results", "command_line",
    "copy_records", "dice_interval", "execute_job", "is_complete", "load_benchmark", "markdown_results", "plan",
    "run_benchmark", "train_seconds", "trained_on", "write_plot", "write_results",
]
