"""``dtc``: dual-task consistency (Luo, Chen, Song, Wang; AAAI 2021).

A network with a segmentation head and a signed-distance head (:mod:`semiseg.methods.sdf`). Labeled images:
``Dice(seg, y) + beta * MSE(sdf_head, SDF(y))`` (beta = 0.3, the paper's code). Every image: the dual-task
consistency, the MSE between the level-set transform of the distance head, ``sigmoid(-k * sdf)`` with
k = 1500 (Eq. 2), and the softmax probability of the same class (Eq. 3-4), weighted by ``consistency`` = 1
with the sigmoid ramp-up over ``rampup_fraction`` of the run (the code's 40 x 150 = 6000 iterations).
"""

from __future__ import annotations

from typing import Literal

import torch

from semiseg.methods.base import Method, MethodContext, joint_batch
from semiseg.methods.registry import register_method
from semiseg.methods.sdf import DualTaskParams, dual_task_network, dual_task_supervised, level_set_transform
from semiseg.networks.base import SegmentationNetwork


class DTCParams(DualTaskParams):
    consistency: float = 1.0
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0
    k: float = 1500.0


def dual_task_consistency(seg_logits: torch.Tensor, sdf: torch.Tensor, k: float) -> torch.Tensor:
    """DTC Eq. 3-4: ``mean((sigmoid(-k sdf_c) - softmax(seg)_c)^2)`` over the foreground classes and voxels."""
    probs = torch.softmax(seg_logits.float(), dim=1)[:, 1:]
    return torch.mean((level_set_transform(sdf.float(), k) - probs) ** 2)


@register_method
class DTC(Method):
    name = "dtc"
    Params = DTCParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: DTCParams) -> None:
        super().__init__(ctx, params)
        self.network = dual_task_network(ctx.network_factory)

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: DTCParams = self.params  # type: ignore[assignment]
        x, _ = joint_batch(labeled, unlabeled)
        heads = self.network.forward_heads(x)
        sup, terms = dual_task_supervised(heads, labeled["label"], p, self.ctx.num_classes)
        cons = dual_task_consistency(heads["seg"], heads["sdf"], p.k)
        w = self.ramped(p.consistency, p.consistency_rampup, step)
        return {"loss": sup + w * cons, **terms, "consistency": cons.detach(), "consistency_weight": torch.tensor(w)}
