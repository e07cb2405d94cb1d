"""Copy-paste of a cuboid between two images through one zero-centred mask (one copy of the idea).

Used by the hybrid-cropping co-learning framework (003, INDMIX Eq. 11-12 and OUTDMIX Eq. 13-14)
and by bidirectional copy-paste (BCP, Bai et al. 2023). The mask ``M`` is 1 everywhere except a
cuboid of zeros ("zero-centred": the zeros form the pasted region); for two images ``a`` and ``b``

``mix(a, b, M) = a * M + b * (1 - M)``:

``a`` everywhere outside the cuboid, ``b`` inside it. Images (N, C, *S), label maps (N, *S) and
probability maps (N, K, *S) are mixed through the same (N, *S) mask.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch


def cuboid_mask(
    batch: int,
    size: Sequence[int],
    ratio: float | Sequence[float],
    position: Literal["random", "center"] = "random",
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(batch, *size) float masks of ones with one cuboid of zeros each.

    Args:
        batch: number of masks (one per image pair).
        size: spatial size of the images.
        ratio: the cuboid's edge as a fraction of each image edge (003's "cropping parameter" 0.5;
            BCP uses 2/3); one value for every axis or one per axis.
        position: ``random`` (uniform over every position that keeps the cuboid inside the image,
            drawn per mask) or ``center``.
        generator: random source (default: torch's global generator, seeded and checkpointed by
            the engine, so a resumed run draws the same masks).
    """
    ratios = [float(ratio)] * len(size) if isinstance(ratio, (int, float)) else [float(r) for r in ratio]
    if len(ratios) != len(size) or not all(0.0 < r <= 1.0 for r in ratios):
        raise ValueError(f"cuboid ratio must be in (0, 1] per axis ({len(size)} axes); got {ratio}")
    edges = [max(1, int(round(s * r))) for s, r in zip(size, ratios)]
    mask = torch.ones(batch, *size, device=device)
    for i in range(batch):
        mask[(i, *box_region(size, edges, position, generator))] = 0.0
    return mask


def box_region(size: Sequence[int], edges: Sequence[float], position: Literal["random", "center"] = "random",
               generator: torch.Generator | None = None) -> tuple[slice, ...]:
    """Slices of a box with the given edge lengths (rounded, clipped to [1, size]) inside an image of ``size``:
    centred, or at a uniformly random position that keeps it inside (the copy-paste cuboid, UniMatch's CutMix box)."""
    region = []
    for s, e in zip(size, edges):
        e = max(1, min(int(s), int(round(e))))
        start = (s - e) // 2 if position == "center" else int(torch.randint(0, s - e + 1, (1,), generator=generator))
        region.append(slice(start, start + e))
    return tuple(region)


def mix(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``a * M + b * (1 - M)``: ``a`` outside the mask's cuboid, ``b`` inside.

    ``mask`` is (N, *S); ``a`` and ``b`` are (N, *S) label/weight maps or (N, C, *S) images or
    probability maps. Integer label maps stay integer.
    """
    m = mask if a.ndim == mask.ndim else mask.unsqueeze(1)
    if not a.dtype.is_floating_point:
        return torch.where(m.bool(), a, b)
    return a * m + b * (1.0 - m)
