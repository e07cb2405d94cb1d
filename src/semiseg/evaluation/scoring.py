"""Per-case, per-class scoring and summaries (mean, median, std per class and overall)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semiseg.evaluation.metrics import multiclass_scores


def squeeze_singleton(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray, list[float] | None]:
    """Drop axes of size 1 (a 2D image stored as a one-slice volume) with their spacing entries."""
    keep = [i for i, s in enumerate(ref.shape) if s > 1] or [ref.ndim - 1]
    sp = [float(spacing[i]) for i in keep] if spacing is not None else None
    shape = tuple(ref.shape[i] for i in keep)
    return pred.reshape(shape), ref.reshape(shape), sp


def score_case(
    case_id: str,
    prediction: np.ndarray,
    reference: np.ndarray,
    class_names: Sequence[str],
    spacing: Sequence[float] | None,
    metrics: Sequence[str],
    regions: dict[str, list[int]] | None = None,
    fov: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per foreground class (and per region): case, class, each metric, empty flag.

    ``fov``: voxels outside the field of view are set to background in both masks first (DRIVE).
    """
    if fov is not None:
        prediction = np.where(fov, prediction, 0)
        reference = np.where(fov, reference, 0)
    pred, ref, sp = squeeze_singleton(np.asarray(prediction), np.asarray(reference), spacing)
    groups: dict[str, list[int]] = {class_names[c]: [c] for c in range(1, len(class_names))}
    groups.update(regions or {})
    rows = []
    for name, scores in multiclass_scores(pred, ref, groups, sp, metrics).items():
        rows.append({"case": case_id, "class": name, **scores.values, "empty": scores.empty})
    return rows


def mean_dice(rows: list[dict[str, Any]], classes: Sequence[str] | None = None) -> float:
    vals = [r["dice"] for r in rows if classes is None or r["class"] in classes]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(rows: list[dict[str, Any]], metrics: Sequence[str], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of (class, metric, mean, median, std, n) per class and ``mean`` (per-case mean over classes)."""
    out = []
    per_case: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["class"] in classes:
            for m in metrics:
                per_case.setdefault(r["case"], {}).setdefault(m, []).append(float(r[m]))
    groups = {c: [r for r in rows if r["class"] == c] for c in classes}
    for m in metrics:
        for c, rs in groups.items():
            vals = np.array([float(r[m]) for r in rs])
            out.append(_stats(c, m, vals))
        vals = np.array([np.mean(v[m]) for v in per_case.values() if m in v])
        out.append(_stats("mean", m, vals))
    return out


def _stats(cls: str, metric: str, vals: np.ndarray) -> dict[str, Any]:
    if vals.size == 0:
        return {"class": cls, "metric": metric, "mean": math.nan, "median": math.nan, "std": math.nan, "n": 0}
    return {
        "class": cls, "metric": metric, "mean": float(vals.mean()), "median": float(np.median(vals)),
        "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0, "n": int(vals.size),
    }


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def read_csv(path: Path) -> list[dict[str, Any]]:
    with Path(path).open() as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            try:
                r[k] = float(v)
            except (TypeError, ValueError):
                pass
    return rows


def format_summary_table(summary: list[dict[str, Any]], metrics: Sequence[str], classes: Sequence[str]) -> str:
    """A plain-text table: one row per class (+ mean), one column per metric as mean +- std."""
    header = ["class"] + list(metrics)
    lines = []
    for c in list(classes) + ["mean"]:
        row = [c]
        for m in metrics:
            s = next((x for x in summary if x["class"] == c and x["metric"] == m), None)
            row.append("-" if s is None or s["n"] == 0 else f"{s['mean']:.4f} ± {s['std']:.4f}" if m in ("dice", "jaccard", "equivariance_dice") else f"{s['mean']:.2f} ± {s['std']:.2f}")
        lines.append(row)
    widths = [max(len(str(r[i])) for r in [header] + lines) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*r) for r in lines])
