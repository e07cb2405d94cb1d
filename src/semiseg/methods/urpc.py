"""``urpc``: uncertainty rectified pyramid consistency (Luo et al., MICCAI 2021; MedIA 2022).

A network with deep-supervision heads on its decoder stages (``unet_urpc`` / ``vnet_urpc``,
``deep_supervision``: each head sees a perturbed feature map during training, as in the paper's code), every
output upsampled to the input size. Labeled images: the mean over the S outputs of 0.5 CE + 0.5 Dice (the
code's ``(sum CE + sum Dice) / 2S`` in its 2D and 3D scripts; ``ce_weight`` / ``dice_weight``; until December
2026 both were 1 here, twice the code's supervised weight against the consistency). Unlabeled images: with the
average prediction ``p_bar`` of the pyramid and, per output s, the KL-based uncertainty
``D_s = sum_c p_bar log(p_bar / p_s)`` (Eq. 5-6 of the MedIA paper, the code's ``variance``),

``L_s = mean(w_s * (p_bar - p_s)^2) / mean(w_s) + mean(D_s)``,  ``w_s = exp(-D_s)``  (Eq. 7),

averaged over the outputs and weighted by ``consistency`` = 0.1 with the sigmoid ramp-up (the code ramps over
200 x 150 iterations of 30000: ``rampup_fraction`` 1.0). Prediction uses the finest output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class URPCParams(SupervisedLossParams):
    ce_weight: float = 0.5
    dice_weight: float = 0.5
    consistency: float = 0.1
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0


def uncertainty_rectified_consistency(logits: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5-7 over the pyramid's outputs: (the mean rectified consistency, the mean KL uncertainty).

    ``D_s = sum_c p_bar (log p_bar - log p_s)`` is computed from log-softmax outputs (``log p_bar`` as a
    log-sum-exp of them), as the reference code's ``KLDivLoss(log p_s, p_bar)`` does, so a class whose softmax
    probability underflows to 0 gives a finite KL and gradient (a ratio ``p_bar / p_s`` gives inf there,
    and the run's weights turn non-finite: LA, 8 labeled, step 1043).
    """
    logs = [torch.log_softmax(x.float(), dim=1) for x in logits]
    log_mean = torch.logsumexp(torch.stack(logs), dim=0) - math.log(len(logs))
    mean = log_mean.exp()
    losses, kls = [], []
    for log_p in logs:
        kl = torch.sum(mean * (log_mean - log_p), dim=1, keepdim=True)
        w = torch.exp(-kl)
        dist = (mean - log_p.exp()) ** 2
        losses.append(torch.mean(dist * w) / (torch.mean(w) + 1e-8) + torch.mean(kl))
        kls.append(kl.mean())
    return torch.stack(losses).mean(), torch.stack(kls).mean().detach()


@register_method
class URPC(Method):
    name = "urpc"
    Params = URPCParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: URPCParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory(deep_supervision=True)
        if not len(self.network.pyramid_heads):  # type: ignore[arg-type]
            raise ValueError("urpc needs a network with at least two decoder stages")

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: URPCParams = self.params  # type: ignore[assignment]
        x_l = labeled["image"]
        n_l = x_l.shape[0]
        x = x_l if unlabeled is None else torch.cat([x_l, unlabeled["image"]])
        heads = self.network.forward_heads(x)
        outs = [heads["seg"]] + [v for k, v in heads.items() if k.startswith("pyramid")]
        sup = torch.stack([supervised_loss(o[:n_l], labeled["label"], p)[0] for o in outs]).mean()
        out = {"sup": sup.detach()}
        loss = sup
        if unlabeled is not None:
            cons, kl = uncertainty_rectified_consistency([o[n_l:] for o in outs])
            w = self.ramped(p.consistency, p.consistency_rampup, step)
            loss = loss + w * cons
            out.update(consistency=cons.detach(), uncertainty=kl, consistency_weight=torch.tensor(w))
        return {"loss": loss, **out}
