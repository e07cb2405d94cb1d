"""Ranking candidates for labeling from their scores (issue 15).

``random`` is the control; ``entropy``, ``disagreement`` and ``tta`` rank by their signal (highest
first); ``diverse`` picks greedily by score times distance to what is already covered (the labeled
cases and the earlier picks), so that k picks are not k near-copies of one kind of case -- the
score-weighted core-set idea of Sener & Savarese (2018) and BADGE (Ash et al., 2020) in its
deterministic form.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("random", "entropy", "disagreement", "tta", "diverse")
SIGNALS = ("entropy", "disagreement", "tta")
"""The strategies that rank by one signal, and so the signals ``diverse`` can weight its picks by."""


def rank_by_score(scores: np.ndarray) -> list[int]:
    """Indices by descending score; ties keep the candidates' order."""
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable")]


def random_scores(n: int, seed: int) -> np.ndarray:
    """Uniform scores in [0, 1) from ``seed``: the control strategy's random order."""
    return np.random.default_rng(seed).random(n)


def diverse_order(scores: np.ndarray, embeddings: np.ndarray, covered: np.ndarray | None = None) -> tuple[list[int], list[float]]:
    """Greedy score-weighted diversity: each pick maximises ``s_i * d_i``.

    ``s_i`` is the score min-max scaled to [0.05, 1] (a zero-score case can still be picked for coverage),
    ``d_i`` the cosine distance from candidate ``i`` to the nearest covered embedding -- a row of ``covered``
    (the labeled cases) or an earlier pick -- and 1 while nothing is covered. Embeddings are L2-normalised
    rows. Returns the order over all candidates and the value ``s_i * d_i`` at which each was picked.
    """
    s = np.asarray(scores, dtype=float)
    n = len(s)
    span = s.max() - s.min() if n else 0.0
    s = 0.05 + 0.95 * ((s - s.min()) / span if span > 0 else np.ones(n))
    e = np.asarray(embeddings, dtype=float)
    nearest = np.ones(n)
    if covered is not None and len(covered):
        nearest = np.clip(1.0 - e @ np.asarray(covered, dtype=float).T, 0.0, 2.0).min(1)
    order: list[int] = []
    values: list[float] = []
    free = np.ones(n, dtype=bool)
    for _ in range(n):
        value = np.where(free, s * nearest, -np.inf)
        i = int(np.argmax(value))  # the first of equal values: candidates' order
        order.append(i)
        values.append(float(value[i]))
        free[i] = False
        nearest = np.minimum(nearest, np.clip(1.0 - e @ e[i], 0.0, 2.0))
    return order, values
