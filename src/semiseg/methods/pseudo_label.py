"""``pseudo_label``: self-training with refined pseudo-labels (Bai et al., MICCAI 2017).

Bai et al. alternate two steps for a few rounds: (1) segment the unlabeled images with the current
network and refine the result (they use a dense CRF); (2) retrain on labeled + pseudo-labeled
images. Here a run of T iterations holds ``rounds`` rounds of T / rounds iterations. At the start
of each round the current network is frozen into a *labeler* (evaluation mode); during the round
every unlabeled batch is segmented by that frozen labeler and refined by keeping the largest
connected component of each class (:func:`~semiseg.evaluation.postprocess.largest_component_per_class`),
so the round trains on exactly the pseudo-labels one would have written to disk at its start
(computed on the augmented view of each image). Loss: CE + Dice on the labeled batch plus
``unlabeled_weight`` times the same loss on the pseudo-labeled batch.

Start from a supervised model (``method.init_from``): without one, the first round is supervised
only (pseudo-labels of an untrained network are noise). A dense CRF is not used: no maintained
dense-CRF package installs on Python 3.11 here; the connected-component clean-up is the refinement.
"""

from __future__ import annotations

import numpy as np
import torch

from semiseg.evaluation.postprocess import largest_component_per_class
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.ema import make_teacher
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork


class PseudoLabelParams(SupervisedLossParams):
    rounds: int = 3
    unlabeled_weight: float = 1.0
    refine: bool = True


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
        self.labeler.eval()
        pred = self.labeler(x).argmax(1)
        if not self.params.refine:  # type: ignore[attr-defined]
            return pred
        arr = pred.cpu().numpy()
        refined = [largest_component_per_class(a, self.ctx.num_classes) for a in arr]
        return torch.as_tensor(np.stack(refined)).to(pred.device)

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: PseudoLabelParams = self.params  # type: ignore[assignment]
        r = self.round_of(step)
        if r != int(self.round):  # a new round: freeze the current network as the labeler
            self.labeler.load_state_dict(self.network.state_dict())
            self.round.fill_(r)
        x_l = labeled["image"]
        n_l = x_l.shape[0]
        active = unlabeled is not None and (bool(self.pretrained) or r > 0)
        x = torch.cat([x_l, unlabeled["image"]]) if active else x_l
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
