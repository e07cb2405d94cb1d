"""``ssnet``: smoothness and class separation (Wu, Wu, Wu, Ge, Cai; MICCAI 2022 "SS-Net").

- **Smoothness** (VAT, Miyato et al.): for every image of the batch, a random direction (uniform in
  [-0.5, 0.5], l2-normalised per image) is turned into the adversarial one by one power iteration: the
  gradient, with respect to the direction, of the distance between the prediction on ``x + xi d`` (xi = 10)
  and the prediction on ``x`` (no gradient), normalised per image. The loss is that distance at
  ``x + magnitude d`` (magnitude 6 in 2D, 10 in 3D: the code's defaults). The distance is a soft Dice loss
  between the two probability maps, as each code has it (``vat_distance``): in 2D its ``softDiceLoss``, one
  ``1 - 2 sum(p q) / (sum p^2 + sum q^2)`` per class averaged over the classes (``class_mean``); in 3D its
  ``Binary_dice_loss`` over the whole tensors, ``1 - 2 sum(p q) / (sum p + sum q)`` (``whole``). Batch-norm
  statistics are not updated by these passes. The target is the training pass's prediction, detached (the
  code predicts it in a separate no-gradient pass of the same network, a second dropout sample).
- **Class separation**: the last decoder features go through a projection and a prediction head (two
  linear layers with batch norm, 32 wide). A memory keeps, per foreground class, up to 32 projected
  features of labeled voxels the network predicts correctly, ranked by a learned selector (the highest
  ranked; the code sorts in ascending order, which keeps the lowest). Every labeled voxel (its label) and
  every unlabeled voxel (its predicted class) is pulled toward its class's memory: the mean cosine distance,
  weighted by learned per-feature and per-memory-entry attention (sigmoid of a selector, rescaled to mean 1),
  averaged over the classes.

Loss (the code's): ``Dice_labeled + w(t) (L_vat + 0.1 (L_sep_labeled + L_sep_unlabeled))`` with ``w`` =
``consistency`` (1 in 3D, 0.1 in 2D) and the sigmoid ramp-up; ``Dice_labeled`` is the 2D code's Dice over every
class and the LA code's foreground ``Binary_dice_loss`` with plain sums (``la3d_ssnet``: ``dice_background`` and
``dice_squared`` false). The memory is part of the method's state
(saved and resumed).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.losses import dice_loss
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.methods.voxel_features import mlp
from semiseg.networks.base import SegmentationNetwork


class SSNetParams(SupervisedLossParams):
    ce_weight: float = 0.0
    dice_weight: float = 1.0
    xi: float = 10.0
    magnitude: float | None = None
    """VAT perturbation norm per image (None: 6 in 2D, 10 in 3D, the code's defaults)."""
    power_iterations: int = 1
    vat_distance: Literal["class_mean", "whole"] | None = None
    """Soft Dice between the perturbed and the clean prediction: per class, averaged (the 2D code's
    ``softDiceLoss``), or over the whole tensors with plain sums (the LA code's ``Binary_dice_loss``); None: the
    code's choice for the data's dimensions."""
    feature_dim: int = 32
    memory_size: int = 32
    separation_weight: float = 0.1
    consistency: float | None = None
    """None: 0.1 in 2D, 1.0 in 3D (the code's defaults)."""
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 1.0


def soft_dice_distance(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SS-Net's ``Binary_dice_loss``: ``1 - (2 sum(p q) + eps) / (sum p + sum q + eps)`` over the whole tensors."""
    return 1 - (2 * torch.sum(p * q) + eps) / (torch.sum(p) + torch.sum(q) + eps)


def vat_distance(p: torch.Tensor, q: torch.Tensor, kind: Literal["class_mean", "whole"]) -> torch.Tensor:
    """SS-Net's VAT distance between probability maps: ``class_mean`` is the 2D code's ``softDiceLoss`` (squared
    denominators, smoothing 1e-10, averaged over the classes), ``whole`` its LA code's ``Binary_dice_loss``."""
    if kind == "whole":
        return soft_dice_distance(p, q)
    return dice_loss(p, q, include_background=True, squared=True, eps=1e-10)


def per_image_unit(d: torch.Tensor) -> torch.Tensor:
    """Each image's tensor divided by its l2 norm."""
    return d / (d.flatten(1).norm(dim=1).view(-1, *([1] * (d.ndim - 1))) + 1e-8)


@contextlib.contextmanager
def frozen_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Batch norm uses batch statistics but does not update its running ones (VAT's extra passes)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, s in zip(norms, saved):
            m.track_running_stats = s


def separation_loss(features: torch.Tensor, classes: torch.Tensor, memory: torch.Tensor, counts: torch.Tensor,
                    feature_selectors: nn.ModuleList, memory_selectors: nn.ModuleList) -> torch.Tensor:
    """SS-Net's class-to-memory loss: per class with >= 2 features and >= 2 memory entries, the mean cosine
    distance between them, each weighted by the sigmoid of its class selector rescaled to mean 1; summed over
    classes and divided by their number."""
    total = features.new_zeros(())
    k = memory.shape[0]
    for c in range(k):
        f = features[classes == c]
        m = memory[c, : int(counts[c])]
        if f.shape[0] < 2 or m.shape[0] < 2:
            continue
        dist = 1 - F.normalize(f, dim=1) @ F.normalize(m, dim=1).t()
        wf = torch.sigmoid(feature_selectors[c](f.detach()))
        wm = torch.sigmoid(memory_selectors[c](m)).t()
        dist = dist * (wf * wf.shape[0] / wf.sum(0)) * (wm * wm.shape[1] / wm.sum(1, keepdim=True))
        total = total + dist.mean()
    return total / k


def selector(width: int) -> nn.Sequential:
    """Linear - BatchNorm - LeakyReLU(0.2) - Linear(1): one attention score per feature vector."""
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.LeakyReLU(0.2, inplace=True), nn.Linear(width, 1))


@register_method
class SSNet(Method):
    name = "ssnet"
    Params = SSNetParams
    revision = 1  # December 2026: the 2D VAT distance is the 2D code's class-averaged Dice (was the LA code's)
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: SSNetParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        width = self.network.feature_info[self.network.num_layers].channels
        d, k = params.feature_dim, ctx.num_classes
        self.projection = mlp(width, d, d)
        self.prediction = mlp(d, d, d)
        self.feature_selectors = nn.ModuleList(selector(d) for _ in range(k))
        self.memory_selectors = nn.ModuleList(selector(d) for _ in range(k))
        self.register_buffer("memory", torch.zeros(k, params.memory_size, d))
        self.register_buffer("memory_counts", torch.zeros(k, dtype=torch.long))
        self.magnitude = params.magnitude if params.magnitude is not None else (10.0 if ctx.spatial_dims == 3 else 6.0)
        self.consistency = params.consistency if params.consistency is not None else (1.0 if ctx.spatial_dims == 3 else 0.1)
        self.vat_kind = params.vat_distance or ("whole" if ctx.spatial_dims == 3 else "class_mean")

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def load_initial_weights(self, state):  # type: ignore[override]
        self.network.load_state_dict(state)

    def adversarial_direction(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unit (per image) direction that most increases the distance to ``target`` (power iteration)."""
        p: SSNetParams = self.params  # type: ignore[assignment]
        d = per_image_unit(torch.rand_like(x) - 0.5)
        for _ in range(p.power_iterations):
            d = d.detach().requires_grad_(True)
            dist = vat_distance(torch.softmax(self.network(x + p.xi * d).float(), 1), target, self.vat_kind)
            (grad,) = torch.autograd.grad(dist, d)
            d = per_image_unit(grad)
        return d.detach()

    def vat_loss(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        target = probs.detach()
        with frozen_bn_statistics(self.network):
            d = self.adversarial_direction(x, target)
            return vat_distance(torch.softmax(self.network(x + self.magnitude * d).float(), 1), target, self.vat_kind)

    @torch.no_grad()
    def update_memory(self, features: torch.Tensor, classes: torch.Tensor) -> None:
        """Per foreground class present, keep the ``memory_size`` projected features the selector ranks highest."""
        if features.shape[0] < 2:
            return
        was = self.projection.training
        self.projection.eval()
        proj = self.projection(features)
        self.projection.train(was)
        for c in range(1, self.memory.shape[0]):
            f = proj[classes == c]
            if f.shape[0] == 0:
                continue
            if f.shape[0] > self.memory.shape[1]:
                rank = torch.sigmoid(self.feature_selectors[c](f))[:, 0]
                f = f[torch.argsort(rank, descending=True)[: self.memory.shape[1]]]
            self.memory[c, : f.shape[0]] = f
            self.memory_counts[c] = f.shape[0]

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: SSNetParams = self.params  # type: ignore[assignment]
        x_l, y_l = labeled["image"], labeled["label"].long()
        n_l = x_l.shape[0]
        x = x_l if unlabeled is None else torch.cat([x_l, unlabeled["image"]])
        logits, (emb,) = self.network.forward_intermediates(x, [self.network.num_layers])
        probs = torch.softmax(logits.float(), 1)
        sup, terms = supervised_loss(logits[:n_l], y_l, p)
        feats = emb.movedim(1, -1).reshape(-1, emb.shape[1]).float()
        per_image = feats.shape[0] // x.shape[0]
        pred = probs.argmax(1)
        correct = ((pred[:n_l] == y_l) & (pred[:n_l] > 0)).reshape(-1)
        self.update_memory(feats[: n_l * per_image][correct], y_l.reshape(-1)[correct])
        sep_l = separation_loss(self.prediction(self.projection(feats[: n_l * per_image])), y_l.reshape(-1),
                                self.memory, self.memory_counts, self.feature_selectors, self.memory_selectors)
        sep_u = sup.new_zeros(())
        if unlabeled is not None:
            sep_u = separation_loss(self.prediction(self.projection(feats[n_l * per_image :])), pred[n_l:].reshape(-1),
                                    self.memory, self.memory_counts, self.feature_selectors, self.memory_selectors)
        vat = self.vat_loss(x, probs)
        w = self.ramped(self.consistency, p.consistency_rampup, step)
        loss = sup + w * (vat + p.separation_weight * (sep_l + sep_u))
        return {"loss": loss, **terms, "vat": vat.detach(), "separation_labeled": sep_l.detach(),
                "separation_unlabeled": sep_u.detach(), "consistency_weight": torch.tensor(w)}
