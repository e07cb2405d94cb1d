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


def kl_divergence(target_probs: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over voxels of ``KL(target || softmax(logits))`` = ``sum_c t_c (log t_c - log q_c)`` (EquiReg Eq. 8-9).

    ``target_probs`` (N, C, *S) is treated as a constant (0 log 0 = 0); ``mask`` (N, *S) restricts
    the mean to valid voxels, and masked voxels pass no gradient.
    """
    t = target_probs.detach().float()
    log_q = torch.log_softmax(logits.float(), dim=1)
    per_voxel = (t * (torch.log(t.clamp_min(1e-12)) - log_q)).sum(1)
    if mask is None:
        return per_voxel.mean()
    m = mask.to(per_voxel.dtype)
    return (per_voxel * m).sum() / m.sum().clamp_min(1.0)


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Per-voxel entropy ``-sum_c p_c log p_c`` (natural log) along ``dim``."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim)
