"""``semiseg evaluate PRED GT``: score a folder of predictions against a folder of references."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from semiseg.data.io import (
    IMAGE2D_ENDINGS, ITK_ENDINGS, NIFTI_ENDINGS, file_ending, read_mask2d, read_volume, strip_ending, to_class_indices,
)
from semiseg.errors import DatasetError
from semiseg.evaluation.scoring import score_case, summarize, write_csv


def _read_labels(path: Path, threshold: int | None, num_classes: int | None) -> tuple[np.ndarray, tuple[float, ...]]:
    """Class indices of a label file (the mapping training uses: a 0/255 mask is binary) and its spacing."""
    if file_ending(path) in IMAGE2D_ENDINGS:
        arr = read_mask2d(path)[None]
        sp: tuple[float, ...] = (1.0, 1.0, 1.0)
    else:
        arr, sp, _ = read_volume(path)
    return to_class_indices(np.rint(arr).astype(np.int64), path, threshold=threshold, num_classes=num_classes), sp


def evaluate_folders(
    pred_dir: Path, gt_dir: Path, out_dir: Path, metrics: Sequence[str], class_names: list[str] | None = None,
    regions: dict[str, list[int]] | None = None, threshold: int | None = None,
) -> dict[str, Any]:
    """Pair files by name (without ending), score every pair; a prediction missing for a reference is an error."""
    ends = NIFTI_ENDINGS + ITK_ENDINGS + IMAGE2D_ENDINGS
    preds = {strip_ending(p): p for p in Path(pred_dir).iterdir() if file_ending(p) in ends}
    gts = {strip_ending(p): p for p in Path(gt_dir).iterdir() if file_ending(p) in ends}
    missing = sorted(set(gts) - set(preds))
    if not gts:
        raise DatasetError(f"{gt_dir}: no reference label files")
    if missing:
        raise DatasetError(f"{pred_dir}: no prediction for {len(missing)} reference(s)", [f"{gts[m]}" for m in missing[:20]])
    rows = []
    loaded = {}
    for cid in sorted(gts):
        k = len(class_names) if class_names is not None else None
        gt, sp = _read_labels(gts[cid], threshold, k)
        pr, _ = _read_labels(preds[cid], threshold, k)
        if pr.shape != gt.shape:
            raise DatasetError(f"prediction {preds[cid]} has shape {pr.shape} but reference {gts[cid]} has shape {gt.shape}")
        loaded[cid] = (pr, gt, sp)
    if class_names is None:
        top = max(int(max(v[0].max(), v[1].max())) for v in loaded.values())
        class_names = ["background"] + [str(i) for i in range(1, max(top, 1) + 1)]
    for cid, (pr, gt, sp) in loaded.items():
        rows += score_case(cid, pr, gt, class_names, sp, metrics, regions)
    classes = list(class_names[1:]) + list(regions or {})
    summary = summarize(rows, metrics, classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "scores.csv")
    write_csv(summary, out_dir / "summary.csv")
    return {"rows": rows, "summary": summary, "classes": classes}
