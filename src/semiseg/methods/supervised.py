"""``supervised``: CE + Dice on labeled data only.

The lower bound of every semi-supervised table (few labeled cases) and, with
``split.all_labeled``, its upper bound (every training case labeled).
"""

from __future__ import annotations

import torch

from semiseg.losses import ce_dice_loss
from semiseg.methods.base import Method, MethodContext, MethodParams
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class SupervisedParams(MethodParams):
    ce_weight: float = 0.5
    dice_weight: float = 0.5


@register_method
class Supervised(Method):
    name = "supervised"
    Params = SupervisedParams

    def __init__(self, ctx: MethodContext, params: SupervisedParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        logits = self.network(labeled["image"])
        loss, terms = ce_dice_loss(logits, labeled["label"], self.params.ce_weight, self.params.dice_weight)
        return {"loss": loss, **terms}
