"""Exponential-moving-average teachers (mean teacher, UA-MT, the hybrid-cropping and adversarial methods).

Tarvainen & Valpola 2017, Eq. 1: ``theta'_t = a theta'_{t-1} + (1 - a) theta_t`` with
``a = min(1 - 1 / (step + 1), decay)`` so early teachers follow the student closely.
Only parameters are averaged; the teacher's batch-norm statistics come from its own forward
passes (as in the mean-teacher and UA-MT reference code).
"""

from __future__ import annotations

import copy

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
def ema_update(teacher: nn.Module, student: nn.Module, decay: float, step: int | None = None) -> float:
    """Move every teacher parameter toward the student's; returns the decay used.

    With ``step`` the decay warms up (see :func:`ema_decay`); without it ``decay`` is used as is.
    """
    a = decay if step is None else ema_decay(decay, step)
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(a).add_(s.detach(), alpha=1.0 - a)
    return a
