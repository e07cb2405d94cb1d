"""``ua_mt``: uncertainty-aware mean teacher (Yu et al., MICCAI 2019).

A mean teacher (:mod:`semiseg.methods.mean_teacher`) whose consistency target is filtered by the
teacher's uncertainty: ``mc_samples`` stochastic teacher passes (dropout active, fresh input noise
each) give a mean prediction; its entropy ``u`` is the uncertainty, and only voxels with
``u < H`` count, ``H = (0.75 + 0.25 * sigmoid_rampup(step, total)) * ln(C)`` (the threshold ramp of
the UA-MT code, from 3/4 to the maximum entropy ``ln C``); the consistency weight 0.1 ramps up over the whole
run. The target is the teacher's prediction on
the noisy input as in mean teacher (one more pass, the code's ``ema_output``); the MC mean only
measures the uncertainty.
"""

from __future__ import annotations

import math

import torch

from semiseg.methods.ramps import sigmoid_rampup
from semiseg.losses import entropy
from semiseg.methods.mean_teacher import MeanTeacher, MeanTeacherParams, input_noise
from semiseg.methods.registry import register_method


class UAMTParams(MeanTeacherParams):
    mc_samples: int = 8
    threshold_start: float = 0.75
    rampup_fraction: float = 1.0
    """The consistency weight's Gaussian ramp-up spans the whole run (the paper's ``t_max``, the maximum training
    step; the UA-MT code's 40 x 150 of 6000 iterations, SSL4MIS's 200 x 150 of 30000). Until December 2026 it
    kept mean teacher's half-run default."""


def uncertainty_threshold(step: int, total: int, num_classes: int, start: float = 0.75) -> float:
    """``(start + (1 - start) * sigmoid_rampup(step, total)) * ln(C)``."""
    return (start + (1.0 - start) * sigmoid_rampup(step, total)) * math.log(num_classes)


@register_method
class UAMT(MeanTeacher):
    name = "ua_mt"
    Params = UAMTParams

    def consistency_target(self, x, step):  # type: ignore[override]
        p: UAMTParams = self.params  # type: ignore[assignment]
        n = x.shape[0]
        with torch.no_grad():
            reps = x.repeat((p.mc_samples,) + (1,) * (x.ndim - 1))
            probs = torch.softmax(self.teacher(input_noise(reps, p.noise_std, p.noise_clip)).float(), dim=1)
            mean = probs.view(p.mc_samples, n, *probs.shape[1:]).mean(0)
            unc = entropy(mean)
            thr = uncertainty_threshold(step, self.ctx.total_iterations, self.ctx.num_classes, p.threshold_start)
            mask = (unc < thr).float()
            target = torch.softmax(self.teacher(input_noise(x, p.noise_std, p.noise_clip)).float(), dim=1)
        return target, mask, {"certain_fraction": mask.mean(), "uncertainty": unc.mean()}
