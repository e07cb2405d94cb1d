"""``adversarial``: deep adversarial network (Zhang et al., MICCAI 2017, "DAN").

A segmentation network S and an evaluation network E (the discriminator). E sees an image
concatenated with S's probability map and tells segmentations of labeled images (target 1) from
those of unlabeled images (target 0). S learns from the labeled ground truth (CE + Dice) and,
on unlabeled images, to make E answer "labeled" (``adv_weight * BCE(E(x_u, S(x_u)), 1)``, ramped
up): unlabeled segmentations are pushed to look like the segmentations S makes where it is
supervised. S and E have their own optimizers (built from the run's ``optim`` config); each step
updates S first, then E on the detached maps.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork, conv_nd


class AdversarialParams(SupervisedLossParams):
    adv_weight: float = 0.01
    adv_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 0.3
    disc_features: list[int] = [32, 64, 128, 256]


class ImageDiscriminator(nn.Module):
    """E: strided convolutions (kernel 4, stride 2, LeakyReLU 0.2) on [image, probabilities],
    global average pooling and a linear layer -> one logit per image (2D or 3D)."""

    def __init__(self, spatial_dims: int, in_channels: int, features: list[int]) -> None:
        super().__init__()
        conv = conv_nd(spatial_dims)
        layers: list[nn.Module] = []
        cin = in_channels
        for f in features:
            layers += [conv(cin, f, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = f
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 1)

    def forward(self, image: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        h = self.features(torch.cat([image, probs], dim=1))
        return self.fc(h.flatten(2).mean(2)).squeeze(1)


@register_method
class Adversarial(Method):
    name = "adversarial"
    Params = AdversarialParams
    uses_unlabeled = True
    manual_optimization = True

    def __init__(self, ctx: MethodContext, params: AdversarialParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.discriminator = ImageDiscriminator(ctx.spatial_dims, ctx.in_channels + ctx.num_classes, params.disc_features)

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.network.parameters()), "discriminator": list(self.discriminator.parameters())}

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: AdversarialParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        logits = self.network(x)
        probs = torch.softmax(logits, dim=1)
        sup, terms = supervised_loss(logits[:n_l], labeled["label"], p)
        out: dict[str, torch.Tensor] = dict(terms)
        loss_s = sup
        if unlabeled is not None:
            d_u = self.discriminator(x[n_l:], probs[n_l:])
            adv = F.binary_cross_entropy_with_logits(d_u, torch.ones_like(d_u))
            w = self.ramped(p.adv_weight, p.adv_rampup, step)
            loss_s = loss_s + w * adv
            out.update(adv=adv.detach(), adv_weight=torch.tensor(w))
        self.optimize(loss_s, "main")
        if unlabeled is not None:
            self.discriminator.zero_grad(set_to_none=True)  # drop the gradients S's loss left in E
            d = self.discriminator(x, probs.detach())
            target = torch.cat([torch.ones(n_l), torch.zeros(x.shape[0] - n_l)]).to(d)
            loss_d = F.binary_cross_entropy_with_logits(d, target)
            self.optimize(loss_d, "discriminator")
            out.update(disc=loss_d.detach(), disc_acc=((d > 0).float() == target).float().mean())
        return {"loss": loss_s.detach(), **out}
