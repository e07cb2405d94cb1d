"""The Method contract (see the design guide).

A method is an ``nn.Module`` that owns every network it trains (students,
teachers, discriminators), so one ``state_dict`` holds all of them. The
engine owns the loop, devices, precision, checkpoints, validation and logs.

- ``training_step(labeled, unlabeled, step) -> dict``: a ``loss`` entry plus
  one detached entry per named term (logged by name). ``unlabeled`` is None
  when the run has no unlabeled stream; an unlabeled batch has no ``label``.
- ``configure_optimizers() -> dict[name, params]``: the engine builds each
  optimizer and schedule from the run's ``optim`` config, updated by
  ``optimizer_overrides()[name]`` where a method's paper fixes an optimizer of
  its own (e.g. a discriminator's Adam).
- Methods with several optimizers set ``manual_optimization = True`` and call
  ``self.optimize(loss, name)`` inside ``training_step``; the engine does the
  backward pass, AMP scaling, clipping, the non-finite check and the step.
- ``on_after_step(step)``: after the optimizer steps (EMA updates).
- ``restarts_optimizers_after(step)``: a new stage that starts with fresh optimizers (BCP's self-training).
- ``inference_network()``: the network used for validation and prediction.
- ``member_networks()``: every segmentation network it holds (default: its attributes that are one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from semiseg.methods.ramps import rampup
from semiseg.networks.base import SegmentationNetwork


class MethodParams(BaseModel):
    """Base of each method's hyper-parameters (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")


class SupervisedLossParams(MethodParams):
    """The weights of the supervised CE + Dice loss every semi-supervised baseline shares."""

    ce_weight: float = 0.5
    dice_weight: float = 0.5
    dice_background: bool = True
    """Average the Dice loss over every class, background included (SSL4MIS's ``DiceLoss``, the ACDC code of
    the literature), or over the foreground classes only (``false``: the LA code of UA-MT and the methods built
    on it -- SASSNet, DTC, MC-Net, SS-Net -- scores ``dice_loss(p[:, 1], y == 1)``; with two classes the
    background term would halve the supervised Dice against every other term)."""
    dice_squared: bool = True
    """Dice denominators ``sum p^2 + sum g^2`` (V-Net, UA-MT, SSL4MIS) or ``sum p + sum g`` (``false``: SS-Net's
    LA code, ``Binary_dice_loss``)."""


def joint_batch(labeled: dict[str, torch.Tensor], unlabeled: dict[str, torch.Tensor] | None) -> tuple[torch.Tensor, int]:
    """Labeled images followed by the unlabeled ones (one forward pass for both) and the labeled count."""
    x_l = labeled["image"]
    x = x_l if unlabeled is None else torch.cat([x_l, unlabeled["image"]])
    return x, x_l.shape[0]


def supervised_loss(logits: torch.Tensor, label: torch.Tensor, params: SupervisedLossParams) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``ce_weight * CE + dice_weight * Dice`` of the labeled part (see :func:`semiseg.losses.ce_dice_loss`)."""
    from semiseg.losses import ce_dice_loss

    return ce_dice_loss(logits, label, params.ce_weight, params.dice_weight, params.dice_background,
                        params.dice_squared)


def constant_adam(lr: float, betas: tuple[float, float]) -> dict[str, Any]:
    """``optim`` overrides for an optimizer a paper fixes as Adam at a constant rate without weight decay
    (the discriminators of SASSNet and the voxel-wise adversarial method)."""
    return {"name": "adam", "lr": lr, "betas": betas, "weight_decay": 0.0, "schedule": "constant", "warmup_iterations": 0}


@dataclass
class MethodContext:
    """What a method may know about the run."""

    num_classes: int
    in_channels: int
    spatial_dims: int
    total_iterations: int
    network_factory: Callable[..., SegmentationNetwork]
    """Builds the run's network; keyword arguments override the configured network options."""


class Method(nn.Module):
    name: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    uses_unlabeled: ClassVar[bool] = False
    manual_optimization: ClassVar[bool] = False
    revision: ClassVar[int] = 0
    """Raised when what the method computes changes and its configuration does not show it (a fix with no
    option, or a new option whose default changes the computation); recorded in each run's
    ``environment.json``, so that grids treat runs of an earlier revision as stale
    (:func:`semiseg.benchmark.planning.matches_plan`)."""

    def __init__(self, ctx: MethodContext, params: MethodParams) -> None:
        super().__init__()
        self.ctx = ctx
        self.params = params
        self._optimize_hook: Callable[[torch.Tensor, str], None] | None = None

    # -- contract -----------------------------------------------------------------
    def training_step(self, labeled: dict[str, torch.Tensor], unlabeled: dict[str, torch.Tensor] | None, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def configure_optimizers(self) -> dict[str, Any]:
        return {"main": list(self.inference_network().parameters())}

    def optimizer_overrides(self) -> dict[str, dict[str, Any]]:
        """Per optimizer name, ``optim`` fields that replace the run's (none by default)."""
        return {}

    def on_after_step(self, step: int) -> None:
        return None

    def restarts_optimizers_after(self, step: int) -> bool:
        """True where a paper starts a new optimizer after step ``step`` (0-based; a new stage of training):
        the engine then clears every optimizer's state (momentum, Adam moments); rates follow the schedule."""
        return False

    def inference_network(self) -> SegmentationNetwork:
        raise NotImplementedError

    def member_networks(self) -> dict[str, SegmentationNetwork]:
        """The segmentation networks this method trains or keeps (students, EMA teachers, co-students), by
        attribute name: what the advisor's ``disagreement`` strategy compares."""
        return {n: m for n, m in self.named_children() if isinstance(m, SegmentationNetwork)}

    def ramped(self, weight: float, kind: str, step: int) -> float:
        """``weight`` times the ramp-up ``kind`` over ``params.rampup_fraction`` of the run's iterations."""
        return weight * rampup(kind, step, self.params.rampup_fraction * self.ctx.total_iterations)  # type: ignore[attr-defined]

    def load_initial_weights(self, state: dict[str, torch.Tensor]) -> None:
        """``method.init_from``: load a pre-trained network into every network this method trains."""
        for module in self.modules():
            if isinstance(module, SegmentationNetwork):
                module.load_trunk(state)  # heads or decoders a method's network adds keep their own weights

    # -- engine-provided ----------------------------------------------------------
    def attach_optimize(self, hook: Callable[[torch.Tensor, str], None]) -> None:
        self._optimize_hook = hook

    def optimize(self, loss: torch.Tensor, name: str = "main") -> None:
        """Backward + step of optimizer ``name`` through the engine (AMP, clipping, non-finite guard)."""
        if self._optimize_hook is None:
            raise RuntimeError("optimize() is provided by the engine; attach a trainer first")
        self._optimize_hook(loss, name)


class StudentTeacherMethod(Method):
    """A student ``network`` trained by the optimizer and an EMA ``teacher`` of the same network (mean teacher,
    UA-MT, BCP); ``params.evaluate`` (``student`` or ``teacher``) picks the network that predicts, and
    ``method.init_from`` loads both."""

    def __init__(self, ctx: MethodContext, params: MethodParams) -> None:
        from semiseg.methods.ema import make_teacher

        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.teacher = make_teacher(self.network)

    def inference_network(self) -> SegmentationNetwork:
        return self.teacher if self.params.evaluate == "teacher" else self.network  # type: ignore[attr-defined,return-value]

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.network.parameters())}

    def load_initial_weights(self, state):  # type: ignore[override]
        self.network.load_state_dict(state)
        self.teacher.load_state_dict(state)
