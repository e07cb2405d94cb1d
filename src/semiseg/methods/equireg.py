"""``equireg``: Equivariance Regularization (Schölin 2020, Sec. 5.2, Eq. 6-11).

Per step:

1. weak augmentation (Table 4: flips, translations) of the labeled and the unlabeled batch,
   drawn per sample and applied on the model's device (:mod:`semiseg.data.replay`);
2. a strong transform ``T`` (Table 5) drawn per unlabeled sample; ``x_hat = T(x)``;
3. one forward pass of ``[x_l, x_u, x_hat]`` in training mode, as the authors' code does;
   ``p_frozen(x_u)`` is the softmax of the ``x_u`` part under stop-gradient (the current weights,
   not an EMA copy);
4. loss = CE(x_l, y) (Eq. 7) + lambda * KL(T(p_frozen(x_u)) || p(x_hat)) (Eq. 9-10), the KL
   averaged over the pixels that ``T`` keeps inside the image (created pixels carry no loss).

``labeled_in_unsupervised`` adds the labeled images to the equivariance term (the thesis trains
such models at 100% labels and reports gains). With no unlabeled stream (or ``weight: 0``) the
method is the paper's supervised baseline with the same weak augmentation. The paper's CE-only
supervised loss is the default (``ce_weight 1, dice_weight 0``); it selects models on the lowest
validation cross-entropy (``eval.select_by: loss``, set in the presets).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from semiseg.data.replay import AugmentationPolicy, ReplayableTransform, draw_transform, strong_policy, weak_policy
from semiseg.losses import kl_divergence
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class EquiRegParams(SupervisedLossParams):
    ce_weight: float = 1.0
    dice_weight: float = 0.0
    weight: float = 1.0
    """lambda of Eq. 10."""
    rampup: Literal["none", "linear", "sigmoid", "cosine"] = "none"
    rampup_fraction: float = 0.0
    weak_augmentation: bool = True
    """Weakly augment both streams first (Fig. 4); turn off when the data pipeline already augments."""
    weak: AugmentationPolicy = Field(default_factory=weak_policy)
    strong: AugmentationPolicy = Field(default_factory=strong_policy)
    labeled_in_unsupervised: bool = False


def channels_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format of ``like`` (warps return contiguous tensors; CPU convolutions prefer channels_last)."""
    if like.ndim == 4 and like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    if like.ndim == 5 and like.is_contiguous(memory_format=torch.channels_last_3d) and not like.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


@register_method
class EquiReg(Method):
    name = "equireg"
    Params = EquiRegParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: EquiRegParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def generator(self) -> torch.Generator:
        """A CPU generator seeded from torch's global RNG (saved in checkpoints, so resumes replay exactly)."""
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))

    def draw(self, policy: AugmentationPolicy, x: torch.Tensor, g: torch.Generator) -> ReplayableTransform:
        return draw_transform(policy, x.shape[0], tuple(x.shape[2:]), g, x.device)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: EquiRegParams = self.params  # type: ignore[assignment]
        g = self.generator()
        x_l, y_l = labeled["image"], labeled["label"]
        if p.weak_augmentation:
            t = self.draw(p.weak, x_l, g)
            x_l, y_l = t.apply_image(x_l), t.apply_label(y_l[:, None])[:, 0]
        w = self.ramped(p.weight, p.rampup, step)
        parts = [x_l]
        strong: ReplayableTransform | None = None
        if (unlabeled is not None or p.labeled_in_unsupervised) and p.weight > 0:
            x_u = unlabeled["image"] if unlabeled is not None else x_l[:0]
            if p.weak_augmentation and x_u.shape[0]:
                x_u = self.draw(p.weak, x_u, g).apply_image(x_u)
            parts.append(x_u)
            originals = torch.cat([x_l, x_u]) if p.labeled_in_unsupervised else x_u
            strong = self.draw(p.strong, originals, g)
            parts.append(strong.apply_image(originals))
        n_l = x_l.shape[0]
        logits = self.network(channels_like(torch.cat(parts), labeled["image"]))
        loss, terms = supervised_loss(logits[:n_l], y_l, p)
        out: dict[str, torch.Tensor] = dict(terms)
        if strong is not None:
            n_o = strong.batch_size
            ori = logits[: n_l + parts[1].shape[0]] if p.labeled_in_unsupervised else logits[n_l : n_l + n_o]
            aug = logits[-n_o:]
            with torch.no_grad():
                target = strong.apply_probabilities(torch.softmax(ori.detach().float(), dim=1))
            er = kl_divergence(target, aug, strong.valid[:, 0])
            loss = loss + w * er
            out.update(equivariance=er.detach(), equivariance_weight=torch.tensor(w),
                       valid_fraction=strong.valid.float().mean())
        return {"loss": loss, **out}
