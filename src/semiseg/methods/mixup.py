"""Mixup pieces shared by ROAM, MixMatch and manifold mixup (one copy each).

- :func:`sharpen` — ROAM Eq. 5 / MixMatch: ``p^(1/T) / sum_j p_j^(1/T)`` over the class axis.
- :func:`sample_mix_coefficient` — ``lambda ~ Beta(alpha, alpha)``, ``lambda' = max(lambda, 1 - lambda)``
  (ROAM Sec. II-C.2; MixMatch Eq. 8-9) so the mixed sample stays closer to the original.
- :func:`pairing` — the random permutation that pairs each sample with another, over the whole
  batch (ROAM's concatenated batch) or within groups (the "kept separate" ablation).
- :func:`mix` / :func:`mix_state` — Eq. 7-8 applied to a tensor, or to a hidden
  :class:`~semiseg.networks.base.LayerState` (optionally its skip connections too, ROAM Table IV).

Random draws use torch's global generator, which the engine seeds and checkpoints, so a resumed
run draws the same coefficients and pairings.
"""

from __future__ import annotations

from typing import Sequence

import torch

from semiseg.networks.base import LayerState


def sharpen(probs: torch.Tensor, temperature: float, dim: int = 1) -> torch.Tensor:
    """ROAM Eq. 5: raise the class probabilities to 1/T and renormalise along ``dim``.

    ``temperature`` -> 0 gives a one-hot argmax; 1 leaves ``probs`` unchanged.
    """
    if temperature <= 0:
        raise ValueError(f"sharpening temperature must be > 0; got {temperature}")
    # computed in log space: p^(1/T) underflows for small p and small T
    logp = torch.log(probs.clamp_min(1e-12)) / temperature
    return torch.softmax(logp, dim=dim)


def sample_mix_coefficient(alpha: float) -> float:
    """``lambda' = max(lambda, 1 - lambda)`` with ``lambda ~ Beta(alpha, alpha)``."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0; got {alpha}")
    lam = float(torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha))).sample())
    return max(lam, 1.0 - lam)


def pairing(group_sizes: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """A permutation of ``sum(group_sizes)`` indices that only permutes within each group.

    ``pairing([n])`` shuffles the whole batch; ``pairing([n_l, n_u])`` keeps labeled samples paired
    with labeled ones and unlabeled with unlabeled.
    """
    parts, start = [], 0
    for n in group_sizes:
        parts.append(torch.randperm(n) + start)
        start += n
    return torch.cat(parts).to(device)


def mix(x: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 7-8: ``lam * x + (1 - lam) * x[perm]`` (batch axis 0)."""
    if lam == 1.0:
        return x
    return lam * x + (1.0 - lam) * x[perm]


def mix_state(state: LayerState, perm: torch.Tensor, lam: float, skips: bool) -> LayerState:
    """Mix the hidden state at layer kappa with one pairing (Eq. 7).

    The output of layer kappa is mixed wherever it goes: ``h`` and, when layer kappa hands its output
    to the decoder as well (an encoder level of a U-Net), that skip connection too — the same tensor
    object as ``h``. Skips from layers before kappa "go around" the mixing point and hold the
    original samples; ``skips=True`` mixes them too with the same lambda and pairing (ROAM Sec. IV-4,
    Table IV). At kappa = 0 and kappa = L no skip is carried, so both settings agree (ROAM's default set).
    """
    h = mix(state.h, perm, lam)
    out = [mix(t, perm, lam) if skips else (h if t is state.h else t) for t in state.skips]
    return LayerState(h, out)
