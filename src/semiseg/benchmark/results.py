"""Collecting a grid's results: one row per complete run and post-processing choice, with its cell's RI and bridging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from semiseg.benchmark.planning import Job, from_an_earlier_start, is_complete, is_current, matches_plan
from semiseg.benchmark.schema import BenchmarkConfig


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
                       if is_current(j, weights_needed=False, postprocess=(pp,))}
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
                           commit=env.get("git") or "", device=trained_on(env), eval_s=float(timing.get("eval_s", float("nan"))),
                           earlier_start=from_an_earlier_start(j),
                           _run_dir=j.run_dir,
                           _cases=case_mean_dice(j.run_dir / folder / "scores.csv", classes))
                rows.append(row)
    return rows


def stale_entries(jobs: list[Job], out: Path, records: Path | None = None) -> set[tuple[str, Any]]:
    """(run, labeled count) of runs that are complete, in the grid's folder ``out`` or in ``records``, but of
    another configuration or an earlier method revision than the grid plans
    (:func:`~semiseg.benchmark.planning.matches_plan`): not tabulated, trained again."""
    found = set()
    for j in jobs:
        places = [j.run_dir] + ([Path(records) / j.run_dir.relative_to(out)] if records is not None else [])
        if any(is_complete(d, j.equivariance, False, j.postprocess) and not matches_plan(d, j) for d in places):
            found.add((j.run, j.labeled))
    return found


def trained_on(env: dict[str, Any]) -> str:
    """The device a run trained on, from its ``environment.json`` (GPU name, or CPU and its core count)."""
    if env.get("device", "cpu").startswith("cuda"):
        return env.get("gpu") or "cuda"
    return f"CPU ({env['cpu_count']} cores)" if env.get("cpu_count") else "CPU"


def case_mean_dice(scores_csv: Path, classes: list[str]) -> dict[str, float]:
    """Per test case, the mean Dice over ``classes`` (the per-case values behind the table's mean Dice)."""
    from semiseg.evaluation.scoring import read_csv

    return case_means(read_csv(scores_csv), classes)


def case_means(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, float]:
    """Per case, the mean Dice over ``classes`` of score rows (``case``, ``class``, ``dice``)."""
    per: dict[str, list[float]] = {}
    for r in rows:
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
    """Training wall time of a complete run: the grid's ``benchmark_time.json`` (which holds the engine's own
    count, summed over resumes), else the final checkpoint's count (a run the grid did not score), without
    loading weights when the small file knows; NaN when neither knows."""
    from semiseg.engine.checkpoint import load_checkpoint

    timing_path = run_dir / "benchmark_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    if timing.get("train_s", 0) > 0:
        return float(timing["train_s"])
    final = run_dir / "checkpoint_final.pt"
    secs = load_checkpoint(final).get("train_seconds") if final.is_file() else None
    return float(secs) if secs else float("nan")


def _method_of(run_dir: Path) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return str(cfg.get("method", {}).get("name", ""))
