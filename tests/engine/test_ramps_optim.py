import math

import pytest
import torch

from semiseg.config.schema import OptimConfig
from semiseg.engine.optim import build_optimizer, build_scheduler, lr_factor
from semiseg.methods.ramps import cosine_rampdown, cosine_rampup, linear_rampup, rampup, sigmoid_rampup


def test_ramps_match_formulas():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(150, 100) == 1.0 and sigmoid_rampup(3, 0) == 1.0
    assert linear_rampup(25, 100) == 0.25
    assert cosine_rampup(50, 100) == pytest.approx(0.5) and cosine_rampdown(100, 100) == pytest.approx(0.0)
    assert rampup("none", 0, 10) == 1.0
    with pytest.raises(ValueError, match="unknown ramp"):
        rampup("cubic", 1, 2)


def test_lr_schedules():
    poly = OptimConfig(schedule="poly", poly_power=0.9)
    assert lr_factor(0, 100, poly) == 1.0
    assert lr_factor(50, 100, poly) == pytest.approx(0.5**0.9)
    step = OptimConfig(schedule="step", step_size=10, step_gamma=0.5)
    assert lr_factor(25, 100, step) == 0.25
    cos = OptimConfig(schedule="cosine")
    assert lr_factor(50, 100, cos) == pytest.approx(0.5)
    warm = OptimConfig(schedule="constant", warmup_iterations=4)
    assert [lr_factor(i, 100, warm) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    # BCP on LA: 2000 pre-training iterations at 0.01, then /10 every 2500 of the self-training's own count
    held = OptimConfig(schedule="step", step_size=2500, step_gamma=0.1, hold_iterations=2000)
    assert [lr_factor(i, 17000, held) for i in (0, 1999, 2000, 4499, 4500, 7000)] == pytest.approx(
        [1.0, 1.0, 1.0, 1.0, 0.1, 0.01])
    held_poly = OptimConfig(schedule="poly", poly_power=1.0, hold_iterations=50)
    assert lr_factor(49, 100, held_poly) == 1.0 and lr_factor(75, 100, held_poly) == pytest.approx(0.5)


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = OptimConfig(name="sgd", lr=0.1, schedule="poly", poly_power=1.0)
    opt = build_optimizer([p], cfg)
    sch = build_scheduler(opt, 10, cfg)
    for _ in range(5):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert isinstance(build_optimizer([p], OptimConfig(name="adamw")), torch.optim.AdamW)
