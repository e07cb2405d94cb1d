"""Voxel-level features from multi-resolution encoder maps, computed only where they are needed.

The voxel-wise adversarial method (Lee et al.; paper 004, Fig. 3) fuses encoder features
``E(x^1..4)``: a convolution per scale to a common width (64), upsampling of each to one size,
addition and a convolution. With 1x1 convolutions and linear upsampling every step before the
non-linearity is linear, so the fused feature *at a voxel* equals per-scale linear maps of the
encoder features interpolated at that voxel. :class:`VoxelFeatureLayer` computes exactly that for
the sampled voxels only (a full-resolution 64-channel map per scale is never built);
:meth:`VoxelFeatureLayer.dense` is the literal upsample-then-convolve form, kept as the reference
the tests compare against.

Voxel sampling is class-balanced (:func:`sample_voxels`): up to ``per_class`` voxels of each class
among the valid ones, as the graph-embedding method also samples.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sample_voxels(classes: torch.Tensor, num_classes: int, per_class: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Flat indices into ``classes`` (N, *S) of up to ``per_class`` random valid voxels of each class."""
    c = classes.reshape(-1)
    ok = torch.ones_like(c, dtype=torch.bool) if valid is None else valid.reshape(-1)
    picks = []
    for k in range(num_classes):
        idx = torch.nonzero((c == k) & ok).squeeze(1)
        if idx.numel():
            picks.append(idx[torch.randperm(idx.numel(), device=idx.device)[:per_class]])
    return torch.cat(picks) if picks else c.new_zeros(0, dtype=torch.long)


def point_sample(feature: torch.Tensor, flat_index: torch.Tensor, full_size: Sequence[int]) -> torch.Tensor:
    """(M, C) values of ``feature`` (N, C, *s) upsampled to ``full_size`` (linear, ``align_corners=False``,
    as ``F.interpolate``) at the voxels ``flat_index`` of an (N, *full_size) grid, without upsampling the map."""
    dims = len(full_size)
    n = feature.shape[0]
    coords = torch.stack(torch.unravel_index(flat_index, (n, *full_size)), dim=1)  # (M, 1 + dims)
    out = feature.new_empty(flat_index.numel(), feature.shape[1])
    for b in range(n):
        rows = torch.nonzero(coords[:, 0] == b).squeeze(1)
        if not rows.numel():
            continue
        pos = coords[rows, 1:].to(feature.dtype)
        size = torch.tensor(list(full_size), dtype=feature.dtype, device=feature.device)
        grid = (2.0 * pos + 1.0) / size - 1.0  # voxel centres in [-1, 1] (align_corners=False)
        grid = grid.flip(-1).view(1, *([1] * (dims - 1)), -1, dims)  # grid_sample wants (x, y[, z])
        vals = F.grid_sample(feature[b : b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[rows] = vals.reshape(feature.shape[1], -1).t()
    return out


class VoxelFeatureLayer(nn.Module):
    """004 Fig. 3: per-scale 1x1 convolution to ``width`` channels, upsampling to the input size,
    addition, ReLU and a 1x1 convolution, evaluated at sampled voxels (:meth:`forward`)."""

    def __init__(self, in_channels: Sequence[int], width: int = 64) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(c, width) for c in in_channels)
        self.fuse = nn.Linear(width, width)

    def forward(self, features: Sequence[torch.Tensor], flat_index: torch.Tensor, full_size: Sequence[int]) -> torch.Tensor:
        """(M, width) fused features at the voxels ``flat_index`` of the (N, *full_size) input grid."""
        total = sum(proj(point_sample(f, flat_index, full_size)) for proj, f in zip(self.project, features, strict=True))
        return self.fuse(F.relu(total))  # type: ignore[arg-type]

    def dense(self, features: Sequence[torch.Tensor], full_size: Sequence[int]) -> torch.Tensor:
        """The same fusion on the whole grid: (N, width, *full_size) (the reference form; memory-hungry)."""
        mode = "bilinear" if len(full_size) == 2 else "trilinear"
        total = 0
        for proj, f in zip(self.project, features, strict=True):
            w = proj.weight.view(*proj.weight.shape, *([1] * len(full_size)))
            h = F.conv2d(f, w, proj.bias) if len(full_size) == 2 else F.conv3d(f, w, proj.bias)
            total = total + F.interpolate(h, size=tuple(full_size), mode=mode, align_corners=False)
        h = F.relu(total)  # type: ignore[arg-type]
        w = self.fuse.weight.view(*self.fuse.weight.shape, *([1] * len(full_size)))
        return F.conv2d(h, w, self.fuse.bias) if len(full_size) == 2 else F.conv3d(h, w, self.fuse.bias)


def mlp(width: int, hidden: int, out: int, norm: bool = True) -> nn.Sequential:
    """Linear - (BatchNorm) - ReLU - Linear: BYOL's projection and prediction heads."""
    return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden) if norm else nn.Identity(), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))
