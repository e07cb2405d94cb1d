"""Supervised segmentation losses: soft Dice (hard or soft targets) and cross-entropy.

The Dice loss is the one of the semi-supervised literature (UA-MT, SSL4MIS, the
hybrid-cropping paper's Eq. 1): per class
``1 - (2 sum(p g) + eps) / (sum(p^2) + sum(g^2) + eps)`` over the whole batch,
averaged over classes (background included by default, as there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *spatial) integer labels -> (N, C, *spatial) float one-hot."""
    if labels.dtype.is_floating_point:
        raise TypeError("one_hot expects integer class indices")
    return F.one_hot(labels.long(), num_classes).movedim(-1, 1).float()


def as_distribution(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Index labels (N, *S) or a distribution (N, C, *S) -> a distribution (N, C, *S)."""
    return target.float() if target.dtype.is_floating_point else one_hot(target, num_classes)


def dice_loss(
    probs: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = True,
    squared: bool = True,
    eps: float = 1e-5,
    mask: torch.Tensor | None = None,
    per_sample: bool = False,
) -> torch.Tensor:
    """Soft Dice loss of probabilities ``probs`` (N, C, *S) against index labels or a distribution.

    Args:
        probs: class probabilities (already softmaxed).
        target: (N, *S) class indices or (N, C, *S) soft targets.
        include_background: average over all classes (literature default) or skip class 0.
        squared: denominators sum p^2 and g^2 (V-Net, literature default) or sum p and g.
        eps: smoothing term added to numerator and denominator.
        mask: optional (N, *S) validity mask; masked-out voxels do not count.
        per_sample: one Dice per image and class, averaged over both (BCP's LA ``mask_DiceLoss``), instead of
            one per class over the whole batch.
    """
    target = as_distribution(target, probs.shape[1])
    if mask is not None:
        m = mask.unsqueeze(1).to(probs.dtype)
        probs, target = probs * m, target * m
    dims = ([] if per_sample else [0]) + list(range(2, probs.ndim))
    inter = (probs * target).sum(dims)
    if squared:
        denom = (probs * probs).sum(dims) + (target * target).sum(dims)
    else:
        denom = probs.sum(dims) + target.sum(dims)
    per_class = 1.0 - (2.0 * inter + eps) / (denom + eps)  # (C,), or (N, C) per sample
    if not include_background:
        per_class = per_class[..., 1:]
    return per_class.mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy with index labels or soft targets (N, C, *S); optional validity mask."""
    target = target.float() if target.dtype.is_floating_point else target.long()
    if mask is None:
        return F.cross_entropy(logits, target)
    per_voxel = F.cross_entropy(logits, target, reduction="none")
    m = mask.to(per_voxel.dtype)
    return (per_voxel * m).sum() / m.sum().clamp_min(1.0)


def ce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 0.5, dice_weight: float = 0.5,
    include_background: bool = True, squared: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``ce_weight * CE + dice_weight * Dice`` and its two terms (for logging); the Dice over every class or,
    ``include_background=False``, over the foreground classes (see :func:`dice_loss`)."""
    ce = cross_entropy(logits, target)
    dc = dice_loss(torch.softmax(logits, dim=1), target, include_background=include_background, squared=squared)
    return ce_weight * ce + dice_weight * dc, {"ce": ce.detach(), "dice": dc.detach()}
