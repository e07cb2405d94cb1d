"""``mcnet``: mutual consistency learning (Wu et al., MICCAI 2021 MC-Net; MedIA 2022 MC-Net+).

One encoder and several decoders that differ only in their upsampling (``decoders``: MC-Net's transposed
convolution and trilinear interpolation; MC-Net+ adds nearest-neighbour), registered as ``unet_mcnet`` /
``vnet_mcnet`` (``extra_decoders``). Every decoder is supervised on labeled images (``ce_weight`` CE +
``dice_weight`` Dice: the LA code's ``lamda`` = 0.5 Dice; the 2D code's ``lamda`` = 1 on a Dice loss written
``1 - I/U`` without the factor 2, the gradient of 0.5 of the usual Dice loss). On every image each decoder's
probabilities are pulled toward every other decoder's soft pseudo-label (Eq. 3 of MC-Net+, :func:`binary_sharpen`:
each class channel sharpened on its own, ``p^(1/T) / (p^(1/T) + (1 - p)^(1/T))``, T = 0.1, not renormalised over
the classes -- with two classes this equals MixMatch's class-normalised sharpening, with ACDC's four it does
not) with the MSE: ``L_mc = sum_{i != j} MSE(p_j, sharpen(p_i))`` weighted by ``consistency`` with the
sigmoid ramp-up: 0.1 over the run in the 2D code (the default), 1.0 over 40 x 150 iterations in the LA code
(``la3d_mcnet``, which also scores the foreground's Dice with plain sums, the code's ``Binary_dice_loss``).
Prediction uses the first decoder.

Gradient: the MC-Net / MC-Net+ code (``train_mcnet_2d.py``, ``train_mcnet_3d.py``; PyMIC's ``SSLMCNet`` alike)
copies the probabilities and the pseudo-labels into fresh tensors without detaching them, so both sides of every
MSE term carry gradient; the papers do not say otherwise, so that is the default. ``detach_targets: true``
stops the gradient at the pseudo-labels (a plain consistency-to-target reading of the equation).
"""

from __future__ import annotations

from typing import Literal

import torch

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
    detach_targets: bool = False
    """Stop the gradient at the sharpened pseudo-labels (the code lets it through both sides)."""
    consistency: float = 0.1
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0


def binary_sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """MC-Net's sharpening, each channel on its own: ``p^(1/T) / (p^(1/T) + (1 - p)^(1/T))``.

    The class-normalised :func:`~semiseg.methods.mixup.sharpen` of the two-way distribution ``(p, 1 - p)``
    (computed in log space: no underflow for small ``T``).
    """
    return sharpen(torch.stack([probs, 1 - probs]), temperature, dim=0)[0]


def mutual_consistency(logits: list[torch.Tensor], temperature: float, detach_targets: bool = False) -> torch.Tensor:
    """``sum_{i != j} mean((softmax(l_j) - binary_sharpen(softmax(l_i)))^2)``, the mean over every element.

    ``detach_targets``: no gradient through the pseudo-labels (the MC-Net code lets it through).
    """
    probs = [torch.softmax(x.float(), 1) for x in logits]
    targets = [binary_sharpen(p.detach() if detach_targets else p, temperature) for p in probs]
    total = logits[0].new_zeros((), dtype=torch.float32)
    for i, t in enumerate(targets):
        for j, p in enumerate(probs):
            if i != j:
                total = total + ((p - t) ** 2).mean()
    return total


@register_method
class MCNet(Method):
    name = "mcnet"
    Params = MCNetParams
    revision = 1  # December 2026: per-channel sharpening and gradient through the pseudo-labels, as the code has them
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
        mc = mutual_consistency(outs, p.temperature, p.detach_targets)
        w = self.ramped(p.consistency, p.consistency_rampup, step)
        return {"loss": sup + w * mc, "sup": sup.detach(), "mutual": mc.detach(), "consistency_weight": torch.tensor(w)}
