"""Ramp-up / ramp-down weights used by consistency-based methods (one copy for every method).

All return a factor in [0, 1] for ``step`` out of ``length`` steps.
"""

from __future__ import annotations

import math


def sigmoid_rampup(step: float, length: float) -> float:
    """exp(-5 (1 - t)^2), t = step / length clipped to [0, 1] (Laine & Aila 2017; mean teacher, UA-MT)."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0.0), length) / length
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def linear_rampup(step: float, length: float) -> float:
    if length <= 0:
        return 1.0
    return float(min(max(step, 0.0), length) / length)


def cosine_rampup(step: float, length: float) -> float:
    """0.5 (1 - cos(pi t)): smooth start and end."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0.0), length) / length
    return float(0.5 * (1.0 - math.cos(math.pi * t)))


def cosine_rampdown(step: float, length: float) -> float:
    """0.5 (cos(pi t) + 1), t = step / length clipped (Laine & Aila)."""
    if length <= 0:
        return 1.0
    t = min(max(step, 0.0), length) / length
    return float(0.5 * (math.cos(math.pi * t) + 1.0))


def gaussian_rampup(step: float, length: float) -> float:
    """Gaussian warm-up exp(-5 (1 - t)^2) written as in the voxel-wise adversarial paper (same curve as sigmoid_rampup)."""
    return sigmoid_rampup(step, length)


RAMPS = {"sigmoid": sigmoid_rampup, "linear": linear_rampup, "cosine": cosine_rampup, "gaussian": gaussian_rampup}


def rampup(kind: str, step: float, length: float) -> float:
    """Dispatch by name; ``none`` gives 1."""
    if kind == "none":
        return 1.0
    if kind not in RAMPS:
        raise ValueError(f"unknown ramp '{kind}'; available: none, {', '.join(RAMPS)}")
    return RAMPS[kind](step, length)
