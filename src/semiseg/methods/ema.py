"""Exponential-moving-average teachers (mean teacher, UA-MT, the hybrid-cropping and adversarial methods).

Tarvainen & Valpola 2017, Eq. 1: ``theta'_t = a theta'_{t-1} + (1 - a) theta_t`` with
``a = min(1 - 1 / (step + 1), decay)`` so early teachers follow the student closely.
The hybrid-cropping co-learning teacher (003, Eq. 1) averages two students with their own weights,
``theta_t = (1 - alpha - beta) theta_{t-1} + alpha theta_s1 + beta theta_s2``:
:func:`weighted_ema_update` is that general form and :func:`ema_update` its one-student case.
Only parameters are averaged; the teacher's batch-norm statistics come from its own forward
passes (as in the mean-teacher and UA-MT reference code).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` (same weights, no gradients)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def ema_decay(decay: float, step: int) -> float:
    """The effective decay at 0-based ``step``: ``min(1 - 1 / (step + 1), decay)``."""
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def weighted_ema_update(teacher: nn.Module, students: Sequence[tuple[nn.Module, float]]) -> float:
    """``theta_t = (1 - sum_i w_i) theta_t + sum_i w_i theta_si`` for every parameter (003, Eq. 1).

    Every student must have the teacher's parameter shapes (checked); returns the teacher's own
    weight ``1 - sum_i w_i``.
    """
    keep = 1.0 - sum(w for _, w in students)
    if keep < 0 or any(w < 0 for _, w in students):
        raise ValueError(f"EMA weights must be >= 0 and sum to at most 1; got {[w for _, w in students]}")
    sources = [list(s.parameters()) for s, _ in students]
    for i, t in enumerate(teacher.parameters()):
        t.mul_(keep)
        for params, (_, w) in zip(sources, students, strict=True):
            s = params[i].detach()
            if s.shape != t.shape:
                raise ValueError(f"EMA: student parameter {i} has shape {tuple(s.shape)}, the teacher's is {tuple(t.shape)}")
            t.add_(s, alpha=w)
    return keep


def ema_update(teacher: nn.Module, student: nn.Module, decay: float, step: int | None = None) -> float:
    """Move every teacher parameter toward the student's; returns the decay used.

    With ``step`` the decay warms up (see :func:`ema_decay`); without it ``decay`` is used as is.
    """
    a = decay if step is None else ema_decay(decay, step)
    n_t, n_s = sum(1 for _ in teacher.parameters()), sum(1 for _ in student.parameters())
    if n_t != n_s:
        raise ValueError(f"EMA: the teacher has {n_t} parameters, the student {n_s}")
    weighted_ema_update(teacher, [(student, 1.0 - a)])
    return a
