"""``supervised``: CE + Dice on labeled data only.

The lower bound of every semi-supervised table (few labeled cases) and, with
``split.all_labeled``, its upper bound (every training case labeled).
"""

from __future__ import annotations


from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class SupervisedParams(SupervisedLossParams):
    pass


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
        loss, terms = supervised_loss(logits, labeled["label"], self.params)  # type: ignore[arg-type]
        return {"loss": loss, **terms}
