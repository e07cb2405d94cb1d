"""``unimatch``: weak-to-strong consistency with image- and feature-level perturbations (Yang et al., CVPR 2023).

The medical (ACDC) setting of the paper's code: for each unlabeled image, the prediction on its weak view
(the loader's flips/rotations) gives hard pseudo-labels and confidences (no gradient). Three streams learn
from them, counting only pixels whose confidence reaches ``threshold`` (0.95):

- two strong views, each: colour jitter (brightness and contrast, factors in [0.5, 1.5], probability 0.8),
  Gaussian blur (sigma in [0.1, 2], probability 0.5) and CutMix (probability 0.5: a box of 2-40% of the image,
  aspect 0.3-3.3, pasted from another unlabeled image, whose own weak pseudo-labels fill the box);
- a feature-perturbed stream: the encoder's features of the weak view (the bottleneck and every skip
  connection, through the network's layer-k split) pass 50% channel dropout before the decoder; only this
  stream sees the dropout.

Loss (the paper's ``unimatch_acdc.py``): ``(L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2`` with
``L_x = (CE + Dice) / 2`` on labeled images and Dice with the confidence mask for the unlabeled streams.
Validation and prediction use the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from semiseg.losses import dice_loss
from semiseg.methods.base import Method, MethodContext, SupervisedLossParams, supervised_loss
from semiseg.methods.copy_paste import box_region
from semiseg.methods.registry import register_method
from semiseg.networks.base import LayerState, SegmentationNetwork


class UniMatchParams(SupervisedLossParams):
    threshold: float = 0.95
    strong_weight: float = 0.25
    """Weight of each strong view's loss (two views)."""
    fp_weight: float = 0.5
    """Weight of the feature-perturbed stream's loss."""
    fp_dropout: float = 0.5
    jitter_p: float = 0.8
    jitter_strength: float = 0.5
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    cutmix_p: float = 0.5
    cutmix_area: tuple[float, float] = (0.02, 0.4)
    cutmix_aspect: float = 0.3


def colour_jitter(x: torch.Tensor, p: float, strength: float) -> torch.Tensor:
    """Per image, with probability ``p``: brightness ``x * b`` and contrast ``(x - mean) * c + mean`` in random
    order, ``b, c ~ U(1 - strength, 1 + strength)`` (torchvision's ColorJitter on grey images, without its clamp
    to [0, 1] so that z-scored images keep their range)."""
    n = x.shape[0]
    shape = (n,) + (1,) * (x.ndim - 1)
    axes = tuple(range(1, x.ndim))
    b = 1 + strength * (2 * torch.rand(shape, device=x.device) - 1)
    c = 1 + strength * (2 * torch.rand(shape, device=x.device) - 1)

    def contrast(t: torch.Tensor) -> torch.Tensor:
        mean = t.mean(dim=axes, keepdim=True)
        return (t - mean) * c + mean

    bright_first = torch.rand(shape, device=x.device) < 0.5
    jittered = torch.where(bright_first, contrast(x * b), contrast(x) * b)
    return torch.where(torch.rand(shape, device=x.device) < p, jittered, x)


def gaussian_blur(x: torch.Tensor, p: float, sigma_range: tuple[float, float]) -> torch.Tensor:
    """Per image, with probability ``p``: a Gaussian blur with ``sigma ~ U(sigma_range)`` pixels along every
    spatial axis (separable, kernel radius ceil(3 sigma), reflect padding)."""
    out = x.clone()
    dims = x.ndim - 2
    for i in range(x.shape[0]):
        if float(torch.rand(())) >= p:
            continue
        sigma = float(sigma_range[0] + (sigma_range[1] - sigma_range[0]) * torch.rand(()))
        r = max(1, math.ceil(3 * sigma))
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-(t**2) / (2 * sigma**2))
        k = k / k.sum()
        h = out[i : i + 1]
        c = h.shape[1]
        for ax in range(dims):
            shape = [1] * dims
            shape[ax] = k.numel()
            weight = k.view(1, 1, *shape).repeat(c, 1, *([1] * dims))
            pad = [0, 0] * dims
            pad[2 * (dims - 1 - ax)] = pad[2 * (dims - 1 - ax) + 1] = r
            h = F.pad(h, pad, mode="reflect")
            h = (F.conv2d if dims == 2 else F.conv3d)(h, weight, groups=c)
        out[i : i + 1] = h
    return out


def cutmix_boxes(n: int, size: tuple[int, ...], p: float, area: tuple[float, float], aspect: float,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, *size) masks: with probability ``p`` a box covering ``U(area)`` of the image with an aspect ratio in
    ``[aspect, 1 / aspect]`` (between the first two spatial axes; further axes take the mean edge), else empty."""
    boxes = torch.zeros(n, *size, device=device)
    total = float(torch.tensor(size).prod())
    for i in range(n):
        if float(torch.rand(())) >= p:
            continue
        a = float(area[0] + (area[1] - area[0]) * torch.rand(())) * total
        ratio = math.exp(float(math.log(aspect) + (math.log(1 / aspect) - math.log(aspect)) * torch.rand(())))
        side = a ** (1 / len(size))
        edges = [side * math.sqrt(ratio), side / math.sqrt(ratio)] + [side] * (len(size) - 2)
        boxes[(i, *box_region(size, edges))] = 1.0
    return boxes


def bottleneck_index(net: SegmentationNetwork) -> int:
    """The layer after the encoder (U-Net/V-Net: the bottleneck): where UniMatch perturbs the features."""
    enc = net.encoder_layers
    return enc[-1] if enc else net.num_layers


@register_method
class UniMatch(Method):
    name = "unimatch"
    Params = UniMatchParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: UniMatchParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.k = bottleneck_index(self.network)

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def strong_view(self, x: torch.Tensor, mix_source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A strong view of ``x`` and its CutMix boxes (pixels taken from the strong view of ``mix_source``)."""
        p: UniMatchParams = self.params  # type: ignore[assignment]
        s = gaussian_blur(colour_jitter(x, p.jitter_p, p.jitter_strength), p.blur_p, p.blur_sigma)
        m = gaussian_blur(colour_jitter(mix_source, p.jitter_p, p.jitter_strength), p.blur_p, p.blur_sigma)
        box = cutmix_boxes(x.shape[0], tuple(x.shape[2:]), p.cutmix_p, p.cutmix_area, p.cutmix_aspect, x.device)
        b = box.unsqueeze(1)
        return s * (1 - b) + m * b, box

    def feature_perturbed(self, state: LayerState) -> LayerState:
        """50% channel dropout on the hidden state and every skip connection (the perturbed stream only)."""
        drop = lambda t: F.dropout2d(t, self.params.fp_dropout, True) if t.ndim == 4 else F.dropout3d(t, self.params.fp_dropout, True)  # noqa: E731
        return LayerState(drop(state.h), [drop(s) for s in state.skips])

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: UniMatchParams = self.params  # type: ignore[assignment]
        x_l, y_l = labeled["image"], labeled["label"]
        n_l = x_l.shape[0]
        if unlabeled is None:
            sup, terms = supervised_loss(self.network(x_l), y_l, p)
            return {"loss": sup, **terms}
        x_w = unlabeled["image"]
        n_u = x_w.shape[0]
        mix_src = torch.roll(x_w, 1, dims=0)  # CutMix partner: another unlabeled image of the batch
        with torch.no_grad():
            was = self.network.training
            self.network.eval()  # the paper's code predicts the mix partner in evaluation mode
            prob_mix = torch.softmax(self.network(mix_src).float(), 1)
            self.network.train(was)
        s1, box1 = self.strong_view(x_w, mix_src)
        s2, box2 = self.strong_view(x_w, mix_src)
        # one encoder pass over labeled + weak; the decoder runs on clean features and on perturbed weak features
        state = self.network.forward_to(torch.cat([x_l, x_w]), self.k)
        fp = self.feature_perturbed(LayerState(state.h[n_l:], [s[n_l:] for s in state.skips]))
        joint = LayerState(torch.cat([state.h, fp.h]), [torch.cat([a, b]) for a, b in zip(state.skips, fp.skips)])
        out = self.network.forward_from(joint, self.k).float()
        logit_x, logit_w, logit_fp = out[:n_l], out[n_l : n_l + n_u], out[n_l + n_u :]
        logit_s1, logit_s2 = self.network(torch.cat([s1, s2])).float().chunk(2)
        with torch.no_grad():
            conf_w, pl_w = torch.softmax(logit_w.detach(), 1).max(1)
            conf_m, pl_m = prob_mix.max(1)
        sup, terms = supervised_loss(logit_x, y_l, p)

        def masked_dice(logits: torch.Tensor, box: torch.Tensor | None) -> torch.Tensor:
            target, conf = (pl_w, conf_w) if box is None else (torch.where(box.bool(), pl_m, pl_w), torch.where(box.bool(), conf_m, conf_w))
            return dice_loss(torch.softmax(logits, 1), target, mask=(conf >= p.threshold).float())

        l_s1, l_s2, l_fp = masked_dice(logit_s1, box1), masked_dice(logit_s2, box2), masked_dice(logit_fp, None)
        loss = (sup + p.strong_weight * (l_s1 + l_s2) + p.fp_weight * l_fp) / 2
        return {"loss": loss, **terms, "strong1": l_s1.detach(), "strong2": l_s2.detach(), "fp": l_fp.detach(),
                "confident": (conf_w >= p.threshold).float().mean()}
