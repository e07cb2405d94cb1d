"""``pseudo_label``: self-training with refined pseudo-labels (Bai et al., MICCAI 2017).

Bai et al. alternate two steps for a few rounds: (1) segment the unlabeled images with the current
network and refine the result (they use a dense CRF); (2) retrain on labeled + pseudo-labeled
images. Here a run of T iterations holds ``rounds`` rounds of T / rounds iterations. At the start
of each round the current network is frozen into a *labeler* (evaluation mode); during the round
every unlabeled batch is segmented by that frozen labeler and refined by keeping the largest
connected component of each class (:func:`~semiseg.evaluation.postprocess.largest_component_per_class`),
so the round trains on exactly the pseudo-labels one would have written to disk at its start
(computed on the augmented view of each image). ``refine``: ``lcc`` (default), ``crf`` (a fully
connected CRF on the labeler's probabilities and the image, as Bai et al.; needs the ``crf`` extra,
pydensecrf2), ``crf+lcc`` or ``none``. Loss: CE + Dice on the labeled batch plus
``unlabeled_weight`` times the same loss on the pseudo-labeled batch.

Start from a supervised model (``method.init_from``): without one, the first round is supervised
only (pseudo-labels of an untrained network are noise).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from semiseg.evaluation.postprocess import dense_crf, largest_component_per_class
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, joint_batch, supervised_loss
from semiseg.methods.ema import make_teacher
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class PseudoLabelParams(SupervisedLossParams):
    rounds: int = 3
    unlabeled_weight: float = 1.0
    refine: Literal["none", "lcc", "crf", "crf+lcc"] = "lcc"


@register_method
class PseudoLabel(Method):
    name = "pseudo_label"
    Params = PseudoLabelParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: PseudoLabelParams) -> None:
        super().__init__(ctx, params)
        if params.rounds < 1:
            raise ValueError("pseudo_label rounds must be >= 1")
        self.network = ctx.network_factory()
        self.labeler = make_teacher(self.network)
        self.register_buffer("pretrained", torch.tensor(False))
        self.register_buffer("round", torch.tensor(-1))

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def configure_optimizers(self):  # type: ignore[override]
        return {"main": list(self.network.parameters())}

    def load_initial_weights(self, state):  # type: ignore[override]
        self.network.load_state_dict(state)
        self.pretrained.fill_(True)

    def round_of(self, step: int) -> int:
        return min(step * self.params.rounds // max(self.ctx.total_iterations, 1), self.params.rounds - 1)  # type: ignore[attr-defined]

    @torch.no_grad()
    def pseudo_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen labeler's segmentation of ``x``, refined per sample."""
        self.labeler.eval()
        probs = torch.softmax(self.labeler(x).float(), dim=1)
        refine = self.params.refine  # type: ignore[attr-defined]
        if refine == "none":
            return probs.argmax(1)
        p_np, x_np = probs.cpu().numpy(), x.float().cpu().numpy()
        out = []
        for i in range(p_np.shape[0]):
            lab = dense_crf(p_np[i], x_np[i]) if refine.startswith("crf") else p_np[i].argmax(0)
            if refine.endswith("lcc"):
                lab = largest_component_per_class(lab, self.ctx.num_classes)
            out.append(lab)
        return torch.as_tensor(np.stack(out)).long().to(x.device)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: PseudoLabelParams = self.params  # type: ignore[assignment]
        r = self.round_of(step)
        if r != int(self.round):  # a new round: freeze the current network as the labeler
            self.labeler.load_state_dict(self.network.state_dict())
            self.round.fill_(r)
        active = unlabeled is not None and (bool(self.pretrained) or r > 0)
        x, n_l = joint_batch(labeled, unlabeled if active else None)
        logits = self.network(x)
        sup, terms = supervised_loss(logits[:n_l], labeled["label"], p)
        out: dict[str, torch.Tensor] = dict(terms)
        loss = sup
        if active:
            target = self.pseudo_labels(x[n_l:])
            unl, _ = supervised_loss(logits[n_l:], target, p)
            loss = loss + p.unlabeled_weight * unl
            out["pseudo"] = unl.detach()
        out["round"] = torch.tensor(float(r))
        return {"loss": loss, **out}
