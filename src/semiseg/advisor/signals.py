"""Per-case signals of where a trained model is likely wrong, for ``semiseg advise`` (issue 15).

Every signal is computed on the case's preprocessed grid (what the model sees) from softmax
probabilities ``(K, Z, Y, X)``:

- :func:`mean_entropy` -- predictive entropy normalised by log K, averaged over voxels (the classic
  uncertainty query of active learning, averaged over the image);
- :func:`disagreement` -- 1 - mean pairwise Dice of the label maps of two or more networks of one
  run (teacher and student, co-students), per foreground class, so that a small structure's
  disagreement is not drowned by background agreement;
- :func:`tta_variance` -- variance of the foreground probabilities across test-time transforms
  (flips and an in-plane 90-degree rotation, each undone on the prediction), averaged over voxels;
- :func:`case_embedding` -- the encoder's bottleneck features, averaged over slices (2D models) or
  tiles (3D), L2-normalised: what the ``diverse`` selection measures distances with.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from semiseg.config.schema import EvalConfig
from semiseg.evaluation.inference import memory_format, predict_probabilities
from semiseg.networks.base import SegmentationNetwork

Transform = tuple[str, Callable[[np.ndarray], np.ndarray], Callable[[torch.Tensor], torch.Tensor]]
"""A test-time transform: name, forward on a (C, Z, Y, X) image, inverse on (K, Z, Y, X) probabilities."""


def voxel_entropy(probs: torch.Tensor) -> torch.Tensor:
    """The predictive entropy -sum_k p_k log p_k / log K of each voxel of (K, ...) probabilities, in [0, 1]."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(0) / math.log(probs.shape[0])


def mean_entropy(probs: torch.Tensor) -> float:
    """Mean over voxels of :func:`voxel_entropy`."""
    return float(voxel_entropy(probs).mean())


def foreground_fraction(probs: torch.Tensor) -> float:
    """Share of voxels whose most probable class is not background."""
    return float((probs.argmax(0) > 0).float().mean())


def disagreement(prob_maps: Sequence[torch.Tensor]) -> dict[str, float]:
    """How far two or more networks' label maps differ: ``disagreement`` = 1 - the mean over network pairs and
    foreground classes of their Dice (a class neither predicts counts as agreement), and ``voxel_disagreement``
    = the mean share of voxels whose labels differ."""
    if len(prob_maps) < 2:
        raise ValueError("disagreement needs the predictions of at least two networks")
    labels = [p.argmax(0) for p in prob_maps]
    k = prob_maps[0].shape[0]
    dices, voxels = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            a, b = labels[i], labels[j]
            voxels.append(float((a != b).float().mean()))
            for c in range(1, k):
                ac, bc = a == c, b == c
                total = int(ac.sum() + bc.sum())
                dices.append(1.0 if total == 0 else 2.0 * int((ac & bc).sum()) / total)
    return {"disagreement": 1.0 - float(np.mean(dices)), "voxel_disagreement": float(np.mean(voxels))}


def tta_transforms(spatial_dims: int, slice_axis: int = 0) -> list[Transform]:
    """Identity, a flip of each axis the model sees (2D models: the two in-plane axes; 3D: all three) and a
    90-degree rotation in the plane of the last two of them. Each is exact and undone on the prediction."""
    axes = [a for a in (0, 1, 2) if spatial_dims == 3 or a != slice_axis]  # spatial axes of (Z, Y, X)
    out: list[Transform] = [("identity", lambda x: x, lambda p: p)]
    for a in axes:
        out.append((f"flip{'zyx'[a]}", lambda x, a=a: np.flip(x, a + 1).copy(), lambda p, a=a: p.flip(a + 1)))
    u, v = axes[-2] + 1, axes[-1] + 1
    out.append(("rot90", lambda x: np.rot90(x, 1, (u, v)).copy(), lambda p: torch.rot90(p, -1, (u, v))))
    return out


def tta_variance(prob_maps: Sequence[torch.Tensor]) -> float:
    """Mean over voxels and foreground classes of the variance (over transforms) of the probabilities."""
    stacked = torch.stack(list(prob_maps))[:, 1:]  # (T, K-1, ...)
    return float(stacked.var(0, unbiased=False).mean())


def predict_under(network: nn.Module, image: np.ndarray, transforms: Sequence[Transform], predict: Callable[[nn.Module, np.ndarray], torch.Tensor]) -> list[torch.Tensor]:
    """The probabilities of ``network`` on each transformed image, mapped back to the image's grid."""
    return [inverse(predict(network, forward(image))) for _, forward, inverse in transforms]


@torch.no_grad()
def case_embedding(network: SegmentationNetwork, image: np.ndarray, spatial_dims: int, patch_size: Sequence[int],
                   slice_axis: int = 0, device: torch.device | str = "cpu", channels_last: bool = False,
                   batch_size: int = 16) -> np.ndarray:
    """The network's bottleneck features of a (C, Z, Y, X) image, global-average-pooled per slice (2D models;
    slices resized to ``patch_size``) or per tile of ``patch_size`` (3D; the volume zero-padded to whole tiles),
    averaged, and L2-normalised."""
    was_training = network.training
    network.eval()
    k = network.encoder_layers[-1]
    x = torch.from_numpy(np.ascontiguousarray(image)).float()
    if spatial_dims == 2:
        batch = x.movedim(slice_axis + 1, 0)  # (N, C, H, W)
        batch = F.interpolate(batch, size=tuple(patch_size), mode="bilinear", align_corners=False)
    else:
        pads = [(-s) % p for s, p in zip(x.shape[1:], patch_size)]
        x = F.pad(x, [q for pad in reversed(pads) for q in (0, pad)])
        tiles = x
        for d, p in enumerate(patch_size):
            tiles = tiles.unfold(d + 1, p, p)  # (C, nz, ny, nx, pz, py, px)
        batch = tiles.permute(1, 2, 3, 0, 4, 5, 6).reshape(-1, x.shape[0], *patch_size)
    feats = []
    try:
        for i in range(0, batch.shape[0], batch_size):
            chunk = batch[i : i + batch_size].to(device)
            if channels_last:
                chunk = chunk.contiguous(memory_format=memory_format(spatial_dims))
            h = network.forward_to(chunk, k).h.float()
            feats.append(h.mean(dim=tuple(range(2, h.ndim))).cpu())
    finally:
        network.train(was_training)
    e = torch.cat(feats).mean(0)
    return (e / e.norm().clamp_min(1e-12)).numpy()


def predictor(spatial_dims: int, patch_size: Sequence[int], cfg: EvalConfig, slice_axis: int, device: torch.device | str,
              channels_last: bool, slice_mode: str) -> Callable[[nn.Module, np.ndarray], torch.Tensor]:
    """``predict(network, image)``: softmax probabilities on the image's grid, as evaluation computes them."""

    def predict(network: nn.Module, image: np.ndarray) -> torch.Tensor:
        return predict_probabilities(network, image, spatial_dims, patch_size, cfg, slice_axis, device, channels_last, slice_mode)

    return predict
