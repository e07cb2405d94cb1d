"""Overlap and surface-distance metrics with the definitions of the medpy package.

Most published semi-supervised segmentation numbers come from
``medpy.metric.binary`` (dc, jc, hd95, asd, assd); these functions reproduce
them exactly (the test suite compares against medpy) without depending on it:

- surface voxels of a mask: the mask minus its binary erosion with the
  connectivity-1 structuring element (6-neighbourhood in 3D, 4 in 2D);
- distances: Euclidean distance transform of the other mask's surface, in mm
  (``spacing`` per axis);
- HD95: 95th percentile of the union of both directed surface-distance sets;
- ASD: mean of the directed distances from the prediction's surface to the
  reference's surface (medpy ``asd(result, reference)``, what the literature
  reports as "ASD");
- ASSD: mean of the pooled distances of both directions (medpy >= 0.5; not
  the mean of the two directed ASDs, which weights the surfaces differently).

Empty-mask policy (medpy raises an error for these cases; we need a number):

- reference and prediction both empty: Dice = Jaccard = 1, distances = 0;
- exactly one of them empty: Dice = Jaccard = 0, distances = the diagonal of
  the image extent in mm (the largest distance possible in that image), and
  the result is flagged ``empty`` so reports can count such cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

DISTANCE_METRICS = ("hd95", "asd", "assd")
VOXEL_METRICS = tuple(f"{m}_vox" for m in DISTANCE_METRICS)
"""The distance metrics in voxels (unit spacing), the unit of the LA literature on the UA-MT layout."""
DEFAULT_METRICS = ("dice", "jaccard") + DISTANCE_METRICS
ALL_METRICS = DEFAULT_METRICS + VOXEL_METRICS


def _spacing(mask: np.ndarray, spacing: Sequence[float] | None) -> np.ndarray:
    if spacing is None:
        return np.ones(mask.ndim)
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (mask.ndim,):
        raise ValueError(f"spacing {tuple(spacing)} does not match a {mask.ndim}D mask")
    return sp


def surface_distances(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``result`` to the surface of ``reference`` (medpy's)."""
    result = np.asarray(result, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if not result.any() or not reference.any():
        raise ValueError("surface distances need a non-empty result and reference")
    footprint = ndimage.generate_binary_structure(result.ndim, 1)
    result_border = result ^ ndimage.binary_erosion(result, structure=footprint, iterations=1)
    reference_border = reference ^ ndimage.binary_erosion(reference, structure=footprint, iterations=1)
    dt = ndimage.distance_transform_edt(~reference_border, sampling=_spacing(result, spacing))
    return dt[result_border]


def dice(result: np.ndarray, reference: np.ndarray) -> float:
    r, g = np.asarray(result, bool), np.asarray(reference, bool)
    total = r.sum() + g.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(r, g).sum() / total)


def jaccard(result: np.ndarray, reference: np.ndarray) -> float:
    r, g = np.asarray(result, bool), np.asarray(reference, bool)
    union = np.logical_or(r, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(r, g).sum() / union)


def hd95(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    d = np.hstack([surface_distances(result, reference, spacing), surface_distances(reference, result, spacing)])
    return float(np.percentile(d, 95))


def asd(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    return float(surface_distances(result, reference, spacing).mean())


def assd(result: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    d = np.hstack([surface_distances(result, reference, spacing), surface_distances(reference, result, spacing)])
    return float(d.mean())


@dataclass
class BinaryScores:
    values: dict[str, float]
    empty: str
    """``none``, ``both`` (prediction and reference empty), ``prediction`` or ``reference``."""


def binary_scores(
    result: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> BinaryScores:
    """The requested metrics for one binary mask pair, with the empty-mask policy of this module."""
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; available: {', '.join(ALL_METRICS)}")
    r, g = np.asarray(result, bool), np.asarray(reference, bool)
    if r.shape != g.shape:
        raise ValueError(f"prediction shape {r.shape} differs from reference shape {g.shape}")
    has_r, has_g = bool(r.any()), bool(g.any())
    empty = "none" if has_r and has_g else "both" if not (has_r or has_g) else ("prediction" if not has_r else "reference")
    out: dict[str, float] = {}
    for m in metrics:
        base, sp = (m[: -len("_vox")], None) if m.endswith("_vox") else (m, spacing)
        if m == "dice":
            out[m] = dice(r, g)
        elif m == "jaccard":
            out[m] = jaccard(r, g)
        elif empty == "none":
            out[m] = {"hd95": hd95, "asd": asd, "assd": assd}[base](r, g, sp)
        else:
            out[m] = 0.0 if empty == "both" else float(np.linalg.norm(np.asarray(r.shape) * _spacing(r, sp)))
    return BinaryScores(out, empty)


def multiclass_scores(
    prediction: np.ndarray,
    reference: np.ndarray,
    classes: Sequence[int] | dict[str, Sequence[int]],
    spacing: Sequence[float] | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, BinaryScores]:
    """Scores per class (a list of label values) or per region (name -> union of label values)."""
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from reference shape {reference.shape}")
    groups = {str(c): [c] for c in classes} if not isinstance(classes, dict) else {k: list(v) for k, v in classes.items()}
    return {
        name: binary_scores(np.isin(prediction, vals), np.isin(reference, vals), spacing, metrics)
        for name, vals in groups.items()
    }
