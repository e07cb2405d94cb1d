"""``graph_embedding``: semi-supervised embedding regulariser on hidden features (Baur et al., 2017).

Following Weston et al.'s semi-supervised embedding, as used by Baur et al. for fully
convolutional networks: feature vectors of a hidden layer (``layer``, default the last hidden
state L, full resolution) are sampled from labeled voxels (class = ground truth) and unlabeled
voxels (class = the network's own prediction, no gradient; voxels below ``min_confidence`` are
not used). A graph connects every unlabeled sample with every labeled sample; edges of the same
class pull the two (unit-normalised) embeddings together, edges of different classes push them
apart up to ``margin`` (the contrastive hinge of Hadsell et al.):

``L_emb = mean_same ||f_u - f_l||^2 + mean_diff max(0, margin - ||f_u - f_l||)^2``.

Total loss: CE + Dice on labeled data + ``embedding_weight * L_emb`` (ramped up). Sampling is
class-balanced: up to ``samples_per_class`` voxels of each class from each stream.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.registry import register_method
from semiseg.methods.voxel_features import sample_voxels
from semiseg.networks.base import SegmentationNetwork


class GraphEmbeddingParams(SupervisedLossParams):
    embedding_weight: float = 0.1
    embedding_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "sigmoid"
    rampup_fraction: float = 0.3
    layer: int | Literal["L"] = "L"
    samples_per_class: int = 64
    margin: float = 1.0
    min_confidence: float = 0.0


def sample_by_class(features: torch.Tensor, classes: torch.Tensor, num_classes: int, per_class: int,
                    valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``per_class`` random voxels of each class: (M, C_feat) vectors and (M,) classes.

    ``features`` (N, F, *S) and ``classes`` (N, *S) must share the spatial size.
    """
    f = features.movedim(1, -1).reshape(-1, features.shape[1])
    sel = sample_voxels(classes, num_classes, per_class, valid)
    return f[sel], classes.reshape(-1)[sel]


def embedding_loss(f_u: torch.Tensor, c_u: torch.Tensor, f_l: torch.Tensor, c_l: torch.Tensor, margin: float) -> torch.Tensor:
    """Contrastive graph loss over all (unlabeled, labeled) pairs of unit-normalised embeddings."""
    if f_u.numel() == 0 or f_l.numel() == 0:
        return f_u.sum() * 0.0 + f_l.sum() * 0.0
    d = torch.cdist(F.normalize(f_u, dim=1), F.normalize(f_l, dim=1))
    same = (c_u[:, None] == c_l[None, :]).to(d.dtype)
    diff = 1.0 - same
    pull = (same * d**2).sum() / same.sum().clamp_min(1.0)
    push = (diff * F.relu(margin - d) ** 2).sum() / diff.sum().clamp_min(1.0)
    return pull + push


@register_method
class GraphEmbedding(Method):
    name = "graph_embedding"
    Params = GraphEmbeddingParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: GraphEmbeddingParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.layer = self.network.num_layers if params.layer == "L" else int(params.layer)
        if not 1 <= self.layer <= self.network.num_layers:
            raise ValueError(f"graph_embedding layer must be in [1, {self.network.num_layers}]; got {params.layer}")

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: GraphEmbeddingParams = self.params  # type: ignore[assignment]
        x, n_l = joint_batch(labeled, unlabeled)
        logits, (feat,) = self.network.forward_intermediates(x, [self.layer])
        sup, terms = supervised_loss(logits[:n_l], labeled["label"], p)
        out: dict[str, torch.Tensor] = dict(terms)
        loss = sup
        if unlabeled is not None:
            size = feat.shape[2:]
            y_l = labeled["label"]
            probs = torch.softmax(logits[n_l:].detach().float(), dim=1)
            if tuple(size) != tuple(y_l.shape[1:]):  # a coarser layer: classes at its resolution
                y_l = F.interpolate(y_l[:, None].float(), size=size, mode="nearest")[:, 0].long()
                probs = F.interpolate(probs, size=size, mode="bilinear" if len(size) == 2 else "trilinear", align_corners=False)
            conf, pred = probs.max(1)
            c = self.ctx.num_classes
            f_l, c_l = sample_by_class(feat[:n_l], y_l, c, p.samples_per_class)
            f_u, c_u = sample_by_class(feat[n_l:], pred, c, p.samples_per_class, conf >= p.min_confidence)
            emb = embedding_loss(f_u.float(), c_u, f_l.float(), c_l, p.margin)
            w = self.ramped(p.embedding_weight, p.embedding_rampup, step)
            loss = loss + w * emb
            out.update(embedding=emb.detach(), embedding_weight=torch.tensor(w))
        return {"loss": loss, **out}
