"""``mcnet``: mutual consistency learning (Wu et al., MICCAI 2021 MC-Net; MedIA 2022 MC-Net+).

One encoder and several decoders that differ only in their upsampling (``decoders``: MC-Net's transposed
convolution and trilinear interpolation; MC-Net+ adds nearest-neighbour), registered as ``unet_mcnet`` /
``vnet_mcnet`` (``extra_decoders``). Every decoder is supervised on labeled images (``ce_weight`` CE +
``dice_weight`` Dice; the code's ``lamda`` = 0.5 Dice on the LA data). On every image each decoder's
probabilities are pulled toward every other decoder's sharpened probabilities (Eq. 3 of MC-Net+,
``p^(1/T) / sum_j p_j^(1/T)``, T = 0.1, :func:`semiseg.methods.mixup.sharpen`; no gradient through the
targets) with the MSE: ``L_mc = sum_{i != j} MSE(p_j, sharpen(p_i))`` weighted by ``consistency`` with the
sigmoid ramp-up: 0.1 over the run in the 2D code (the default), 1.0 over 40 x 150 iterations in the LA code
(``la3d_mcnet``, which also scores the foreground's Dice with plain sums, the code's ``Binary_dice_loss``).
Prediction uses the first decoder.
"""

from __future__ import annotations

from typing import Literal

import torch

from semiseg.losses import softmax_mse
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.mixup import sharpen
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class MCNetParams(SupervisedLossParams):
    ce_weight: float = 0.0
    dice_weight: float = 0.5
    decoders: list[str] = ["transpose", "interpolate"]
    """Upsampling of each decoder (MC-Net+: add ``interpolate_nearest``)."""
    temperature: float = 0.1
    consistency: float = 0.1
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0


def mutual_consistency(logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """``sum_{i != j} mean((softmax(l_j) - sharpen(softmax(l_i)))^2)`` with the sharpened targets detached."""
    probs = [torch.softmax(x.float(), 1) for x in logits]
    targets = [sharpen(p.detach(), temperature) for p in probs]
    total = logits[0].new_zeros(())
    for i, t in enumerate(targets):
        for j, x in enumerate(logits):
            if i != j:
                total = total + softmax_mse(x.float(), t)
    return total


@register_method
class MCNet(Method):
    name = "mcnet"
    Params = MCNetParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: MCNetParams) -> None:
        super().__init__(ctx, params)
        if len(params.decoders) < 2:
            raise ValueError(f"mcnet needs at least two decoders; got {params.decoders}")
        self.network = ctx.network_factory(upsampling=params.decoders[0], extra_decoders=params.decoders[1:])

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: MCNetParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        heads = self.network.forward_heads(x)
        outs = [heads["seg"]] + [heads[f"decoder{i}"] for i in range(2, len(p.decoders) + 1)]
        sup = outs[0].new_zeros(())
        for o in outs:
            s, _ = supervised_loss(o[:n_l], labeled["label"], p)
            sup = sup + s
        mc = mutual_consistency(outs, p.temperature)
        w = self.ramped(p.consistency, p.consistency_rampup, step)
        return {"loss": sup + w * mc, "sup": sup.detach(), "mutual": mc.detach(), "consistency_weight": torch.tensor(w)}
