"""``hybrid_colearning``: multi-model co-learning with hybrid cropping (Zhang 2024; paper 003).

Two students of different structure and one teacher, the weighted EMA of both students
(Eq. 1, :func:`semiseg.methods.ema.weighted_ema_update`):
``theta_t = (1 - a - b) theta_{t-1} + a theta_s1 + b theta_s2`` with ``a + b = 1 - min(1 - 1/(t+1), ema_decay)``
split by ``ema_shares`` (the paper gives no values; 0.99 is the mean-teacher decay of the LA literature).

Losses (Eq. 2-18), every segmentation loss the Dice loss of the literature (batch-wide, background
included; :func:`semiseg.losses.dice_loss`):

- Eq. 3, labeled: ``Dice(s1(x_l), y_l) + Dice(s2(x_l), y_l)``.
- Eq. 4-6, cross pseudo supervision on unlabeled images: each student against the other's hard
  pseudo-labels (argmax, no gradient), Dice.
- Eq. 7-9, teacher-student: each student against the teacher's hard pseudo-labels, Dice.
- Eq. 11-12, INDMIX: labeled image ``i`` and unlabeled image ``i`` of the batch exchange a cuboid
  through one zero-centred mask ``M`` (:mod:`semiseg.methods.copy_paste`, ``crop_ratio`` of every
  edge, 003's "cropping parameter" 0.5): ``Mixed_1 = x_l M + x_u (1 - M)`` goes to student 1,
  ``Mixed_2 = x_u M + x_l (1 - M)`` to student 2.
- Eq. 13-17, OUTDMIX: each mixed image's target takes, voxel by voxel, the label of the image the
  voxel came from: the one-hot ground truth where it came from the labeled image, the teacher's
  softmax prediction on the unlabeled image where it came from the unlabeled one, mixed through
  the same mask; ``L_mix = MSE(softmax(s1(Mixed_1)), Y_mix1) + MSE(softmax(s2(Mixed_2)), Y_mix2)``.
  The paper's Eq. 13-14 write both targets as ``Y_hat M + Y_l (1 - M)``, which would give the
  ground truth to the unlabeled part of ``Mixed_1``; we follow the text ("we mix the segmentation
  results from the Teacher model with the Ground Truth for the cropped regions") and Eq. 11-12.
- Eq. 18: ``L = L_labeled + lambda(t) (L_cps + L_teacher) + mu(t) L_mix``, lambda = mu = 1 (paper).
  The paper gives no ramp-up; we ramp both weights with the sigmoid schedule over
  ``rampup_fraction`` of the run (1.0: the 40 x 150 = 6000 iterations of the MC-Net code whose CPS
  term 003 borrows), because the teacher's pseudo-labels are noise before the students learn.

The students' structures (``student1_network`` / ``student2_network``: network options that
override the run's): Eq. 1 averages parameters, so both must have the same parameter shapes, and the
average must still compute something close to both students. The default keeps the run's network for
student 1 and swaps student 2's activation (``activation: swap``: ReLU <-> LeakyReLU(0.1); V-Net uses
ReLU, U-Net LeakyReLU), a structural difference under which the same weights compute nearly the same
function. A decoder difference (``{upsampling: interpolate}``: (tri)linear upsampling + a convolution with
the transposed convolution's parameter shapes, MC-Net's second decoder) keeps the shapes but not the
meaning of the upsampling weights: on LA (CPU protocol, 8 labeled, step 1750 of 3000) the averaged teacher
scored Dice 0.45-0.55 on training cases where the students scored 0.54-0.84, and its pseudo-labels then
misguide both students; it is kept as an option, not the default. Both students start from the same
weights (``same_init``): averaging two independently initialised networks does not average their
functions (hidden units are permutable). Diversity comes from the swapped activation, the two mixed images
(Mixed_1 for student 1, Mixed_2 for student 2) and the cross pseudo-labels.

Even from one initialisation, two students trained on different batches from step 0 end in different basins
whose parameter average lies on a loss barrier (Frankle et al. 2020, "Linear mode connectivity and the
lottery ticket hypothesis"). Measured on LA (CPU protocol, 8 labeled, ``shared_start: 0``, final weights, the
last twelve cases of the unlabeled pool, whose labels training never saw): students Dice 0.741 / 0.753, their
average (the Eq. 1 teacher, with its own batch-norm statistics) 0.641 -- a teacher worse than either student, whose
pseudo-labels (Eq. 7-9, 13-17) then hold both students back. ``shared_start`` lets the students share the
first part of training (student 1 trains alone, student 2 is its copy; Frankle et al. find networks that
share early training stay linearly connected) and split afterwards. With ``shared_start: 0.2`` (the LA presets';
one trial, the value chosen before it ran) the students of the same protocol scored 0.823 / 0.818 and the
teacher 0.818 on the same twelve cases; their relative parameter distance fell from 0.22 to 0.08
(``benchmarks/member_dice.py``), and the averaged teacher kept the students' quality. At 16 labeled (same protocol,
``shared_start: 0.2``) the students drifted further apart (distance 0.108) and the teacher fell below them again (0.758
vs 0.802 / 0.791 on the last twelve unlabeled-pool cases); recomputing its batch-norm statistics on training crops
(SWA's ``update_bn``, 60 batches) left it at 0.757: the loss is the weight average itself, not stale statistics.
The method's default stays 0 (the paper's); runs that
start both students from one trained network (``method.init_from``, the ACDC protocol) share their start anyway.

The teacher has student 1's structure (``teacher_like``) and predicts without input noise.
Validation and prediction use ``evaluate`` (default the teacher, the self-ensemble the paper
credits with "better representational power").
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import field_validator

from semiseg.losses import dice_loss, softmax_mse
from semiseg.methods.base import Method, MethodContext, MethodParams
from semiseg.methods.copy_paste import cuboid_mask, mix
from semiseg.methods.ema import ema_decay, make_teacher, weighted_ema_update
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork
from semiseg.losses.segmentation import one_hot


class HybridColearningParams(MethodParams):
    unlabeled_weight: float = 1.0
    """lambda of Eq. 18 (weight of L_cps + L_teacher)."""
    mix_weight: float = 1.0
    """mu of Eq. 18 (weight of L_mix)."""
    rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0
    crop_ratio: float = 0.5
    """Edge of the exchanged cuboid as a fraction of each patch edge (003: 0.5)."""
    crop_position: Literal["random", "center"] = "random"
    ema_decay: float = 0.99
    ema_shares: tuple[float, float] = (0.5, 0.5)
    """How ``1 - decay`` is split between student 1 (alpha) and student 2 (beta) in Eq. 1."""
    student1_network: dict[str, Any] = {}
    student2_network: dict[str, Any] = {"activation": "swap"}
    """Options of student 2's network; ``activation: swap`` is the activation student 1 does not use."""
    teacher_like: Literal["student1", "student2"] = "student1"
    same_init: bool = True
    shared_start: float = 0.0
    """Fraction of the run during which student 2 is a copy of student 1 (only student 1 trains, without the
    CPS term); the students split afterwards. 0: they split at step 0."""
    evaluate: Literal["teacher", "student1", "student2"] = "teacher"

    @field_validator("ema_shares")
    @classmethod
    def _shares(cls, v: tuple[float, float]) -> tuple[float, float]:
        if min(v) < 0 or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"ema_shares must be >= 0 and sum to 1; got {list(v)}")
        return v

    @field_validator("shared_start")
    @classmethod
    def _shared(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"shared_start must be in [0, 1); got {v}")
        return v

    @field_validator("crop_ratio")
    @classmethod
    def _ratio(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"crop_ratio must be in (0, 1); got {v}")
        return v


def swapped_activation(options: dict[str, Any], reference: torch.nn.Module) -> dict[str, Any]:
    """``activation: swap`` -> the activation ``reference`` does not use (ReLU <-> LeakyReLU)."""
    if options.get("activation") != "swap":
        return dict(options)
    leaky = any(isinstance(m, torch.nn.LeakyReLU) for m in reference.modules())
    return {**options, "activation": "relu" if leaky else "leaky_relu"}


def teacher_weights(decay: float, shares: tuple[float, float], step: int) -> tuple[float, float]:
    """(alpha, beta) of Eq. 1 at 0-based ``step``: ``1 - min(1 - 1/(step+1), decay)`` split by ``shares``."""
    rest = 1.0 - ema_decay(decay, step)
    return rest * shares[0], rest * shares[1]


@register_method
class HybridColearning(Method):
    name = "hybrid_colearning"
    Params = HybridColearningParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: HybridColearningParams) -> None:
        super().__init__(ctx, params)
        self.student1 = ctx.network_factory(**params.student1_network)
        self.student2 = ctx.network_factory(**swapped_activation(params.student2_network, self.student1))
        s1, s2 = self.student1.state_dict(), self.student2.state_dict()
        mismatch = [k for k in s1 if k not in s2 or s1[k].shape != s2[k].shape] + [k for k in s2 if k not in s1]
        if mismatch:
            raise ValueError(
                "hybrid_colearning: Eq. 1 averages the students' parameters, so they need the same parameter shapes; "
                f"student1_network {params.student1_network} and student2_network {params.student2_network} differ at "
                f"{mismatch[:3]}"
            )
        if params.same_init:
            self.student2.load_state_dict(s1)
        self.teacher = make_teacher(self.student1 if params.teacher_like == "student1" else self.student2)
        self.split_step = int(round(params.shared_start * ctx.total_iterations))
        """Steps before this one train student 1 alone; student 2 copies it after each (``shared_start``)."""

    def inference_network(self) -> SegmentationNetwork:
        return {"teacher": self.teacher, "student1": self.student1, "student2": self.student2}[self.params.evaluate]  # type: ignore[attr-defined,return-value]

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.student1.parameters()) + list(self.student2.parameters())}

    def load_initial_weights(self, state):  # type: ignore[override]
        for net in (self.student1, self.student2, self.teacher):
            net.load_state_dict(state)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: HybridColearningParams = self.params  # type: ignore[assignment]
        shared = step < self.split_step  # student 2 is a copy of student 1: train student 1 alone
        students = (self.student1,) if shared else (self.student1, self.student2)
        x_l, y_l = labeled["image"], labeled["label"]
        n_l = x_l.shape[0]
        if unlabeled is None:  # Eq. 3 only
            sups = [dice_loss(torch.softmax(s(x_l).float(), 1), y_l) for s in students]
            return {"loss": sum(sups), **{f"sup{i + 1}": v.detach() for i, v in enumerate(sups)}}
        x_u = unlabeled["image"]
        n_u, k = x_u.shape[0], self.ctx.num_classes
        n_mix = min(n_l, n_u)
        with torch.no_grad():
            t_u = torch.softmax(self.teacher(x_u).float(), dim=1)
        # INDMIX (Eq. 11-12): pair labeled i with unlabeled i through one mask per pair
        mask = cuboid_mask(n_mix, x_l.shape[2:], p.crop_ratio, p.crop_position, x_l.device)
        mixed = (mix(x_l[:n_mix], x_u[:n_mix], mask), mix(x_u[:n_mix], x_l[:n_mix], mask))
        # OUTDMIX (Eq. 13-17) targets: each voxel's target comes from the image the voxel came from
        y_onehot = one_hot(y_l[:n_mix], k)
        targets = (mix(y_onehot, t_u[:n_mix], mask), mix(t_u[:n_mix], y_onehot, mask))
        pseudo_t = t_u.argmax(1)
        sup, unl, mixl = [], [], []
        for s, x_mix, target in zip(students, mixed, targets):
            o = s(torch.cat([x_l, x_u, x_mix])).float()  # one forward per student: labeled, unlabeled, its mixed images
            prob = torch.softmax(o, 1)
            sup.append(dice_loss(prob[:n_l], y_l))  # Eq. 3
            unl.append(prob[n_l : n_l + n_u])
            mixl.append(softmax_mse(o[n_l + n_u :], target))
        teach = sum(dice_loss(u, pseudo_t) for u in unl)  # Eq. 7-9
        if shared:  # one student: no cross pseudo supervision
            cps = torch.zeros((), device=x_l.device)
        else:  # Eq. 4-6
            cps = dice_loss(unl[0], unl[1].detach().argmax(1)) + dice_loss(unl[1], unl[0].detach().argmax(1))
        l_mix = sum(mixl)
        lam = self.ramped(p.unlabeled_weight, p.rampup, step)
        mu = self.ramped(p.mix_weight, p.rampup, step)
        loss = sum(sup) + lam * (cps + teach) + mu * l_mix  # Eq. 18
        return {"loss": loss, **{f"sup{i + 1}": v.detach() for i, v in enumerate(sup)}, "cps": cps.detach(),
                "teacher": teach.detach(), "mix": l_mix.detach(), "unlabeled_weight": torch.tensor(lam),
                "mix_weight": torch.tensor(mu)}

    def on_after_step(self, step: int) -> None:
        p: HybridColearningParams = self.params  # type: ignore[assignment]
        if step < self.split_step:  # student 2 stays a copy of student 1 (``shared_start``)
            with torch.no_grad():
                for t, s in zip(self.student2.state_dict().values(), self.student1.state_dict().values(), strict=True):
                    t.copy_(s)
        a, b = teacher_weights(p.ema_decay, p.ema_shares, step)
        weighted_ema_update(self.teacher, [(self.student1, a), (self.student2, b)])
