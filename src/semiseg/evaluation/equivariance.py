"""Equivariance Dice (EquiReg, Schölin 2020, Sec. 7 and Fig. 10).

The Dice between ``T(segment(x))`` and ``segment(T(x))`` for a strong random transform ``T``
(Table 5, :func:`semiseg.data.replay.strong_policy`): how equivariant a model is, with no
reference mask involved. Here ``T`` is drawn per slice for 2D models (batch = the slices of the
volume, at the preprocessed resolution) and per volume for 3D models, from a generator seeded per
case, so a model is always scored under the same transforms. ``T`` is replayed on the softmax of
``x`` before the arg-max; pixels that ``T`` creates are left out (they carry no information about
the model). Dice follows EquiReg Eq. 13: 1 when both masks are empty.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from semiseg.config.schema import EvalConfig
from semiseg.data.replay import AugmentationPolicy, draw_transform
from semiseg.evaluation.inference import predict_probabilities


def masked_dice(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> float:
    """Dice of boolean masks ``a`` and ``b`` inside ``valid``; 1 when both are empty (EquiReg Eq. 13)."""
    a, b = a & valid, b & valid
    denom = int(a.sum()) + int(b.sum())
    return 1.0 if denom == 0 else 2.0 * int((a & b).sum()) / denom


@torch.no_grad()
def equivariance_dice(
    network: torch.nn.Module,
    image: np.ndarray,
    groups: dict[str, Sequence[int]],
    policy: AugmentationPolicy,
    spatial_dims: int,
    patch_size: Sequence[int],
    eval_cfg: EvalConfig,
    slice_axis: int = 0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    seed: int = 0,
    slice_mode: str = "resize",
    probs: torch.Tensor | None = None,
) -> dict[str, float]:
    """Equivariance Dice per label group (name -> label values) of one preprocessed (C, Z, Y, X) image.

    ``probs``: the network's prediction on ``image`` when the caller already has it (not recomputed).
    """
    x = torch.from_numpy(np.ascontiguousarray(image)).float()
    g = torch.Generator().manual_seed(int(seed))
    if spatial_dims == 2:
        slices = x.movedim(slice_axis + 1, 0)  # (N, C, H, W)
        t = draw_transform(policy, slices.shape[0], tuple(slices.shape[2:]), g)
        x_hat = t.apply_image(slices).movedim(0, slice_axis + 1)

        def warp(p: torch.Tensor) -> torch.Tensor:
            return t.apply_probabilities(p.movedim(slice_axis + 1, 0)).movedim(0, slice_axis + 1)

        valid = t.valid[:, 0].movedim(0, slice_axis)
    else:
        t = draw_transform(policy, 1, tuple(x.shape[1:]), g)
        x_hat = t.apply_image(x[None])[0]

        def warp(p: torch.Tensor) -> torch.Tensor:
            return t.apply_probabilities(p[None])[0]

        valid = t.valid[0, 0]

    def predict(img: torch.Tensor) -> torch.Tensor:
        return predict_probabilities(network, img.numpy(), spatial_dims, patch_size, eval_cfg, slice_axis, device, channels_last,
                                     slice_mode)

    seg_then_warp = warp(predict(x) if probs is None else probs).argmax(0)
    warp_then_seg = predict(x_hat).argmax(0)
    out = {}
    for name, labels in groups.items():
        lab = torch.as_tensor(list(labels))
        out[name] = masked_dice(torch.isin(seg_then_warp, lab), torch.isin(warp_then_seg, lab), valid)
    return out
