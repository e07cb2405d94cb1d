"""The normalised signed distance map of SASSNet (Li et al., MICCAI 2020) and DTC (Luo et al., AAAI 2021).

For a binary mask ``M`` with foreground and background, as in both papers' code (``compute_sdf``)::

    sdf = (d_out - min d_out) / (max d_out - min d_out) - (d_in - min d_in) / (max d_in - min d_in)
    sdf = 0 on the inner boundary of M

with ``d_in`` the Euclidean distance of every voxel to the background (``distance_transform_edt(M)``),
``d_out`` its distance to the foreground (``distance_transform_edt(~M)``): negative inside, positive
outside, in [-1, 1]. The inner boundary is scikit-image's ``find_boundaries(M, mode="inner")``: foreground
voxels with a background neighbour along an axis (the image edge is not background). A mask without
foreground or without background gets an all-zero map, as in the papers' code.

DTC's level-set transform of a prediction ``p`` of the SDF is ``sigmoid(-k * p)`` (:func:`level_set_transform`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from semiseg.methods.base import SupervisedLossParams, supervised_loss
from semiseg.networks.base import SegmentationNetwork


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a background neighbour along an axis (``find_boundaries(mask, mode="inner")``)."""
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=1)


def normalized_sdf(mask: np.ndarray) -> np.ndarray:
    """The normalised signed distance map of one binary mask (2D or 3D), float32 in [-1, 1]."""
    pos = np.asarray(mask, dtype=bool)
    if not pos.any() or pos.all():
        return np.zeros(pos.shape, np.float32)
    d_in = ndimage.distance_transform_edt(pos)
    d_out = ndimage.distance_transform_edt(~pos)

    def scaled(d: np.ndarray) -> np.ndarray:
        span = d.max() - d.min()
        return (d - d.min()) / span if span > 0 else np.zeros_like(d)

    sdf = scaled(d_out) - scaled(d_in)
    sdf[inner_boundary(pos)] = 0.0
    return sdf.astype(np.float32)


def sdf_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, *S) class labels -> (N, K - 1, *S) normalised SDFs of every foreground class (on the labels' device)."""
    lab = labels.detach().cpu().numpy()
    out = np.stack([np.stack([normalized_sdf(lab[n] == c) for c in range(1, num_classes)]) for n in range(lab.shape[0])])
    return torch.from_numpy(out).to(labels.device)


def level_set_transform(sdf: torch.Tensor, k: float = 1500.0) -> torch.Tensor:
    """DTC Eq. 2: the smooth Heaviside ``sigmoid(-k * sdf)`` that turns an SDF into a segmentation (k = 1500)."""
    return torch.sigmoid(-k * sdf)


class DualTaskParams(SupervisedLossParams):
    """The supervised part SASSNet and DTC share: Dice on the segmentation (their code adds no CE) and
    ``beta`` times the MSE of the signed-distance head against :func:`normalized_sdf` of the labels."""

    ce_weight: float = 0.0
    dice_weight: float = 1.0
    beta: float = 0.3


def dual_task_network(factory: Any) -> SegmentationNetwork:
    """The run's network with the signed-distance head (``sdf_head=True``: a registered option of U-Net and V-Net)."""
    net = factory(sdf_head=True)
    if "sdf" not in getattr(net, "aux_heads", {}):
        from semiseg.errors import ConfigError

        raise ConfigError(f"{type(net).__name__} has no signed-distance head; use unet or vnet (sdf_head: true)")
    return net


def dual_task_supervised(heads: dict[str, torch.Tensor], labels: torch.Tensor, p: DualTaskParams,
                         num_classes: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Dice(seg, y) + beta * MSE(sdf_head, SDF(y))`` on the labeled part (the first ``len(labels)`` images)."""
    n = labels.shape[0]
    seg, terms = supervised_loss(heads["seg"][:n], labels, p)
    sdf_mse = torch.mean((heads["sdf"][:n].float() - sdf_targets(labels, num_classes)) ** 2)
    return seg + p.beta * sdf_mse, {**terms, "sdf": sdf_mse.detach()}
