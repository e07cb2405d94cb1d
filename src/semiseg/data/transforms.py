"""Training augmentation as MONAI dictionary transforms (2D and 3D), seeded per sample.

Keys: ``image`` (C, *S) and ``label`` (1, *S); an unlabeled sample has no
``label`` key (``allow_missing_keys``). :func:`apply_augmentation` reseeds the
whole chain from a per-sample seed, so the same run seed gives the same
augmented batch whatever the number of workers and after a resume.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from semiseg.config.schema import AugmentationConfig


def build_augmentation(cfg: AugmentationConfig, spatial_dims: int) -> Any | None:
    """A MONAI ``Compose`` of dictionary transforms, or None when every probability is 0."""
    from monai import transforms as T

    keys, both = ["image", "label"], dict(allow_missing_keys=True)
    ops: list[Any] = []
    if cfg.flip > 0:
        ops += [T.RandFlipd(keys, prob=cfg.flip, spatial_axis=a, **both) for a in range(spatial_dims)]
    if cfg.rot90 > 0:
        axes = tuple(cfg.rot90_axes) if cfg.rot90_axes is not None else (0, 1) if spatial_dims == 2 else (1, 2)
        ops.append(T.RandRotate90d(keys, prob=cfg.rot90, max_k=3, spatial_axes=axes, **both))
    if cfg.affine > 0:
        rad = math.radians(cfg.rotate_deg)
        rot = rad if spatial_dims == 2 else (0.0, 0.0, rad)
        lo, hi = cfg.scale
        ops.append(
            T.RandAffined(
                keys, prob=cfg.affine, rotate_range=rot, scale_range=[(lo - 1, hi - 1)] * spatial_dims,
                mode=("bilinear", "nearest"), padding_mode="zeros", **both,
            )
        )
    if cfg.elastic > 0:
        if spatial_dims == 2:
            ops.append(
                T.Rand2DElasticd(keys, spacing=(cfg.elastic_sigma[0] * 3,) * 2, magnitude_range=(1, 2), prob=cfg.elastic,
                                 mode=("bilinear", "nearest"), padding_mode="zeros", **both)
            )
        else:
            ops.append(
                T.Rand3DElasticd(keys, sigma_range=cfg.elastic_sigma, magnitude_range=cfg.elastic_magnitude, prob=cfg.elastic,
                                 mode=("bilinear", "nearest"), padding_mode="zeros", **both)
            )
    if cfg.intensity > 0:
        p = cfg.intensity
        ops += [
            T.RandScaleIntensityd("image", factors=0.1, prob=p),
            T.RandShiftIntensityd("image", offsets=0.1, prob=p),
            T.RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=p),
            T.RandGaussianNoised("image", std=0.05, prob=p),
        ]
    return T.Compose(ops) if ops else None


def apply_augmentation(chain: Any | None, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Run ``chain`` on ``sample`` with every random draw seeded by ``seed``; returns plain tensors."""
    if chain is None:
        return sample
    chain.set_random_state(seed=int(seed) % (2**32))
    out = chain(dict(sample))
    return {k: (v.as_tensor() if hasattr(v, "as_tensor") else torch.as_tensor(v)).contiguous() for k, v in out.items()}


def sample_seed(run_seed: int, stream: int, position: int) -> int:
    """A 32-bit seed for the sample at global ``position`` of a stream (labeled 0, unlabeled 1)."""
    return int(np.random.SeedSequence([run_seed, stream, position]).generate_state(1)[0])
