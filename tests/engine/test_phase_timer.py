"""Where the time goes: exclusive phase accounting (on a fake clock) and the run's profile.csv (issue 13)."""

import csv

import pytest
import torch
from torch import nn

from semiseg.engine import phase_timer
from semiseg.engine.phase_timer import PhaseTimer


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(phase_timer.time, "perf_counter", lambda: now[0])
    return now


def test_nested_phases_are_exclusive_and_add_up(clock):
    t = PhaseTimer()
    with t.phase("step"):
        clock[0] += 1.0
        with t.phase("backward"):
            clock[0] += 2.0
        clock[0] += 0.5
    with t.phase("data"):
        clock[0] += 0.25
    assert dict(t.seconds) == {"step": 1.5, "backward": 2.0, "data": 0.25}
    assert sum(t.seconds.values()) == clock[0]  # the phases add up to the wall time
    rows = t.rows(steps=2)
    assert [r["phase"] for r in rows] == ["backward", "step", "data"]
    assert rows[0]["ms_per_step"] == 1000.0 and rows[0]["share"] == pytest.approx(2 / 3.75, abs=1e-4)


class Slow(nn.Module):
    def __init__(self, clock, dt):
        super().__init__()
        self.clock, self.dt = clock, dt

    def forward(self, x):
        self.clock[0] += self.dt
        return x


def test_forward_hooks_count_only_inside_phases_that_ask(clock):
    t = PhaseTimer()
    student, teacher = Slow(clock, 1.0), Slow(clock, 3.0)
    t.hook_forwards({"student": student, "teacher": teacher})
    x = torch.zeros(1)
    with t.phase("training step", forwards=True):
        student(x)
        teacher(x)
        clock[0] += 0.5  # the losses
    with t.phase("validation"):
        teacher(x)  # validation's forwards stay in validation
    assert dict(t.seconds) == {"forward student": 1.0, "forward teacher": 3.0, "training step": 0.5, "validation": 3.0}
    state = t.state_dict()
    u = PhaseTimer()
    u.load_state_dict(state)
    assert dict(u.seconds) == dict(t.seconds) and dict(u.calls) == dict(t.calls)


@pytest.mark.slow
def test_a_run_writes_its_profile_and_resume_keeps_counting(msd_dataset, tmp_path, monkeypatch):
    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer
    from semiseg.methods import get_method_class
    from tests.conftest import crash_then_resume, tiny_overrides

    def cfg():
        return load_config("synthbrain2d_supervised", tiny_overrides(msd_dataset) + [
            "method.name=mean_teacher", "train.unlabeled_batch_size=2", "split.unlabeled=rest", "train.profile=on"])

    Trainer(cfg(), tmp_path / "a").fit()
    rows = {r["phase"]: r for r in csv.DictReader(open(tmp_path / "a" / "profile.csv"))}
    for phase in ("data (sampling, augmentation, to device)", "training step (losses, mixing, perturbation)",
                  "forward network", "forward teacher", "backward + optimizer step", "after step (EMA updates)",
                  "validation", "checkpoints", "non-finite weight check", "loop (schedules, logging)"):
        assert phase in rows, phase
    assert int(rows["after step (EMA updates)"]["calls"]) == 6 and int(rows["forward teacher"]["calls"]) == 6
    assert sum(float(r["share"]) for r in rows.values()) == pytest.approx(1.0, abs=1e-3)
    # resumed after a crash: the per-step phases are counted once per step, as in the uninterrupted run
    crash_then_resume(get_method_class("mean_teacher"), cfg, tmp_path / "b", monkeypatch)
    again = {r["phase"]: r for r in csv.DictReader(open(tmp_path / "b" / "profile.csv"))}
    for phase in ("after step (EMA updates)", "forward network", "backward + optimizer step"):
        assert again[phase]["calls"] == rows[phase]["calls"], phase
    off = load_config("synthbrain2d_supervised", tiny_overrides(msd_dataset) + ["train.profile=off"])
    Trainer(off, tmp_path / "c").fit()
    assert not (tmp_path / "c" / "profile.csv").exists()


def test_non_finite_entries_names_exactly_the_bad_tensors():
    from semiseg.engine.checkpoint import finite_flags, non_finite_entries

    state = {"ok": torch.randn(3, 3), "nan": torch.tensor([1.0, float("nan")]), "count": torch.tensor([3]),
             "neg_inf": torch.tensor([float("-inf")]), "empty": torch.zeros(0), "f64": torch.tensor([1e300], dtype=torch.float64),
             "huge": torch.tensor([3e38, 3e38]), "f64_inf": torch.tensor([float("inf")], dtype=torch.float64)}
    assert non_finite_entries(state) == ["nan", "neg_inf", "f64_inf"]  # large finite values are not flagged
    assert finite_flags([torch.ones(2), torch.full((2,), float("nan"))]).tolist() == [True, False]
    assert non_finite_entries({"a": torch.ones(4)}) == [] and non_finite_entries({}) == []
