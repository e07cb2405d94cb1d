"""Summary statistics used by the literature's tables."""

from __future__ import annotations


def relative_improvement(method: float, baseline: float) -> float:
    """(method - baseline) / baseline, as in ROAM's "RI" column (a fraction; x100 for %)."""
    if baseline == 0:
        raise ZeroDivisionError("relative improvement over a zero baseline is undefined")
    return (method - baseline) / baseline


def bridging_coefficient(method: float, lower: float, upper: float) -> float:
    """(method - lower) / (upper - lower): 0 at the supervised lower bound, 1 at the upper bound (EquiReg)."""
    if upper == lower:
        raise ZeroDivisionError("bridging coefficient is undefined when the upper and lower bounds are equal")
    return (method - lower) / (upper - lower)


def bootstrap_ci(values, n_resamples: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (EquiReg Sec. 7.3: 95% bootstrap confidence intervals).

    ``values``: a 1D sequence (resampled with replacement), or a 2D array (groups x items, e.g.
    seeds x test cases) resampled at both levels: groups with replacement, then items with
    replacement (the same items for every group, as every seed is scored on the same cases).
    NaN entries (a missing run) are ignored.
    """
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1D or 2D array; got shape {x.shape}")
    rng = np.random.default_rng(seed)
    g, n = x.shape
    rows = rng.integers(0, g, size=(n_resamples, g))
    cols = rng.integers(0, n, size=(n_resamples, n))
    means = np.nanmean(x[rows[:, :, None], cols[:, None, :]].reshape(n_resamples, -1), axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
