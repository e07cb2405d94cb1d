"""``sassnet``: shape-aware semi-supervised segmentation (Li, Zhang, He; MICCAI 2020).

A network with a segmentation head and a signed-distance head (:mod:`semiseg.methods.sdf`). Labeled images:
``Dice(seg, y) + beta * MSE(sdf_head, SDF(y))`` (beta = 0.3). A discriminator D (strided convolutions on the
image and the predicted SDF, the DAN discriminator of :mod:`semiseg.methods.adversarial` with SASSNet's
64-128-256-512 channels; a convolution of the concatenation equals SASSNet's sum of a convolution of each)
tells SDFs of labeled images (real) from those of unlabeled ones (fake); the network learns to make
unlabeled SDFs look real, ``w(t) * BCE(D(x_u, sdf_u), real)`` with w = 0.01 and the sigmoid ramp-up over the
run (the code's 40 x 150 iterations). D has its own Adam (1e-4, betas (0.9, 0.99), the code's) and is trained
after the network on the step's detached SDFs (the code recomputes them in evaluation mode).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from semiseg.methods.adversarial import ImageDiscriminator
from semiseg.methods.base import Method, MethodContext, constant_adam, joint_batch
from semiseg.methods.registry import register_method
from semiseg.methods.sdf import DualTaskParams, dual_task_network, dual_task_supervised
from semiseg.networks.base import SegmentationNetwork


class SASSNetParams(DualTaskParams):
    adv_weight: float = 0.01
    adv_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0
    disc_features: list[int] = [64, 128, 256, 512]
    disc_lr: float = 1e-4
    disc_betas: tuple[float, float] = (0.9, 0.99)


@register_method
class SASSNet(Method):
    name = "sassnet"
    Params = SASSNetParams
    uses_unlabeled = True
    manual_optimization = True

    def __init__(self, ctx: MethodContext, params: SASSNetParams) -> None:
        super().__init__(ctx, params)
        self.network = dual_task_network(ctx.network_factory)
        self.discriminator = ImageDiscriminator(ctx.spatial_dims, ctx.in_channels + max(ctx.num_classes - 1, 1),
                                                params.disc_features)

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.network.parameters()), "discriminator": list(self.discriminator.parameters())}

    def optimizer_overrides(self):  # type: ignore[override]
        p: SASSNetParams = self.params  # type: ignore[assignment]
        return {"discriminator": constant_adam(p.disc_lr, p.disc_betas)}

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: SASSNetParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        heads = self.network.forward_heads(x)
        loss, out = dual_task_supervised(heads, labeled["label"], p, self.ctx.num_classes)
        sdf = heads["sdf"]
        if unlabeled is not None:
            self.discriminator.requires_grad_(False)  # the network's step sends no gradient into D
            d_u = self.discriminator(x[n_l:], sdf[n_l:])
            self.discriminator.requires_grad_(True)
            adv = F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u))
            w = self.ramped(p.adv_weight, p.adv_rampup, step)
            loss = loss + w * adv
            out.update(adv=adv.detach(), adv_weight=torch.tensor(w))
        self.optimize(loss, "main")
        if unlabeled is not None:
            d = self.discriminator(x, sdf.detach())
            target = torch.cat([torch.ones(n_l), torch.zeros(x.shape[0] - n_l)]).to(d)
            loss_d = F.binary_cross_entropy_with_logits(d, target)
            self.optimize(loss_d, "discriminator")
            out.update(disc=loss_d.detach(), disc_acc=((d > 0).float() == target).float().mean())
        return {"loss": loss.detach(), **out}
