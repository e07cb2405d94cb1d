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
