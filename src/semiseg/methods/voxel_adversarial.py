"""``voxel_adversarial``: voxel-wise adversarial semi-supervised learning (Lee, Park, Shin, Chung; paper 004).

A V-Net student and its EMA teacher (:mod:`semiseg.methods.ema`). The student's encoder features
``E(x^1..4)`` (the first ``scales`` encoder stages, read through the network's feature taps) pass
through the voxel-wise feature layer (:class:`~semiseg.methods.voxel_features.VoxelFeatureLayer`:
1x1 convolutions to ``width`` = 64 channels, upsampling to the input size, addition and a
convolution), evaluated at class-balanced sampled voxels.

- Voxel classes (Eq. 1): the ground truth for labeled voxels; for unlabeled voxels the teacher's
  argmax where its probability exceeds ``threshold`` t = 0.7, other unlabeled voxels are ignored.
- Voxel-wise discriminator D (Fig. 3a): two hidden layers (``width``, LeakyReLU 0.2) and one
  linear prediction branch per class; a voxel's feature goes through its class's branch. Labeled
  features are real, unlabeled fake (Eq. 2). D is trained on detached features with its own Adam
  (2e-4, betas (0.5, 0.999), constant rate; ``optimizer_overrides``); the generator (the student's
  encoder and feature layer) minimises the non-saturating form of Eq. 2 on the unlabeled features,
  ``L_adv = BCE(D(f_u), real)``, with D's parameters frozen for that pass (no gradient into D).
- Voxel-wise representation loss, BYOL-style (Eq. 3): on labeled voxels, the student's projection
  and prediction heads ``p(z_s)`` against the teacher's projection ``z_t`` (the teacher side -- its
  V-Net, feature layer and projector -- is the EMA of the student side, no gradient), the MSE of
  l2-normalised vectors ``||p(z_s)/|p(z_s)| - z_t/|z_t|||^2`` averaged over voxels. ``pairing``
  ``same_class`` pairs each student voxel with a random teacher voxel of the same class ("feature
  relations from the same class"), ``same_voxel`` with the same voxel.
- Consistency ``L_c``: the MSE between student and teacher softmax on every image (the teacher sees
  mean-teacher input noise), weighted by the Gaussian warm-up ``gamma(t) = 0.001 exp(-5 (1 - t/t_max)^2)``.
- Eq. 5-6: ``L = L_dice + alpha L_adv + beta L_feature + gamma(t) L_c`` with alpha = 0.01, beta = 0.1
  and the Dice loss on labeled images (the CE weight defaults to 0).

Inference uses the student V-Net alone (``evaluate: teacher`` is an option).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.losses import softmax_mse
from semiseg.methods.base import Method, MethodContext, constant_adam, SupervisedLossParams, supervised_loss
from semiseg.methods.ema import ema_update, make_teacher
from semiseg.methods.mean_teacher import input_noise
from semiseg.methods.registry import register_method
from semiseg.methods.voxel_features import VoxelFeatureLayer, mlp, sample_voxels
from semiseg.networks.base import SegmentationNetwork


class VoxelAdversarialParams(SupervisedLossParams):
    ce_weight: float = 0.0
    dice_weight: float = 1.0
    adv_weight: float = 0.01
    """alpha of Eq. 6."""
    feature_weight: float = 0.1
    """beta of Eq. 6 (LA; the paper uses 100 on the multi-organ CT data)."""
    consistency: float = 0.001
    """Maximum of gamma(t), the Gaussian warm-up of the consistency weight."""
    consistency_rampup: Literal["none", "linear", "sigmoid", "cosine", "gaussian"] = "gaussian"
    rampup_fraction: float = 1.0
    threshold: float = 0.7
    """t of Eq. 1: unlabeled voxels count only where the teacher's probability exceeds it."""
    width: int = 64
    scales: int = 4
    """Encoder stages fused (E(x^1..4)); fewer when the network has fewer."""
    voxels_per_class: int = 256
    """Voxels sampled per class and stream (labeled / unlabeled) at each step."""
    pairing: Literal["same_class", "same_voxel"] = "same_class"
    ema_decay: float = 0.99
    noise_std: float = 0.1
    noise_clip: float = 0.2
    disc_lr: float = 2e-4
    disc_betas: tuple[float, float] = (0.5, 0.999)
    evaluate: Literal["student", "teacher"] = "student"


class VoxelDiscriminator(nn.Module):
    """Shared MLP (two hidden layers, LeakyReLU 0.2) and one linear prediction branch per class."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Linear(width, width), nn.LeakyReLU(0.2, inplace=True))
        self.branches = nn.Linear(width, num_classes)  # row c = the linear branch of class c

    def forward(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """One real/fake logit per voxel feature (M, width), from the branch of its class (M,)."""
        return self.branches(self.body(features)).gather(1, classes.long()[:, None]).squeeze(1)


def encoder_taps(net: SegmentationNetwork, scales: int) -> list[int]:
    """Layer indices of the first ``scales`` encoder stages, the bottleneck excluded (V-Net: 1..4)."""
    enc = net.encoder_layers
    return enc[:-1][:scales] or enc[:1]


def byol_loss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 3: mean over rows of ``|| online/|online| - target/|target| ||^2`` (target gets no gradient)."""
    if online.numel() == 0:
        return online.sum() * 0.0
    return (F.normalize(online, dim=1) - F.normalize(target.detach(), dim=1)).pow(2).sum(1).mean()


def same_class_permutation(classes: torch.Tensor) -> torch.Tensor:
    """A permutation that sends every row to a random row of the same class."""
    perm = torch.arange(classes.numel(), device=classes.device)
    for k in classes.unique():
        rows = torch.nonzero(classes == k).squeeze(1)
        perm[rows] = rows[torch.randperm(rows.numel(), device=rows.device)]
    return perm


class StudentSide(nn.Module):
    """What the EMA teacher mirrors: the network, the voxel-wise feature layer and the projector."""

    def __init__(self, network: SegmentationNetwork, taps: list[int], width: int) -> None:
        super().__init__()
        self.network = network
        info = network.feature_info
        self.feature_layer = VoxelFeatureLayer([info[i].channels for i in taps], width)
        self.projector = mlp(width, width, width)


@register_method
class VoxelAdversarial(Method):
    name = "voxel_adversarial"
    Params = VoxelAdversarialParams
    uses_unlabeled = True
    manual_optimization = True

    def __init__(self, ctx: MethodContext, params: VoxelAdversarialParams) -> None:
        super().__init__(ctx, params)
        network = ctx.network_factory()
        self.taps = encoder_taps(network, params.scales)
        self.student = StudentSide(network, self.taps, params.width)
        self.predictor = mlp(params.width, params.width, params.width)
        self.teacher = make_teacher(self.student)
        self.discriminator = VoxelDiscriminator(params.width, ctx.num_classes)

    def inference_network(self) -> SegmentationNetwork:
        side = self.teacher if self.params.evaluate == "teacher" else self.student  # type: ignore[attr-defined]
        return side.network  # type: ignore[return-value]

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.student.parameters()) + list(self.predictor.parameters()),
                "discriminator": list(self.discriminator.parameters())}

    def optimizer_overrides(self):  # type: ignore[override]
        p: VoxelAdversarialParams = self.params  # type: ignore[assignment]
        return {"discriminator": constant_adam(p.disc_lr, p.disc_betas)}

    def load_initial_weights(self, state):  # type: ignore[override]
        self.student.network.load_state_dict(state)
        self.teacher.network.load_state_dict(state)

    def voxel_classes(self, labeled: dict[str, torch.Tensor], teacher_probs_u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1: (classes, valid) of every voxel of the joint batch: ground truth for labeled voxels,
        the teacher's confident argmax for unlabeled ones (valid where its probability > threshold)."""
        y_l = labeled["label"].long()
        if teacher_probs_u is None:
            return y_l, torch.ones_like(y_l, dtype=torch.bool)
        conf, pseudo = teacher_probs_u.max(1)
        return torch.cat([y_l, pseudo]), torch.cat([torch.ones_like(y_l, dtype=torch.bool), conf > self.params.threshold])  # type: ignore[attr-defined]

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: VoxelAdversarialParams = self.params  # type: ignore[assignment]
        x_l = labeled["image"]
        n_l = x_l.shape[0]
        x = x_l if unlabeled is None else torch.cat([x_l, unlabeled["image"]])
        size = tuple(x.shape[2:])
        k = self.ctx.num_classes
        logits, feats = self.student.network.forward_intermediates(x, self.taps)
        with torch.no_grad():
            t_logits, t_feats = self.teacher.network.forward_intermediates(input_noise(x, p.noise_std, p.noise_clip), self.taps)
            t_probs = torch.softmax(t_logits.float(), 1)
        sup, terms = supervised_loss(logits[:n_l], labeled["label"], p)
        out: dict[str, torch.Tensor] = dict(terms)
        classes, valid = self.voxel_classes(labeled, None if unlabeled is None else t_probs[n_l:])
        # Eq. 3 on labeled voxels
        lab_idx = sample_voxels(classes[:n_l], k, p.voxels_per_class)
        feat_l = self.student.feature_layer(feats, lab_idx, size)
        l_feat = logits.sum() * 0.0
        if lab_idx.numel() > 1:
            online = self.predictor(self.student.projector(feat_l))
            c_l = classes[:n_l].reshape(-1)[lab_idx]
            with torch.no_grad():
                partner = lab_idx if p.pairing == "same_voxel" else lab_idx[same_class_permutation(c_l)]
                z_t = self.teacher.projector(self.teacher.feature_layer(t_feats, partner, size))
            l_feat = byol_loss(online, z_t)
        gamma = self.ramped(p.consistency, p.consistency_rampup, step)
        l_c = softmax_mse(logits, t_probs)
        loss = sup + p.feature_weight * l_feat + gamma * l_c
        out.update(feature=l_feat.detach(), consistency=l_c.detach(), consistency_weight=torch.tensor(gamma))
        unl_idx = None
        if unlabeled is not None:
            unl_idx = sample_voxels(classes[n_l:], k, p.voxels_per_class, valid[n_l:])
            out["confident_fraction"] = valid[n_l:].float().mean()
        if unl_idx is not None and unl_idx.numel() and lab_idx.numel():
            # generator: unlabeled voxel features should look labeled (real) to a frozen D
            offset = n_l * int(torch.tensor(size).prod())
            feat_u = self.student.feature_layer(feats, unl_idx + offset, size)
            c_u = classes[n_l:].reshape(-1)[unl_idx]
            self.discriminator.requires_grad_(False)
            d_fake = self.discriminator(feat_u, c_u)
            self.discriminator.requires_grad_(True)
            l_adv = F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
            loss = loss + p.adv_weight * l_adv
            out["adv"] = l_adv.detach()
            self.optimize(loss, "main")
            # discriminator (Eq. 2) on detached features: labeled real, unlabeled fake
            c_lab = classes[:n_l].reshape(-1)[lab_idx]
            d_real = self.discriminator(feat_l.detach(), c_lab)
            d_fake = self.discriminator(feat_u.detach(), c_u)
            l_disc = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) + \
                F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
            self.optimize(l_disc, "discriminator")
            acc = torch.cat([(d_real > 0).float(), (d_fake <= 0).float()]).mean()
            out.update(disc=l_disc.detach(), disc_acc=acc)
        else:
            self.optimize(loss, "main")
        return {"loss": loss.detach(), **out}

    def on_after_step(self, step: int) -> None:
        ema_update(self.teacher, self.student, self.params.ema_decay, step)  # type: ignore[attr-defined]
