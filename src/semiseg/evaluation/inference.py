"""Whole-volume inference: 2D models slice by slice (batched), 3D models by sliding window
with Gaussian blending (MONAI's ``sliding_window_inference``, the nnU-Net scheme)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semiseg.config.schema import EvalConfig


def memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


@torch.no_grad()
def predict_probabilities(
    network: nn.Module,
    image: np.ndarray,
    spatial_dims: int,
    patch_size: Sequence[int],
    cfg: EvalConfig,
    slice_axis: int = 0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    slice_mode: str = "resize",
) -> torch.Tensor:
    """Softmax probabilities (K, Z, Y, X) on the CPU for a (C, Z, Y, X) image.

    2D, ``slice_mode`` ``resize``: each slice along ``slice_axis`` is resized to ``patch_size``,
    predicted, and its probabilities resized back (bilinear) before stacking; ``patch``: each
    full-resolution slice is predicted with 2D sliding windows of ``patch_size``.
    3D: sliding windows of ``patch_size`` with ``cfg.sw_overlap`` and ``cfg.sw_mode`` weights.
    """
    device = torch.device(device)
    was_training = network.training
    try:
        network.eval()
    except NotImplementedError:  # a torch.export program: exported in evaluation mode, it cannot switch
        was_training = False
    x = torch.from_numpy(np.ascontiguousarray(image)).float()
    try:
        if spatial_dims == 2:
            slices = x.movedim(slice_axis + 1, 0)  # (N, C, H, W)
            out = []
            for i in range(0, slices.shape[0], cfg.slice_batch_size):
                chunk = slices[i : i + cfg.slice_batch_size]
                out.append(sliding_window(network, chunk, patch_size, cfg, device, channels_last) if slice_mode == "patch"
                           else _resized_slices(network, chunk, patch_size, device, channels_last))
            return torch.cat(out).movedim(0, slice_axis + 1).contiguous()  # (K, Z, Y, X)
        return sliding_window(network, x[None], patch_size, cfg, device, channels_last)[0]
    finally:
        if was_training:
            network.train(True)


def _resized_slices(network: nn.Module, batch: torch.Tensor, patch_size: Sequence[int], device: torch.device,
                    channels_last: bool) -> torch.Tensor:
    """Softmax of (N, C, H, W) slices resized to ``patch_size`` and back (bilinear), on the CPU."""
    hw = tuple(batch.shape[-2:])
    batch = batch.to(device)
    if hw != tuple(patch_size):
        batch = F.interpolate(batch, size=tuple(patch_size), mode="bilinear", align_corners=False)
    if channels_last:
        batch = batch.contiguous(memory_format=memory_format(2))
    probs = torch.softmax(network(batch).float(), dim=1)
    if tuple(probs.shape[-2:]) != hw:
        probs = F.interpolate(probs, size=hw, mode="bilinear", align_corners=False)
    return probs.cpu()


def sliding_window(network: nn.Module, batch: torch.Tensor, roi: Sequence[int], cfg: EvalConfig,
                   device: torch.device | str, channels_last: bool) -> torch.Tensor:
    """Softmax of (N, C, *S) by MONAI's sliding-window inferer (``cfg.sw_overlap``, ``cfg.sw_mode`` weights), on the CPU."""
    from monai.inferers import sliding_window_inference

    dims = batch.ndim - 2

    def predictor(t: torch.Tensor) -> torch.Tensor:
        if channels_last:
            t = t.contiguous(memory_format=memory_format(dims))
        return torch.softmax(network(t).float(), dim=1)

    probs = sliding_window_inference(
        batch.to(device), roi_size=tuple(roi), sw_batch_size=cfg.sw_batch_size, predictor=predictor,
        overlap=cfg.sw_overlap, mode=cfg.sw_mode, padding_mode="constant", cval=0.0,
    )
    probs = probs.as_tensor() if hasattr(probs, "as_tensor") else probs
    return probs.float().cpu()
