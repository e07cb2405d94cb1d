"""Consistency losses between a prediction and a (soft) target, with optional validity masks."""

from __future__ import annotations

import torch


def softmax_mse(logits: torch.Tensor, target_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between ``softmax(logits)`` and ``target_probs`` (N, C, *S).

    The mean is over every element (classes included), as in MixMatch, ROAM Eq. 9 and mean
    teacher. ``mask`` (N, *S) restricts it to valid voxels (the mean is then over valid voxels x C).
    """
    sq = (torch.softmax(logits, dim=1) - target_probs.detach()) ** 2
    if mask is None:
        return sq.mean()
    m = mask.unsqueeze(1).to(sq.dtype)
    return (sq * m).sum() / (m.sum() * sq.shape[1]).clamp_min(1.0)


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Per-voxel entropy ``-sum_c p_c log p_c`` (natural log) along ``dim``."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim)
