"""``mean_teacher``: Tarvainen & Valpola 2017, as adapted to segmentation by Cui et al. 2019.

The student learns from labeled data (CE + Dice) and from a consistency term: the MSE between
its softmax and the softmax of an EMA teacher (:mod:`semiseg.methods.ema`) that sees the same
images with small Gaussian noise (N(0, 0.1^2) clipped to +-0.2, as in the UA-MT / SSL4MIS code).
The consistency weight ramps up with the sigmoid schedule exp(-5 (1 - t)^2).

``consistency_on``: ``unlabeled`` (UA-MT, SSL4MIS) or ``all`` (the original mean teacher, also
on the labeled images). ``evaluate``: which network validation and prediction use.
"""

from __future__ import annotations

from typing import Literal

import torch

from semiseg.losses import softmax_mse
from semiseg.methods.base import StudentTeacherMethod, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.ema import ema_update
from semiseg.methods.registry import register_method


class MeanTeacherParams(SupervisedLossParams):
    consistency: float = 0.1
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 0.5
    ema_decay: float = 0.99
    noise_std: float = 0.1
    noise_clip: float = 0.2
    consistency_on: Literal["unlabeled", "all"] = "unlabeled"
    evaluate: Literal["student", "teacher"] = "student"


def input_noise(x: torch.Tensor, std: float, clip: float) -> torch.Tensor:
    """``x + clip(N(0, std^2), -clip, clip)`` (the mean-teacher input perturbation)."""
    if std <= 0:
        return x
    return x + torch.clamp(torch.randn_like(x) * std, -clip, clip)


@register_method
class MeanTeacher(StudentTeacherMethod):
    name = "mean_teacher"
    Params = MeanTeacherParams
    uses_unlabeled = True

    def consistency_weight(self, step: int) -> float:
        return self.ramped(self.params.consistency, self.params.consistency_rampup, step)  # type: ignore[attr-defined]

    def consistency_target(self, x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Teacher probabilities for ``x`` and an optional validity mask (UA-MT overrides this)."""
        p = self.params
        with torch.no_grad():
            t = torch.softmax(self.teacher(input_noise(x, p.noise_std, p.noise_clip)).float(), dim=1)  # type: ignore[attr-defined]
        return t, None, {}

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: MeanTeacherParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        logits = self.network(x)
        sup, terms = supervised_loss(logits[:n_l], labeled["label"], p)
        first = 0 if p.consistency_on == "all" else n_l
        out: dict[str, torch.Tensor] = dict(terms)
        loss = sup
        if first < x.shape[0]:
            target, mask, extra = self.consistency_target(x[first:], step)
            cons = softmax_mse(logits[first:], target, mask)
            w = self.consistency_weight(step)
            loss = loss + w * cons
            out.update(consistency=cons.detach(), consistency_weight=torch.tensor(w), **extra)
        return {"loss": loss, **out}

    def on_after_step(self, step: int) -> None:
        ema_update(self.teacher, self.network, self.params.ema_decay, step)  # type: ignore[attr-defined]
