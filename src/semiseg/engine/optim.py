"""Optimizers (SGD, Adam, AdamW) and iteration-based schedules (poly, step, cosine, constant, warm-up)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from semiseg.config.schema import OptimConfig


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total`` iterations; the first
    ``hold_iterations`` steps keep the base rate and the schedule runs over the rest from its own step 0."""
    if step < cfg.hold_iterations:
        return 1.0
    step, total = step - cfg.hold_iterations, max(total - cfg.hold_iterations, 1)
    if cfg.warmup_iterations > 0 and step < cfg.warmup_iterations:
        return (step + 1) / cfg.warmup_iterations
    s, n = step - cfg.warmup_iterations, max(total - cfg.warmup_iterations, 1)
    if cfg.schedule == "poly":
        return max(0.0, 1.0 - s / n) ** cfg.poly_power
    if cfg.schedule == "step":
        return cfg.step_gamma ** (step // cfg.step_size)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(s, n) / n))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, total: int, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, cfg))
