"""Reports: a Markdown table comparing runs, a box plot of per-case Dice, PNG overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semiseg.evaluation.statistics import bridging_coefficient, relative_improvement


def _mean(summary: list[dict[str, Any]], cls: str, metric: str) -> float:
    s = next((x for x in summary if x["class"] == cls and x["metric"] == metric), None)
    return float("nan") if s is None else float(s["mean"])


def comparison_table(results: dict[str, dict[str, Any]], classes: Sequence[str], metrics: Sequence[str],
                     lower: str | None = None, upper: str | None = None) -> list[dict[str, Any]]:
    """One row per run: each metric per class and mean; relative improvement and bridging coefficient of mean Dice."""
    rows = []
    lo = _mean(results[lower]["summary"], "mean", "dice") if lower in results else None
    hi = _mean(results[upper]["summary"], "mean", "dice") if upper in results else None
    for name, res in results.items():
        row: dict[str, Any] = {"run": name}
        for m in metrics:
            for c in list(classes) + ["mean"]:
                row[f"{m}_{c}"] = _mean(res["summary"], c, m)
        d = row["dice_mean"] if "dice" in metrics else float("nan")
        row["ri_dice"] = relative_improvement(d, lo) if lo else float("nan")
        row["bridging"] = bridging_coefficient(d, lo, hi) if lo is not None and hi is not None and hi != lo else float("nan")
        rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]], classes: Sequence[str], metrics: Sequence[str]) -> str:
    cols = [f"{m} {c}" for m in metrics for c in list(classes) + ["mean"]]
    keys = [f"{m}_{c}" for m in metrics for c in list(classes) + ["mean"]]
    head = "| run | " + " | ".join(cols) + " | RI (Dice) | bridging |"
    sep = "|" + "---|" * (len(cols) + 3)
    lines = [head, sep]
    for r in rows:
        vals = []
        for k in keys:
            v = r[k]
            vals.append(f"{v:.4f}" if k.startswith(("dice", "jaccard")) else f"{v:.2f}")
        ri = "-" if np.isnan(r["ri_dice"]) else f"{100 * r['ri_dice']:+.1f}%"
        br = "-" if np.isnan(r["bridging"]) else f"{r['bridging']:.2f}"
        lines.append(f"| {r['run']} | " + " | ".join(vals) + f" | {ri} | {br} |")
    return "\n".join(lines)


def text_table(rows: list[dict[str, Any]], classes: Sequence[str], metrics: Sequence[str]) -> str:
    header = ["run"] + [f"{m}:{c}" for m in metrics for c in list(classes) + ["mean"]]
    body = []
    for r in rows:
        line = [r["run"]]
        for m in metrics:
            for c in list(classes) + ["mean"]:
                v = r[f"{m}_{c}"]
                line.append(f"{v:.3f}" if m in ("dice", "jaccard") else f"{v:.2f}")
        body.append(line)
    widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
    return "\n".join("  ".join(x[i].ljust(widths[i]) for i in range(len(header))) for x in [header] + body)


def box_plot(results: dict[str, dict[str, Any]], out: Path, metric: str = "dice") -> None:
    """Per-case mean (over classes) of ``metric``, one box per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, names = [], []
    for name, res in results.items():
        per_case: dict[str, list[float]] = {}
        for r in res["rows"]:
            if r["class"] in res["classes"]:
                per_case.setdefault(r["case"], []).append(float(r[metric]))
        data.append([float(np.mean(v)) for v in per_case.values()])
        names.append(name)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.5))
    ax.boxplot(data)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_ylabel(f"per-case mean {metric}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def overlay_png(image: np.ndarray, reference: np.ndarray, predictions: dict[str, np.ndarray], out: Path,
                n_slices: int = 3, axis: int = 0) -> None:
    """A grid: rows = slices through the reference's foreground, columns = reference then each prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fg = np.nonzero((reference > 0).sum(axis=tuple(i for i in range(reference.ndim) if i != axis)))[0]
    if fg.size == 0:
        fg = np.arange(reference.shape[axis])
    picks = np.linspace(fg.min(), fg.max(), n_slices + 2)[1:-1].round().astype(int) if fg.size > 2 else fg[:n_slices]
    cols = {"reference": reference, **predictions}
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(2.6 * len(cols), 2.6 * len(picks)), squeeze=False)
    vmax = max(int(reference.max()), 1)
    for i, z in enumerate(picks):
        im = np.take(image, z, axis=axis)
        for j, (name, lab) in enumerate(cols.items()):
            ax = axes[i, j]
            ax.imshow(im, cmap="gray")
            seg = np.take(lab, z, axis=axis).astype(float)
            ax.imshow(np.ma.masked_where(seg == 0, seg), cmap="jet", alpha=0.45, vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
