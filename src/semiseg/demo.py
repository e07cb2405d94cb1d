"""``semiseg demo``: the main job on the embedded dataset.

Generates (or reuses) ``synthbrain`` and follows the protocol of the ROAM paper
(Sec. III-A.2) at demo scale: the supervised lower bound is trained on 2 labeled
cases; every other row continues from the lower bound's best checkpoint for 200 more
iterations: ``lower_bound_continued`` (the same 200 iterations on the labeled cases
only: the control for the extra training), ROAM, BCP (bidirectional copy-paste, the
best of BCP, UniMatch and mean teacher on the demo's validation cases) and the upper
bound (every training case labeled). All are evaluated on the same held-out test
cases; the demo prints a table, says which semi-supervised rows beat the control,
and writes a report (CSV, Markdown, box plot, overlays) into the demo folder.
Completed runs are reused, interrupted ones resumed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from semiseg.config import load_config
from semiseg.engine.trainer import run_or_resume
from semiseg.evaluation.report import box_plot, comparison_table, markdown_table, overlay_png, text_table
from semiseg.evaluation.run_eval import evaluate_run

# name: (preset, overrides, run it starts from)
DEMO_RUNS: dict[str, tuple[str, list[str], str | None]] = {
    "lower_bound": ("synthbrain2d_supervised", ["split.labeled=2"], None),
    "lower_bound_continued": ("synthbrain2d_supervised", ["split.labeled=2", "train.iterations=200"], "lower_bound"),
    "roam": ("synthbrain2d_roam", ["split.labeled=2", "train.iterations=200"], "lower_bound"),
    "bcp": ("synthbrain2d_bcp", ["split.labeled=2", "train.iterations=200"], "lower_bound"),
    "upper_bound": ("synthbrain2d_supervised", ["split.all_labeled=true", "train.iterations=200"], "lower_bound"),
}
CONTROL = "lower_bound_continued"
SEMI_SUPERVISED = ("roam", "bcp")


def control_verdicts(results: dict[str, Any], control: str = CONTROL, rows: tuple[str, ...] = SEMI_SUPERVISED) -> list[str]:
    """One plain sentence per semi-supervised row: does its test mean Dice beat the control's (same start, same
    extra iterations, no unlabeled data), by how much, and on how many test cases."""
    from semiseg.benchmark.results import case_means

    def per_case(name: str) -> dict[str, float]:
        res = results[name]
        return case_means(res["rows"], res["model"].info.class_names[1:])

    ctl = per_case(control)
    out = []
    for name in rows:
        if name not in results:
            continue
        mine = per_case(name)
        cases = sorted(set(ctl) & set(mine))
        d = float(np.mean([mine[c] for c in cases]) - np.mean([ctl[c] for c in cases]))
        wins = sum(mine[c] > ctl[c] for c in cases)
        verdict = "beats" if d > 0 else "does NOT beat"
        out.append(f"{name} {verdict} the control ({control}): mean Dice {d:+.4f}, better on {wins} of {len(cases)} test cases")
    return out


def run_demo(out: Path, overrides: list[str] | None = None, say: Any = print) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict[str, Any] = {}
    described = []
    for name, (preset, extra, start) in DEMO_RUNS.items():
        init = [f"method.init_from={out / start}"] if start else []
        cfg = load_config(preset, extra + list(overrides or []) + [f"name={name}"] + init)
        since = f", from {start}" if start else ""
        say(f"== {name}: training ({cfg.train.iterations} iterations, {cfg.method.name}{since}) ...")
        described.append(f"- {name}: {cfg.method.name}, {'every training case' if cfg.split.all_labeled else f'{cfg.split.labeled:g}'}"
                         f" labeled, {cfg.train.iterations} iterations{since}")
        run_or_resume(cfg, out / name)
        say(f"== {name}: evaluating on the held-out test cases ...")
        results[name] = evaluate_run(out / name, "test")
    tests = {name: tuple(r["ids"]) for name, r in results.items()}
    assert len(set(tests.values())) == 1, f"runs were evaluated on different test cases: {tests}"
    first = next(iter(results.values()))
    classes, metrics = first["classes"], first["metrics"]
    shown = [m for m in ("dice", "hd95", "asd") if m in metrics]
    rows = comparison_table(results, classes, metrics, lower="lower_bound", upper="upper_bound")
    from semiseg.evaluation.scoring import write_csv

    write_csv(rows, out / "results.csv")
    verdicts = control_verdicts(results)
    md = ["# semiseg demo: synthbrain (2D U-Net)", "",
          f"Test cases: {', '.join(first['ids'])}. HD95/ASD in mm. Model selection on validation cases only.", "",
          *described, "",
          markdown_table(rows, classes, shown), "",
          "Against the control (the lower bound trained as long again on its labeled cases only):", "",
          *[f"- {v}" for v in verdicts], "", "![per-case Dice](boxplot.png)", "", "![overlays](overlays.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    box_plot(results, out / "boxplot.png")
    cid = first["ids"][0]
    layout = first["layout"]
    ref = {r.case_id: r for r in layout.refs()}[cid]
    raw = layout.load(ref)
    overlay_png(raw.image[0], raw.label.astype(np.int16), {n: r["predictions"][cid] for n, r in results.items()},
                out / "overlays.png")
    say("")
    say(text_table(rows, classes, shown))
    say("")
    for v in verdicts:
        say(v)
    say(f"\nreport: {out / 'report.md'}  ({time.time() - t0:.0f} s)")
    logging.shutdown()
    return {"rows": rows, "results": results}
