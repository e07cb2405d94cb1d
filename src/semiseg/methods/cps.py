"""``cps``: cross pseudo supervision (Chen et al., CVPR 2021).

Two networks of the same architecture, initialised differently, each supervised on labeled data
(CE + Dice) and each trained on the other's hard pseudo-labels (argmax, no gradient) with CE:
``L = L_sup(A) + L_sup(B) + w(t) * (CE(p_A, argmax p_B) + CE(p_B, argmax p_A))``, on the unlabeled
and the labeled images (``cps_on: all``, as in the paper) or the unlabeled only, ``w`` ramped up
with the sigmoid schedule. Validation and prediction use network A.

``method.init_from`` loads the pre-trained weights into network A only: two identical networks
would have nothing to teach each other.
"""

from __future__ import annotations

from typing import Literal

import torch

from semiseg.losses import cross_entropy
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class CPSParams(SupervisedLossParams):
    cps_weight: float = 0.1
    cps_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 0.5
    cps_on: Literal["all", "unlabeled"] = "all"


@register_method
class CPS(Method):
    name = "cps"
    Params = CPSParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: CPSParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.network_b = ctx.network_factory()

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.network.parameters()) + list(self.network_b.parameters())}

    def load_initial_weights(self, state):  # type: ignore[override]
        self.network.load_state_dict(state)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: CPSParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        la, lb = self.network(x), self.network_b(x)
        sup_a, _ = supervised_loss(la[:n_l], labeled["label"], p)
        sup_b, _ = supervised_loss(lb[:n_l], labeled["label"], p)
        first = 0 if p.cps_on == "all" else n_l
        if first >= x.shape[0]:  # no unlabeled batch and cps only on unlabeled images
            loss = sup_a + sup_b
            return {"loss": loss, "sup_a": sup_a.detach(), "sup_b": sup_b.detach()}
        pseudo_a = la[first:].detach().argmax(1)
        pseudo_b = lb[first:].detach().argmax(1)
        cps = cross_entropy(la[first:], pseudo_b) + cross_entropy(lb[first:], pseudo_a)
        w = self.ramped(p.cps_weight, p.cps_rampup, step)
        loss = sup_a + sup_b + w * cps
        return {"loss": loss, "sup_a": sup_a.detach(), "sup_b": sup_b.detach(), "cps": cps.detach(), "cps_weight": torch.tensor(w)}
