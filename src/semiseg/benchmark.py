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

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from semiseg.config.schema import _Strict
from semiseg.errors import ConfigError, SemisegError, validation_summary


class BenchmarkRun(_Strict):
    preset: str
    overrides: list[str] = Field(default_factory=list)
    init_from: str | None = None
    once: bool = False
    """Train once per seed and show it in every labeled count's table (a run whose split does not depend on
    the labeled count, e.g. the upper bound with ``split.all_labeled=true``); lives in ``OUTPUT/once/seed_<s>/``."""


class BenchmarkConfig(_Strict):
    name: str
    description: str = ""
    output: str | None = None
    labeled: list[int | float]
    seeds: list[int] = Field(default_factory=lambda: [0])
    jobs: int = 1
    overrides: list[str] = Field(default_factory=list)
    runs: dict[str, BenchmarkRun]
    lower: str | None = None
    upper: str | None = None
    vary_split: bool = False
    """Seeds also draw the split (``split.seed``): other labeled cases per seed, as EquiReg's three patient selections."""
    equivariance: bool = False
    """Also score the equivariance Dice of every run's test cases (EquiReg); complete runs without it are re-scored."""
    postprocess: list[Literal["none", "largest_component"]] = Field(default_factory=lambda: ["none"])
    """Score every run's test cases as predicted (``none``) and/or after keeping each class's largest
    connected component; one table per choice."""
    results: str = "results"
    """Stem of the result files in the output folder (``results.md/.csv/.png``); grids that share an output
    folder, and so reuse each other's complete runs, need their own stems."""

    @model_validator(mode="after")
    def _check(self) -> "BenchmarkConfig":
        names = set(self.runs)
        for n, r in self.runs.items():
            if r.init_from is not None and r.init_from not in names:
                raise ValueError(f"run '{n}': init_from '{r.init_from}' is not a run of this benchmark ({', '.join(sorted(names))})")
            if r.once and r.init_from is not None and not self.runs[r.init_from].once:
                raise ValueError(f"run '{n}' is trained once per seed, so it cannot start from '{r.init_from}', "
                                 "which depends on the labeled count")
        for role in ("lower", "upper"):
            v = getattr(self, role)
            if v is not None and v not in names:
                raise ValueError(f"{role} '{v}' is not a run of this benchmark")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        _order(self.runs)  # fails on a cycle
        return self


def _order(runs: dict[str, BenchmarkRun]) -> list[str]:
    """Runs in dependency order (a run after the one it starts from)."""
    done: list[str] = []
    pending = dict(runs)
    while pending:
        ready = [n for n, r in pending.items() if r.init_from is None or r.init_from in done]
        if not ready:
            raise ValueError(f"init_from forms a cycle among {', '.join(sorted(pending))}")
        for n in ready:
            done.append(n)
            del pending[n]
    return done


def load_benchmark(path: Path, extra_overrides: list[str] | None = None) -> BenchmarkConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        cfg = BenchmarkConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_summary(exc)}") from None
    if extra_overrides:
        cfg.overrides = list(cfg.overrides) + list(extra_overrides)
    return cfg


def command_line(config: Path, extra: list[str] | None, output: Path | None, jobs: int | None) -> str:
    parts = ["semiseg benchmark", str(config)] + list(extra or [])
    if output:
        parts.append(f"--output {output}")
    if jobs:
        parts.append(f"--jobs {jobs}")
    return " ".join(parts)


@dataclass(frozen=True)
class Job:
    run: str
    labeled: int | float
    seed: int
    preset: str
    overrides: tuple[str, ...]
    run_dir: Path
    depends: Path | None
    equivariance: bool = False
    postprocess: tuple[str, ...] = ("none",)


def plan(cfg: BenchmarkConfig, output: Path) -> list[Job]:
    """Every run of every cell, dependencies first within a cell."""
    jobs = []
    for lab in cfg.labeled:
        for seed in cfg.seeds:
            cell = output / f"labeled_{lab}" / f"seed_{seed}"
            once = output / "once" / f"seed_{seed}"
            for name in _order(cfg.runs):
                r = cfg.runs[name]
                dep = (once if cfg.runs[r.init_from].once else cell) / r.init_from if r.init_from else None
                ov = list(cfg.overrides) + list(r.overrides) + ([] if r.once else [f"split.labeled={lab}"])
                ov += [f"seed={seed}", f"name={name}"]
                if cfg.vary_split:
                    ov.append(f"split.seed={seed}")
                if dep is not None:
                    ov.append(f"method.init_from={dep}")
                jobs.append(Job(name, lab, seed, r.preset, tuple(ov), (once if r.once else cell) / name, dep, cfg.equivariance,
                                tuple(cfg.postprocess)))
    return jobs


def is_complete(run_dir: Path, equivariance: bool = False, weights_needed: bool = True,
                postprocess: tuple[str, ...] = ("none",)) -> bool:
    """Trained and scored: the final checkpoint and the test evaluation (with the equivariance Dice if asked).

    ``weights_needed=False`` (tabulating): ``benchmark_time.json``, written after a grid run is trained
    and scored, stands in for the checkpoint, so run folders copied back from another machine without
    their weights still make the table.
    """
    trained = (run_dir / "checkpoint_final.pt").is_file() or (
        not weights_needed and (run_dir / "benchmark_time.json").is_file())
    from semiseg.evaluation.run_eval import eval_dir_name

    scored = all((run_dir / eval_dir_name("test", pp) / "summary.csv").is_file() for pp in postprocess)
    return trained and scored and (not equivariance or (run_dir / "eval_test" / "equivariance.csv").is_file())


def execute_job(job: Job) -> dict[str, Any]:
    """Train (or resume) one run, then score its test cases; runs in a worker process."""
    import torch

    from semiseg.config import load_config
    from semiseg.engine.trainer import resolve_device, run_or_resume
    from semiseg.evaluation.run_eval import evaluate_run

    import resource

    t0 = time.time()
    cfg = load_config(job.preset, list(job.overrides))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    skipped = run_or_resume(cfg, job.run_dir).get("skipped", False)
    train_s = 0.0 if skipped else time.time() - t0
    evaluate_run(job.run_dir, "test", device=str(resolve_device(cfg.train.device)), save_predictions=False,
                 equivariance=job.equivariance or None, postprocess=job.postprocess)  # one prediction, every variant
    timing_path = job.run_dir / "benchmark_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"train_s": 0.0, "eval_s": 0.0}
    timing["train_s"] += train_s
    timing["eval_s"] = time.time() - t0 - train_s
    # this worker process ran only this job (max_tasks_per_child=1): its peak is the job's
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    if not skipped:
        timing["peak_rss_gib"] = max(float(timing.get("peak_rss_gib", 0.0)), peak)
    if torch.cuda.is_available() and str(resolve_device(cfg.train.device)).startswith("cuda") and not skipped:
        timing["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    timing_path.write_text(json.dumps(timing, indent=1))
    return timing


RECORD_SKIP = ("checkpoint_*.pt", ".checkpoint_*", "tensorboard", "predictions.npz")
"""What a run record leaves out: weights, their temp files, TensorBoard logs, saved predictions."""


def copy_records(src_root: Path, dst_root: Path, run_dirs: list[Path], src_base: Path) -> int:
    """Copy the record of each run folder ``src_base/rel`` (complete runs only) to ``dst_root/rel`` unless it exists
    there already; returns how many were copied."""
    import shutil

    n = 0
    for run_dir in run_dirs:
        rel = run_dir.relative_to(src_base)
        src, dst = src_root / rel, dst_root / rel
        if not (src / "benchmark_time.json").is_file() or (dst / "benchmark_time.json").is_file():
            continue
        if dst.exists():
            shutil.rmtree(dst)  # an interrupted run the record supersedes
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*RECORD_SKIP))
        n += 1
    return n


def run_benchmark(config: Path, output: Path | None = None, overrides: list[str] | None = None,
                  jobs: int | None = None, say: Callable[[str], None] = print, report_only: bool = False,
                  records: Path | None = None) -> dict[str, Any]:
    """Train every missing run of the grid (``jobs`` side by side), score it, write the tables.

    ``report_only``: train nothing; write the tables from the runs complete so far (others "pending").
    ``records``: a folder of run records (run folders without weights, e.g. committed from an earlier
    machine): complete runs there are copied into the grid first (a run no other run starts from is then
    not trained again), and the record of every complete run is written there at the end.
    """
    cfg = load_benchmark(config, overrides)
    if jobs:
        cfg.jobs = jobs
    command = command_line(config, overrides, output, jobs)
    out = Path(output or cfg.output or Path("runs") / "benchmarks" / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    todo = plan(cfg, out)
    run_dirs = sorted({j.run_dir for j in todo})
    if records is not None and Path(records).is_dir():
        n = copy_records(Path(records), out, run_dirs, out)
        if n:
            say(f"copied {n} run record(s) from {records}")
    # configuration errors of any run surface before the first one trains
    from semiseg.config import load_config

    from semiseg.methods.registry import validate_method_params

    for j in todo:
        run_cfg = load_config(j.preset, [o for o in j.overrides if not o.startswith("method.init_from=")])
        validate_method_params(run_cfg.method.name, run_cfg.method.params)
    pending, seen = [], set()
    starts = {j.depends for j in todo if j.depends is not None}
    for j in todo:  # a run trained once per seed appears in every cell of that seed
        # a run no other run starts from is done once scored: its record (run folder without weights,
        # e.g. copied back from another machine or session) is enough
        if j.run_dir not in seen and not is_complete(j.run_dir, j.equivariance, weights_needed=j.run_dir in starts,
                                                     postprocess=j.postprocess):
            pending.append(j)
        seen.add(j.run_dir)
    n_runs = len({j.run_dir for j in todo})
    say(f"benchmark {cfg.name}: {n_runs} runs, {n_runs - len(pending)} already complete; output {out}")
    if report_only:
        rows = collect_results(cfg, todo)
        write_results(cfg, rows, out, command, trained_now=False)
        if records is not None:
            copy_records(out, Path(records), run_dirs, out)
        done = sum(1 for r in rows if r.get("postprocess", "none") == cfg.postprocess[0])
        say(f"results so far ({done} of {len(todo)} table entries): {out / (cfg.results + '.md')}")
        return {"rows": rows, "output": out}
    failed: dict[Path, str] = {}
    running: dict[Future, Job] = {}
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        while pending or running:
            for j in list(pending):
                if len(running) >= cfg.jobs:
                    break
                if j.depends is not None and j.depends in failed:
                    failed[j.run_dir] = f"its init_from run {j.depends} failed"
                    pending.remove(j)
                    continue
                if j.depends is not None and not (j.depends / "checkpoint_final.pt").is_file():
                    continue
                pending.remove(j)
                say(f"[{time.time() - t0:7.0f} s] start  {j.run_dir.relative_to(out)}")
                running[pool.submit(execute_job, j)] = j
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                j = running.pop(f)
                try:
                    t = f.result()
                    say(f"[{time.time() - t0:7.0f} s] done   {j.run_dir.relative_to(out)} (train {t['train_s']:.0f} s)")
                except Exception as exc:  # a failed run does not stop the runs that do not need it
                    failed[j.run_dir] = f"{type(exc).__name__}: {exc}"
                    say(f"[{time.time() - t0:7.0f} s] FAILED {j.run_dir.relative_to(out)}: {exc}")
    for j in pending:
        failed.setdefault(j.run_dir, "not started")
    rows = collect_results(cfg, todo)
    write_results(cfg, rows, out, command)
    if records is not None:
        copy_records(out, Path(records), run_dirs, out)
    if failed:
        lines = "; ".join(f"{p.relative_to(out)}: {m}" for p, m in failed.items())
        raise SemisegError(f"{len(failed)} run(s) did not complete ({lines}); re-run the same command to resume")
    say(f"results: {out / (cfg.results + '.md')}")
    return {"rows": rows, "output": out}


def collect_results(cfg: BenchmarkConfig, jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per complete run and post-processing choice: per-class and mean test metrics, RI and bridging
    within its cell, train time, peak memory."""
    from semiseg.evaluation.report import comparison_table
    from semiseg.evaluation.run_eval import eval_dir_name
    from semiseg.evaluation.scoring import read_csv

    rows: list[dict[str, Any]] = []
    cells: dict[tuple[Any, int], list[Job]] = {}
    for j in jobs:
        cells.setdefault((j.labeled, j.seed), []).append(j)
    for pp in cfg.postprocess:
        folder = eval_dir_name("test", pp)
        for (lab, seed), cell in cells.items():
            results = {j.run: {"summary": read_csv(j.run_dir / folder / "summary.csv")} for j in cell
                       if is_complete(j.run_dir, j.equivariance, weights_needed=False, postprocess=(pp,))}
            if not results:
                continue
            summary = next(iter(results.values()))["summary"]
            classes = [c for c in dict.fromkeys(s["class"] for s in summary) if c != "mean"]
            metrics = list(dict.fromkeys(s["metric"] for s in summary))
            table = comparison_table(results, classes, metrics, lower=cfg.lower, upper=cfg.upper)
            for row in table:
                j = next(x for x in cell if x.run == row["run"])
                env_path = j.run_dir / "environment.json"
                env = json.loads(env_path.read_text()) if env_path.is_file() else {}
                timing_path = j.run_dir / "benchmark_time.json"
                timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
                row.update(labeled=lab, seed=seed, postprocess=pp, train_s=train_seconds(j.run_dir), method=_method_of(j.run_dir),
                           peak_rss_gib=float(timing.get("peak_rss_gib", float("nan"))),
                           commit=env.get("git") or "", device=trained_on(env),
                           _cases=case_mean_dice(j.run_dir / folder / "scores.csv", classes))
                rows.append(row)
    return rows


def trained_on(env: dict[str, Any]) -> str:
    """The device a run trained on, from its ``environment.json`` (GPU name, or CPU and its core count)."""
    if env.get("device", "cpu").startswith("cuda"):
        return env.get("gpu") or "cuda"
    return f"CPU ({env['cpu_count']} cores)" if env.get("cpu_count") else "CPU"


def case_mean_dice(scores_csv: Path, classes: list[str]) -> dict[str, float]:
    """Per test case, the mean Dice over ``classes`` (the per-case values behind the table's mean Dice)."""
    from semiseg.evaluation.scoring import read_csv

    per: dict[str, list[float]] = {}
    for r in read_csv(scores_csv):
        if r["class"] in classes:
            per.setdefault(str(r["case"]), []).append(float(r["dice"]))
    return {c: float(np.mean(v)) for c, v in per.items()}


def dice_interval(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """95% bootstrap interval of mean Dice over seeds x test cases (both resampled; see ``bootstrap_ci``)."""
    from semiseg.evaluation.statistics import bootstrap_ci

    cases = sorted(set().union(*(r["_cases"] for r in rows)))
    grid = [[r["_cases"].get(c, float("nan")) for c in cases] for r in rows]
    return bootstrap_ci(grid)


def train_seconds(run_dir: Path) -> float:
    """Training wall time of a complete run: the engine's own count (summed over resumes) from the final
    checkpoint, else (no checkpoint, or none recorded) the grid's ``benchmark_time.json``; NaN when neither knows."""
    from semiseg.engine.checkpoint import load_checkpoint

    final = run_dir / "checkpoint_final.pt"
    secs = load_checkpoint(final).get("train_seconds") if final.is_file() else None
    if secs:
        return float(secs)
    timing_path = run_dir / "benchmark_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    return float(timing["train_s"]) if timing.get("train_s", 0) > 0 else float("nan")


def _method_of(run_dir: Path) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return str(cfg.get("method", {}).get("name", ""))


def _fmt(values: list[float], digits: int) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


POSTPROCESS_TITLES = {"none": "", "largest_component": ", largest connected component kept"}
EXTRA_METRICS = (("jaccard", "Jaccard", 4), ("hd95", "HD95", 2), ("asd", "ASD", 2), ("hd95_vox", "HD95 (vox)", 2),
                 ("asd_vox", "ASD (vox)", 2))


def markdown_results(cfg: BenchmarkConfig, rows: list[dict[str, Any]]) -> str:
    """Per post-processing choice and labeled count: mean (± s.d. over seeds) of Dice per class and mean,
    Jaccard, HD95, ASD (mm and voxels when scored), RI, bridging, time and peak memory."""
    if not rows:
        return "(no complete runs yet)"
    classes = [k[len("dice_"):] for k in rows[0] if k.startswith("dice_") and k != "dice_mean"]
    extra = [(m, title, digits) for m, title, digits in EXTRA_METRICS if f"{m}_mean" in rows[0]]
    has_rss = any(not math.isnan(r.get("peak_rss_gib", float("nan"))) for r in rows)
    out = []
    for pp in cfg.postprocess:
        for lab in sorted(cfg.labeled):
            sub = [r for r in rows if r["labeled"] == lab and r.get("postprocess", "none") == pp]
            if not sub:
                continue
            out += [f"### {lab} labeled{POSTPROCESS_TITLES[pp]}", ""]
            has_eq = "equivariance_dice_mean" in sub[0]
            head = ["run", "method"] + [f"Dice {c}" for c in classes] + ["Dice mean", "95% CI"]
            head += [f"{title} mean" for _, title, _ in extra] + (["equivariance Dice"] if has_eq else [])
            head += ["RI (Dice)", "bridging", "train time / run"] + (["peak RSS"] if has_rss else [])
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            for name in cfg.runs:
                rs = [r for r in sub if r["run"] == name]
                if not rs:
                    out.append(f"| {name} | " + " | ".join(["(pending)"] + ["-"] * (len(head) - 2)) + " |")
                    continue
                cells = [name, rs[0]["method"]] + [_fmt([r[f"dice_{c}"] for r in rs], 4) for c in classes + ["mean"]]
                lo, hi = dice_interval(rs)
                cells.append(f"[{lo:.3f}, {hi:.3f}]")
                cells += [_fmt([r[f"{m}_mean"] for r in rs], digits) for m, _, digits in extra]
                cells += [_fmt([r.get("equivariance_dice_mean", float("nan")) for r in rs], 4)] if has_eq else []
                ri = [100 * r["ri_dice"] for r in rs]
                ri_text, minutes = _fmt(ri, 1), _fmt([r["train_s"] / 60 for r in rs], 1)
                cells += [ri_text if ri_text == "-" else f"{ri_text}%", _fmt([r["bridging"] for r in rs], 2),
                          minutes if minutes == "-" else f"{minutes} min"]
                if has_rss:
                    rss = _fmt([r.get("peak_rss_gib", float("nan")) for r in rs], 1)
                    cells.append(rss if rss == "-" else f"{rss} GiB")
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def write_results(cfg: BenchmarkConfig, rows: list[dict[str, Any]], out: Path, command: str,
                  trained_now: bool = True) -> None:
    total = len(cfg.labeled) * len(cfg.seeds) * len(cfg.runs)  # table entries per post-processing choice
    from semiseg import __version__
    from semiseg.engine.run_dir import git_hash
    from semiseg.evaluation.scoring import write_csv

    if rows:
        write_csv([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], out / f"{cfg.results}.csv")
        if len(cfg.labeled) > 1:
            write_plot(cfg, rows, out / f"{cfg.results}.png")
    cpu = platform.processor() or platform.machine()
    n_done = sum(1 for r in rows if r.get("postprocess", "none") == cfg.postprocess[0])
    devices = Counter(r.get("device") or "unknown" for r in rows if r.get("postprocess", "none") == cfg.postprocess[0])
    trained = ", ".join(f"{d} ({n} table entries)" for d, n in devices.items())
    md = [f"# Benchmark `{cfg.name}`", "", *( [cfg.description.strip(), ""] if cfg.description.strip() else []),
          f"Command: `{command}`", "",
          f"semiseg {__version__}, table written at commit {git_hash() or 'unknown'} (each run's own commit: results.csv), {platform.platform()}, {cpu}, "
          f"{_cpu_count()} CPU cores" + (f", {cfg.jobs} run(s) side by side" if trained_now else "") + f". Table entries complete: {n_done} of {total}"
          + (" (the grid resumes: re-run the command)." if n_done < total else ".")
          + (f" Trained on: {trained}." if rows else ""), "",
          "Test-set metrics (per volume, then averaged); model selection never sees the test cases (validation "
          "cases, or none: the final checkpoint). "
          "Mean ± s.d. over seeds; 95% CI: percentile bootstrap of mean Dice resampling seeds and test cases. "
          "RI: relative improvement of mean Dice over the lower bound; bridging: (method - lower) / (upper - lower). "
          "HD95/ASD in mm (the data's spacing); '(vox)' columns in voxels. Peak RSS: the training process's peak resident memory.", "",
          *([f"![Dice against labeled count]({cfg.results}.png)", ""] if rows and len(cfg.labeled) > 1 else []),
          markdown_results(cfg, rows)]
    (out / f"{cfg.results}.md").write_text("\n".join(md) + "\n")


def write_plot(cfg: BenchmarkConfig, rows: list[dict[str, Any]], path: Path) -> None:
    """Mean Dice against the labeled count, one line per run, its 95% bootstrap interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in cfg.runs:
        pts = []
        for lab in sorted(cfg.labeled):
            rs = [r for r in rows if r["run"] == name and r["labeled"] == lab and r.get("postprocess", "none") == cfg.postprocess[0]]
            if rs:
                pts.append((float(lab), float(np.mean([r["dice_mean"] for r in rs])), *dice_interval(rs)))
        if not pts:
            continue
        x, y, lo, hi = (np.array(v) for v in zip(*pts))
        (line,) = ax.plot(x, y, marker="o", label=name)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("labeled (split.labeled)")
    ax.set_ylabel("test mean Dice")
    ax.set_title(cfg.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
