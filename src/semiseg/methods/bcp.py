"""``bcp``: bidirectional copy-paste (Bai, Chen, Li, Shen, Wang; CVPR 2023).

Two stages in one run (``pretrain_iterations`` steps, then the rest):

1. **Pre-training** on labeled images only: labeled image ``a`` receives a cuboid of labeled image ``b``
   through one zero-centred mask ``M`` (:mod:`semiseg.methods.copy_paste`), ``x = a M + b (1 - M)``, with the
   labels mixed the same way; loss ``(CE + Dice) / 2``.
2. **Self-training**: a mean teacher (EMA 0.99) initialised from the pre-trained student (copied at the
   switch, as the paper loads the pre-trained weights into both), trained by a new optimizer (the engine
   clears the optimizer state at the switch, as the paper's code builds a new SGD). The labeled and the unlabeled batch are
   each split in halves a and b, and the two directions use different images through the same mask
   (Eq. 2-3, ``X_in = X^l_j M + X^u_p (1 - M)``, ``X_out = X^u_q M + X^l_i (1 - M)``; the paper's code):

   ``X_in  = x_l,a M + x_u,a (1 - M)`` (labeled outside, unlabeled inside),
   ``X_out = x_u,b M + x_l,b (1 - M)`` (unlabeled outside, labeled inside),

   supervised by the ground truth and the teacher's pseudo-labels (argmax of its prediction on the
   unlabeled image, reduced to each class's largest connected component as the paper's code does) mixed
   through the same mask (Eq. 4-5). Each source region is scored on its own (:func:`mix_loss`, the
   paper's code): the region that comes from the unlabeled image weighs ``unlabeled_weight`` (alpha = 0.5,
   Eq. 6-8), the labeled one 1, in both the CE and the Dice term. The Dice is the code's: per class over the
   batch with squared sums for ACDC (``DiceLoss``), per volume and class with plain sums for LA
   (``mask_DiceLoss``; ``dice_per_sample``, ``dice_squared`` -- the la3d preset sets them).

so the student sees as many mixed images as there are labeled ones, each image in one of them. The mask covers
``mask_ratio`` = 2/3 of every edge at a random position; ``X_in[i]`` and ``X_out[i]`` share mask ``i`` (the code
draws one position per batch; one per pair varies more). With one labeled or unlabeled image the pair is mixed
both ways. Validation and prediction use the student (the paper evaluates the student). Without an unlabeled
batch the self-training stage is the pre-training loss.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from semiseg.losses import cross_entropy, dice_loss
from semiseg.methods.base import MethodParams, StudentTeacherMethod
from semiseg.methods.copy_paste import cuboid_mask, mix
from semiseg.methods.ema import ema_update
from semiseg.methods.registry import register_method


class BCPParams(MethodParams):
    pretrain_iterations: int = 0
    """Steps of labeled-only copy-paste pre-training before self-training (0: start self-training at once,
    e.g. after ``method.init_from`` of a pre-trained run)."""
    mask_ratio: float = 2.0 / 3.0
    unlabeled_weight: float = 0.5
    """alpha of Eq. 6-8: the weight of the voxels that come from the unlabeled image."""
    ema_decay: float = 0.99
    largest_component: bool = True
    """Reduce the teacher's pseudo-labels to each class's largest connected component (the paper's code)."""
    evaluate: Literal["student", "teacher"] = "student"
    dice_squared: bool = True
    """Dice denominators sum p^2 and g^2 (the ACDC code's ``DiceLoss``) or p and g (the LA code's
    ``mask_DiceLoss``)."""
    dice_per_sample: bool = False
    """One Dice per image and class, averaged (the LA code's ``mask_DiceLoss``), or one per class over the
    batch (the ACDC code's ``DiceLoss``)."""
    pretrain_regions: bool = True
    """Pre-training scores each source region on its own (the ACDC code's ``mix_loss``, weights 1 and 1) or
    the mixed label as one image (the LA code: ``(CE + Dice) / 2`` of the whole mixed volume)."""


def mix_loss(logits: torch.Tensor, outside: torch.Tensor, inside: torch.Tensor, mask: torch.Tensor,
             outside_weight: float, inside_weight: float, squared: bool = True,
             per_sample: bool = False) -> torch.Tensor:
    """BCP's ``mix_loss``: ``(Dice + CE) / 2`` where each source region is scored on its own and weighted:
    ``outside`` labels where ``mask`` is 1 (outside the cuboid), ``inside`` labels where it is 0; the Dice of
    each region over all classes (background included; ``squared`` and ``per_sample`` as in
    :func:`~semiseg.losses.dice_loss`) and the CE as a mean over the region's voxels."""
    probs = torch.softmax(logits, dim=1)
    inner = 1.0 - mask
    kw = {"squared": squared, "per_sample": per_sample}
    dice = (outside_weight * dice_loss(probs, outside, mask=mask, **kw)
            + inside_weight * dice_loss(probs, inside, mask=inner, **kw))
    ce = outside_weight * cross_entropy(logits, outside, mask) + inside_weight * cross_entropy(logits, inside, inner)
    return (dice + ce) / 2


def pseudo_labels(probs: torch.Tensor, largest_component: bool) -> torch.Tensor:
    """Argmax labels of (N, K, *S) probabilities, optionally each class's largest connected component only."""
    labels = probs.argmax(1)
    if not largest_component:
        return labels
    from semiseg.evaluation.postprocess import largest_component_per_class

    arr = labels.cpu().numpy()
    out = np.stack([largest_component_per_class(a, probs.shape[1]) for a in arr])
    return torch.from_numpy(out).to(labels.device, labels.dtype)


@register_method
class BCP(StudentTeacherMethod):
    name = "bcp"
    Params = BCPParams
    uses_unlabeled = True

    def mask(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return cuboid_mask(n, x.shape[2:], self.params.mask_ratio, "random", x.device)  # type: ignore[attr-defined]

    def loss(self, logits: torch.Tensor, outside: torch.Tensor, inside: torch.Tensor, mask: torch.Tensor,
             outside_weight: float, inside_weight: float) -> torch.Tensor:
        """:func:`mix_loss` with this run's Dice form."""
        p: BCPParams = self.params  # type: ignore[assignment]
        return mix_loss(logits, outside, inside, mask, outside_weight, inside_weight, p.dice_squared,
                        p.dice_per_sample)

    def pretrain_step(self, labeled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Copy-paste between the two halves of the labeled batch (image i gets a cuboid of image i + n/2)."""
        x, y = labeled["image"], labeled["label"].long()
        half = x.shape[0] // 2
        if half == 0:  # one labeled image: plain supervision
            loss = self.whole_image_loss(self.network(x).float(), y)
            return {"loss": loss, "pretrain": loss.detach()}
        m = self.mask(x, half)
        xa, xb, ya, yb = x[:half], x[half : 2 * half], y[:half], y[half : 2 * half]
        logits = self.network(mix(xa, xb, m)).float()
        if self.params.pretrain_regions:  # type: ignore[attr-defined]
            loss = self.loss(logits, ya, yb, m, 1.0, 1.0)
        else:
            loss = self.whole_image_loss(logits, mix(ya, yb, m))
        return {"loss": loss, "pretrain": loss.detach()}

    def whole_image_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` with one region covering every voxel: ``(CE + Dice) / 2`` of the whole image."""
        return self.loss(logits, labels, labels, torch.ones_like(labels, dtype=logits.dtype), 1.0, 0.0)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: BCPParams = self.params  # type: ignore[assignment]
        if step < p.pretrain_iterations or unlabeled is None:
            return self.pretrain_step(labeled)
        x_l, y_l, x_u = labeled["image"], labeled["label"].long(), unlabeled["image"]
        n = min(x_l.shape[0], x_u.shape[0])
        h = max(n // 2, 1)
        a_, b_ = slice(0, h), (slice(h, 2 * h) if n > 1 else slice(0, 1))  # halves a and b (one pair: both ways)
        with torch.no_grad():
            plab = pseudo_labels(torch.softmax(self.teacher(x_u[: 2 * h]).float(), 1), p.largest_component)
        plab_a, plab_b = plab[a_], plab[b_]
        m = self.mask(x_l, h)
        x_in, x_out = mix(x_l[a_], x_u[a_], m), mix(x_u[b_], x_l[b_], m)  # Eq. 2-3: labeled / unlabeled outside
        logits = self.network(torch.cat([x_in, x_out])).float()
        w = p.unlabeled_weight
        l_in = self.loss(logits[:h], y_l[a_], plab_a, m, 1.0, w)  # Eq. 4, 6: ground truth outside, pseudo-labels inside
        l_out = self.loss(logits[h:], plab_b, y_l[b_], m, w, 1.0)  # Eq. 5, 7: pseudo-labels outside, ground truth inside
        loss = l_in + l_out
        return {"loss": loss, "inward": l_in.detach(), "outward": l_out.detach()}

    def restarts_optimizers_after(self, step: int) -> bool:
        return step + 1 == self.params.pretrain_iterations  # type: ignore[attr-defined]

    def on_after_step(self, step: int) -> None:
        p: BCPParams = self.params  # type: ignore[assignment]
        if step + 1 == p.pretrain_iterations:  # the switch: the teacher starts as the pre-trained student
            self.teacher.load_state_dict(self.network.state_dict())
        elif step + 1 > p.pretrain_iterations:
            ema_update(self.teacher, self.network, p.ema_decay)
