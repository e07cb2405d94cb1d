"""Preprocessing: crop to non-zero, resampling, N4 bias correction, histogram equalisation, normalisation.

:func:`preprocess_case` records what it did in ``case.meta`` so that
:func:`restore_probabilities` can put a prediction back into the input's geometry.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from semiseg.config.schema import PreprocessingConfig
from semiseg.data.case import Case


def normalize_intensity(image: np.ndarray, cfg: PreprocessingConfig) -> np.ndarray:
    """Per-channel normalisation of a (C, ...) image: z-score, min-max, percentile clip + scale, CT window."""
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        x = image[c].astype(np.float32)
        region = x[x != 0] if cfg.nonzero_only and (x != 0).any() else x
        if cfg.normalize == "zscore":
            y = (x - region.mean()) / max(float(region.std()), 1e-8)
            if cfg.nonzero_only:
                y[x == 0] = 0.0
        elif cfg.normalize == "minmax":
            lo, hi = float(region.min()), float(region.max())
            y = (x - lo) / max(hi - lo, 1e-8)
        elif cfg.normalize == "percentile":
            lo, hi = np.percentile(region, cfg.percentiles)
            y = (np.clip(x, lo, hi) - lo) / max(float(hi - lo), 1e-8)
        elif cfg.normalize == "ct":
            lo, hi = cfg.ct_window
            y = (np.clip(x, lo, hi) - lo) / (hi - lo)
        else:
            y = x
        out[c] = y
    return out


def equalize_histogram(x: np.ndarray, bins: int = 256, mask: np.ndarray | None = None) -> np.ndarray:
    """Histogram equalisation of one channel to [0, 1] (scikit-image's ``equalize_hist`` definition):
    each intensity maps to the cumulative histogram (``bins`` bins over the masked values) at it."""
    values = x[mask] if mask is not None and mask.any() else x.ravel()
    hist, edges = np.histogram(values, bins=bins, range=(float(values.min()), float(values.max())))
    centers = (edges[:-1] + edges[1:]) / 2
    cdf = np.cumsum(hist).astype(np.float64)
    cdf /= cdf[-1]
    out = np.interp(x.ravel(), centers, cdf).reshape(x.shape).astype(np.float32)
    if mask is not None:
        out[~mask] = 0.0
    return out


def n4_bias_correction(x: np.ndarray, spacing: Sequence[float], mask: np.ndarray | None = None) -> np.ndarray:
    """N4ITK bias-field correction (Tustison et al. 2010) of one (Z, Y, X) channel with SimpleITK.

    The mask (default: Otsu foreground) limits where the field is estimated; the corrected image is
    the input divided by the full-resolution field. Needs the ``itk`` extra (SimpleITK).
    """
    try:
        import SimpleITK as sitk
    except ImportError:
        from semiseg.errors import ConfigError

        raise ConfigError("preprocessing.bias_correction: n4 needs SimpleITK: pip install 'semiseg[itk]'") from None
    img = sitk.GetImageFromArray(x.astype(np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    m = sitk.OtsuThreshold(img, 0, 1, 200) if mask is None else sitk.GetImageFromArray(mask.astype(np.uint8))
    if mask is not None:
        m.CopyInformation(img)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.Execute(img, m)
    field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(img))
    return (x / np.exp(field)).astype(np.float32)


def nonzero_box(image: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of voxels non-zero in any channel (the full extent when all are zero)."""
    any_nz = (image != 0).any(axis=0)
    if not any_nz.any():
        return tuple(slice(0, s) for s in any_nz.shape)
    idx = np.nonzero(any_nz)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def resample_array(array: np.ndarray, shape: Sequence[int], is_label: bool) -> np.ndarray:
    """(C, Z, Y, X) or label (Z, Y, X) -> new spatial shape (trilinear / nearest)."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if is_label:
        t = t[None, None].float()
        return F.interpolate(t, size=tuple(shape), mode="nearest")[0, 0].numpy().astype(array.dtype)
    t = t[None].float()
    return F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)[0].numpy()


def preprocess_case(case: Case, cfg: PreprocessingConfig) -> Case:
    """Crop, resample and normalise a case (labels as int16); geometry kept in ``meta`` for restoring."""
    image, label = case.image, case.label
    meta = dict(case.meta)
    meta["original_shape"] = tuple(image.shape[1:])
    meta["original_spacing"] = tuple(case.spacing)
    box = nonzero_box(image) if cfg.crop_nonzero else tuple(slice(0, s) for s in image.shape[1:])
    meta["crop_box"] = tuple((s.start, s.stop) for s in box)
    image = image[(slice(None),) + box]
    label = label[box] if label is not None else None
    fov = meta.get("fov")
    if fov is not None:
        meta["fov"] = fov[box]
    spacing = tuple(case.spacing)
    if cfg.target_spacing is not None:
        target = tuple(float(s) for s in cfg.target_spacing)
        if len(target) != 3:
            raise ValueError("preprocessing.target_spacing needs 3 values (z, y, x)")
        target = tuple(t if t > 0 else s for t, s in zip(target, spacing))  # <= 0 keeps an axis as is
        shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(image.shape[1:], spacing, target))
        if shape != image.shape[1:]:
            meta["resampled_shape"] = shape
            image = resample_array(image, shape, is_label=False)
            label = resample_array(label, shape, is_label=True) if label is not None else None
            if meta.get("fov") is not None:
                meta["fov"] = resample_array(meta["fov"].astype(np.uint8), shape, True).astype(bool)
        spacing = target
    if cfg.bias_correction == "n4":
        image = np.stack([n4_bias_correction(ch, spacing, ch != 0 if cfg.nonzero_only else None) for ch in image])
    if cfg.histogram_equalization:
        image = np.stack([equalize_histogram(ch, cfg.histogram_bins, ch != 0 if cfg.nonzero_only else None)
                          for ch in image.astype(np.float32)])
    image = normalize_intensity(image, cfg)
    label = label.astype(np.int16) if label is not None else None
    return Case(case.case_id, np.ascontiguousarray(image), label, spacing, case.subject, meta)  # type: ignore[arg-type]


def restore_probabilities(probs: torch.Tensor, case: Case) -> torch.Tensor:
    """(K, Z, Y, X) probabilities on the preprocessed grid -> the original grid (background-filled outside the crop)."""
    meta = case.meta
    box = [slice(a, b) for a, b in meta.get("crop_box", [(0, s) for s in probs.shape[1:]])]
    cropped_shape = tuple(s.stop - s.start for s in box)
    if tuple(probs.shape[1:]) != cropped_shape:
        probs = F.interpolate(probs[None].float(), size=cropped_shape, mode="trilinear", align_corners=False)[0]
    full_shape = tuple(meta.get("original_shape", probs.shape[1:]))
    if cropped_shape == full_shape:
        return probs
    out = torch.zeros((probs.shape[0],) + full_shape, dtype=probs.dtype, device=probs.device)
    out[0] = 1.0
    out[(slice(None),) + tuple(box)] = probs
    return out
