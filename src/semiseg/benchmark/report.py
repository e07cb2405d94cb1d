"""Rendering a grid's results: results.csv, results.md (tables per post-processing choice and labeled count) and the plot."""

from __future__ import annotations

import math
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from semiseg.benchmark.results import dice_interval
from semiseg.benchmark.schema import BenchmarkConfig


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


STALE_NOTE = ("(stale): complete runs of an earlier configuration or method revision than this file plans (a preset, "
              "a default or a method's code changed since): not tabulated; the grid trains them again.")


def markdown_results(cfg: BenchmarkConfig, rows: list[dict[str, Any]],
                     stale: set[tuple[str, Any]] | frozenset = frozenset()) -> str:
    """Per post-processing choice and labeled count: mean (± s.d. over seeds) of Dice per class and mean,
    Jaccard, HD95, ASD (mm and voxels when scored), RI, bridging, time and peak memory. A row with no current
    run reads "(stale)" where ``stale`` (run, labeled) has an outdated complete one, else "(pending)"."""
    if not rows:
        return "(no complete runs yet)"
    classes = [k[len("dice_"):] for k in rows[0] if k.startswith("dice_") and k != "dice_mean"]
    extra = [(m, title, digits) for m, title, digits in EXTRA_METRICS if f"{m}_mean" in rows[0]]
    has_rss = any(not math.isnan(r.get("peak_rss_gib", float("nan"))) for r in rows)
    out = []
    any_stale = False
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
            marked: list[tuple[str, list[int], str | None]] = []
            for name in cfg.runs:
                if lab not in cfg.counts(name):
                    continue
                rs = [r for r in sub if r["run"] == name]
                if not rs:
                    state = "(stale)" if (name, lab) in stale else "(pending)"
                    any_stale = any_stale or state == "(stale)"
                    out.append(f"| {name} | " + " | ".join([state] + ["-"] * (len(head) - 2)) + " |")
                    continue
                earlier = sorted(r["seed"] for r in rs if r.get("earlier_start"))
                if earlier:
                    marked.append((name, earlier, cfg.runs[name].init_from))
                cells = [name + (" †" if earlier else ""), rs[0]["method"]]
                cells += [_fmt([r[f"dice_{c}"] for r in rs], 4) for c in classes + ["mean"]]
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
            for name, seeds, start in marked:
                out.append(f"\n† {name} (seed {', '.join(map(str, seeds))}) started from another training of "
                           f"`{start}` than the one in this table (`{start}` was trained more than once, on machines "
                           "whose kernels do not round alike: runs repeat bit for bit only on one kind of CPU); its "
                           "RI and bridging compare it with the one shown. Selected again (`--runs`), it trains from "
                           "the one shown.")
            out.append("")
    if any_stale:
        out.append(STALE_NOTE)
    return "\n".join(out)


PROFILE_GROUPS = (("data", ("data",)), ("forward passes", ("forward ",)), ("losses, mixing", ("training step",)),
                  ("backward + step", ("backward",)), ("EMA", ("after step",)), ("weight check", ("non-finite",)),
                  ("validation", ("validation",)), ("checkpoints", ("checkpoints",)), ("loop", ("loop",)))


def profile_table(cfg: BenchmarkConfig, rows: list[dict[str, Any]]) -> str:
    """Where each run's time went (its ``profile.csv``, first labeled count and seed it has): the share of the
    training loop per phase group, milliseconds per step, and the test evaluation's seconds."""
    from semiseg.evaluation.scoring import read_csv

    head = ["run", "ms / step"] + [g for g, _ in PROFILE_GROUPS] + ["test evaluation"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    seen = set()
    for r in sorted(rows, key=lambda r: (list(cfg.runs).index(r["run"]) if r["run"] in cfg.runs else 99, r["labeled"], r["seed"])):
        path = Path(r["_run_dir"]) / "profile.csv" if r.get("_run_dir") else None
        if r["run"] in seen or path is None or not path.is_file():
            continue
        seen.add(r["run"])
        phases = read_csv(path)
        total_ms = sum(float(p["ms_per_step"]) for p in phases)
        cells = [f"{r['run']} ({r['labeled']} labeled)", f"{total_ms:.0f}"]
        for _, prefixes in PROFILE_GROUPS:
            share = sum(float(p["share"]) for p in phases if str(p["phase"]).startswith(prefixes))
            cells.append(f"{100 * share:.0f}%" if share else "-")
        ev = r.get("eval_s", float("nan"))
        cells.append("-" if math.isnan(ev) else f"{ev:.0f} s")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) if seen else ""


def write_results(cfg: BenchmarkConfig, rows: list[dict[str, Any]], out: Path, command: str,
                  trained_now: bool = True, stale: set[tuple[str, Any]] | frozenset = frozenset()) -> None:
    total = cfg.entries()  # table entries per post-processing choice
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
          markdown_results(cfg, rows, stale)]
    prof = profile_table(cfg, rows)
    if prof:
        md += ["", "### Where the time goes", "",
               "Share of each run's training loop per phase (its `profile.csv`, written by the engine; forward passes "
               "of a method's networks through their `forward`, other work of the training step under 'losses, "
               "mixing'), milliseconds per training step (validation and checkpoints spread over the steps) and the "
               "test evaluation's wall time (sliding windows and metrics).", "", prof]
    (out / f"{cfg.results}.md").write_text("\n".join(md) + "\n")


def write_plot(cfg: BenchmarkConfig, rows: list[dict[str, Any]], path: Path) -> None:
    """Mean Dice against the labeled count, one line per run, its 95% bootstrap interval as a band."""
    series: dict[str, list[tuple[float, float, float, float]]] = {}
    for name in cfg.runs:
        for lab in sorted(cfg.labeled):
            rs = [r for r in rows if r["run"] == name and r["labeled"] == lab and r.get("postprocess", "none") == cfg.postprocess[0]]
            if rs:
                series.setdefault(name, []).append((float(lab), float(np.mean([r["dice_mean"] for r in rs])), *dice_interval(rs)))
    curve_plot(series, path, "labeled (split.labeled)", cfg.name)


def curve_plot(series: dict[str, list[tuple[float, float, float, float]]], path: Path, xlabel: str, title: str,
               band_alpha: float = 0.2) -> None:
    """Test mean Dice curves: per name, points (x, mean, interval low, interval high), the interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in series.items():
        x, y, lo, hi = (np.array(v) for v in zip(*pts))
        (line,) = ax.plot(x, y, marker="o", label=name)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=band_alpha)
    ax.set_xticks(sorted({float(p[0]) for pts in series.values() for p in pts}))  # the measured counts only
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test mean Dice")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
