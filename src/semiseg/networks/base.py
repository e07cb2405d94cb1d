"""The network contract: forward, feature taps, and run-to-layer-k / resume-from-layer-k.

A network is a sequence of *layers* (blocks) acting on a :class:`LayerState`
(the current hidden tensor plus the stack of skip connections still to be
consumed by the decoder). Layer index ``k`` names the state after ``k`` blocks:
``k = 0`` is the input, ``k = num_layers`` the last hidden state before the
classification head. ``forward_to(x, k)`` runs blocks ``[0, k)`` and
``forward_from(state, k)`` runs blocks ``[k, L)`` and the head, so
``forward_from(forward_to(x, k), k) == forward(x)`` for every ``k``. A method
that mixes hidden states at layer k (ROAM, manifold mixup) does so with
:func:`semiseg.methods.mixup.mix_state`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from semiseg.errors import ConfigError

TRAINING_HEADS = ("aux_heads.", "extra_decoders.", "pyramid_heads.")
"""State-dict prefixes of the heads only training uses (``forward_heads``); ``forward`` never runs them."""


@dataclass
class LayerState:
    """Hidden state between two layers: ``h`` and the skip connections not yet consumed."""

    h: torch.Tensor
    skips: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class FeatureInfo:
    """What layer k outputs: its name, channels and stride relative to the input."""

    index: int
    name: str
    channels: int
    stride: int


class SegmentationNetwork(nn.Module):
    """Base class: subclasses fill ``self.blocks`` (callables on LayerState) and ``self.head``."""

    spatial_dims: int
    in_channels: int
    num_classes: int
    size_divisor: int
    blocks: nn.ModuleList
    head: nn.Module
    _feature_info: list[FeatureInfo]

    @property
    def num_layers(self) -> int:
        """L: the index of the last hidden state (the input of the head)."""
        return len(self.blocks)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """One entry per layer index 0..L (0 is the input)."""
        return list(self._feature_info)

    def check_input(self, x: torch.Tensor) -> None:
        """Fail with a message naming the required divisor when a spatial size does not fit."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"{type(self).__name__} expects a {self.spatial_dims}D batch of shape "
                f"(N, C, {'D, ' if self.spatial_dims == 3 else ''}H, W); got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels; got {x.shape[1]}")
        bad = [s for s in x.shape[2:] if s % self.size_divisor]
        if bad:
            raise ValueError(
                f"{type(self).__name__}: every spatial size must be divisible by {self.size_divisor}; "
                f"got {tuple(x.shape[2:])}"
            )

    def _check_k(self, k: int) -> None:
        if not 0 <= k <= self.num_layers:
            raise ValueError(f"layer index k must be in [0, {self.num_layers}]; got {k}")

    def forward_to(self, x: torch.Tensor, k: int) -> LayerState:
        """Run the first ``k`` layers; the state carries the skips still needed by the decoder."""
        self._check_k(k)
        self.check_input(x)
        state = LayerState(x)
        for block in self.blocks[:k]:
            state = block(state)
        return state

    def forward_from(self, state: LayerState, k: int) -> torch.Tensor:
        """Resume from layer ``k`` and return the logits."""
        self._check_k(k)
        for block in self.blocks[k:]:
            state = block(state)
        return self.head(state.h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.forward_to(x, 0), 0)

    @property
    def encoder_layers(self) -> list[int]:
        """Layer indices of the encoder stages, shallow to deep (U-Net/V-Net: the last is the bottleneck)."""
        return [f.index for f in self._feature_info if f.name.startswith("encoder")]

    def forward_heads(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output on one pass of the encoder: ``seg`` (the logits ``forward`` returns), the auxiliary heads
        (``aux_heads``, e.g. the signed-distance head of SASSNet and DTC), the deep-supervision outputs of the
        decoder stages upsampled to the input size (``pyramid_heads``, URPC: ``pyramid1`` the deepest) and one
        ``decoderN`` per extra decoder (``extra_decoders``, MC-Net: N = 2, 3, ...)."""
        extra = getattr(self, "extra_decoders", [])
        pyramid = getattr(self, "pyramid_heads", {})
        k = self.encoder_layers[-1] if len(extra) or len(pyramid) else self.num_layers
        encoded = self.forward_to(x, k)
        state = encoded
        aux: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[k:], start=k + 1):
            state = block(state)
            if str(i) in pyramid:
                size = tuple(x.shape[2:])
                mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
                aux[f"pyramid{len(aux) + 1}"] = F.interpolate(pyramid[str(i)](state.h), size=size, mode=mode, align_corners=False)
        out = {"seg": self.head(state.h), **aux}
        for name, head in getattr(self, "aux_heads", {}).items():
            out[name] = head(state.h)
        for i, dec in enumerate(extra, start=2):
            s = encoded
            for block in dec["blocks"]:
                s = block(s)
            out[f"decoder{i}"] = dec["head"](s.h)
        return out

    def load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        """Load another network's weights that differ from this one's only in the training-time heads (auxiliary
        heads, extra decoders, pyramid heads; ``forward`` uses none of them): a plain network's weights (e.g. a
        supervised run's) into this one, whose added heads keep their own initialisation, or the weights of a
        network with such heads (SASSNet's, MC-Net's) into this plain one, which drops them. Anything else that
        does not fit is an error."""
        own = self.state_dict()
        dropped = {k for k in state if k not in own and k.startswith(TRAINING_HEADS)}
        missing, unexpected = self.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
        wrong = [k for k in missing if not k.startswith(TRAINING_HEADS)] + list(unexpected)
        if wrong:
            raise RuntimeError(f"the weights do not fit the network: {wrong[:5]}")

    def set_extra_decoders(self, kinds: list[str], build: Callable[[str], tuple[list[nn.Module], nn.Module]]) -> None:
        """One further decoder (its blocks after the encoder, and its head) per upsampling kind (MC-Net)."""
        self.extra_decoders = nn.ModuleList(
            nn.ModuleDict({"blocks": nn.ModuleList(blocks), "head": head}) for blocks, head in map(build, kinds)
        )

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits plus the hidden tensors at the requested layer indices (all of 1..L by default)."""
        wanted = set(range(1, self.num_layers + 1) if indices is None else indices)
        for i in wanted:
            self._check_k(i)
        self.check_input(x)
        state = LayerState(x)
        taps: dict[int, torch.Tensor] = {0: x}
        for i, block in enumerate(self.blocks, start=1):
            state = block(state)
            if i in wanted:
                taps[i] = state.h
        order = sorted(wanted) if indices is None else list(indices)
        return self.head(state.h), [taps[i] for i in order]


ACTIVATIONS = ("relu", "leaky_relu")


def set_activation(module: nn.Module, kind: str | None) -> None:
    """Replace every ReLU / LeakyReLU of ``module`` by ``kind`` (``relu``, or ``leaky_relu`` with slope 0.1);
    ``None`` keeps the network's own. The parameters are untouched (a structural variant of equal shapes)."""
    if kind is None:
        return
    if kind not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{kind}'; choose {' or '.join(ACTIVATIONS)}")
    for name, child in module.named_children():
        if isinstance(child, (nn.ReLU, nn.LeakyReLU)):
            setattr(module, name, nn.ReLU(inplace=True) if kind == "relu" else nn.LeakyReLU(0.1, inplace=True))
        else:
            set_activation(child, kind)


def aux_heads(spatial_dims: int, channels: int, num_classes: int, sdf_head: bool) -> nn.ModuleDict:
    """Auxiliary heads on the last hidden state: ``sdf`` (a 1x1 convolution to one map per foreground class and
    tanh, the signed-distance regression of SASSNet / DTC) when ``sdf_head``."""
    heads = nn.ModuleDict()
    if sdf_head:
        heads["sdf"] = nn.Sequential(conv_nd(spatial_dims)(channels, max(num_classes - 1, 1), 1), nn.Tanh())
    return heads


class FeatureDropout(nn.Module):
    """URPC's feature dropout (training only): zero the positions whose channel-mean activation is below
    ``U(0.7, 0.9)`` times the image's maximum channel mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)
        top = attention.flatten(1).max(dim=1).values.view(-1, *([1] * (x.ndim - 1)))
        threshold = top * (0.7 + 0.2 * torch.rand_like(top))
        return x * (attention < threshold).to(x.dtype)


class FeatureNoise(nn.Module):
    """URPC's feature noise (training only): ``x + x * u`` with ``u ~ U(-0.3, 0.3)`` shared across channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        u = (torch.rand_like(x[:1]) * 2 - 1) * 0.3
        return x + x * u


def pyramid_heads(spatial_dims: int, stages: list[tuple[int, int]], num_classes: int) -> nn.ModuleDict:
    """URPC's deep-supervision heads on the decoder stages ``(layer index, channels)`` but the last, deepest
    first: a 3x3 convolution to the classes after a training-time perturbation (dropout 0.5, then feature
    dropout, then feature noise, repeating), keyed by the layer index."""
    perturb = [lambda: nn.Dropout(0.5), FeatureDropout, FeatureNoise]
    return nn.ModuleDict({
        str(i): nn.Sequential(perturb[j % 3](), conv_nd(spatial_dims)(c, num_classes, 3, padding=1))
        for j, (i, c) in enumerate(stages)
    })


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]


def conv_transpose_nd(spatial_dims: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[spatial_dims]


class InterpolateConv(nn.Module):
    """Upsampling by ``scale`` with (bi/tri)linear interpolation, then a ``scale``-sized convolution.

    Its parameters have exactly the shapes of ``ConvTranspose(cin, cout, scale, stride=scale)``
    (``weight`` (cin, cout, *k), ``bias`` (cout)), so a network built with either upsampling has the
    same ``state_dict`` keys and shapes (MC-Net's second decoder; an optional decoder variant of the
    hybrid-cropping co-learning students, whose Eq. 1 averages parameters). The even kernel is padded on
    the high side so the upsampled size is kept.
    """

    def __init__(self, spatial_dims: int, cin: int, cout: int, scale: int = 2, mode: str = "linear") -> None:
        super().__init__()
        self.spatial_dims, self.scale, self.mode = spatial_dims, scale, mode
        self.weight = nn.Parameter(torch.empty(cin, cout, *(scale,) * spatial_dims))
        self.bias = nn.Parameter(torch.empty(cout))
        # the initialisation of the transposed convolution it stands in for
        ref = conv_transpose_nd(spatial_dims)(cin, cout, scale, stride=scale)
        with torch.no_grad():
            self.weight.copy_(ref.weight)
            self.bias.copy_(ref.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            h = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        else:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            h = F.interpolate(x, scale_factor=self.scale, mode=mode, align_corners=False)
        pad = (0, self.scale - 1) * self.spatial_dims
        conv = F.conv2d if self.spatial_dims == 2 else F.conv3d
        return conv(F.pad(h, pad, mode="replicate"), self.weight.transpose(0, 1), self.bias)


UPSAMPLING = ("transpose", "interpolate", "interpolate_nearest", "conv1x1_linear")


def upsample_nd(kind: str, spatial_dims: int, cin: int, cout: int, scale: int = 2) -> nn.Module:
    """A learned x``scale`` upsampling: ``transpose`` (transposed convolution, the default of U-Net and
    V-Net), ``interpolate`` / ``interpolate_nearest`` (:class:`InterpolateConv`, linear or nearest, same parameter
    shapes) or ``conv1x1_linear`` (a 1x1
    convolution, then (bi/tri)linear upsampling with aligned corners: the U-Net decoder of PyMIC/SSL4MIS)."""
    if kind == "transpose":
        return conv_transpose_nd(spatial_dims)(cin, cout, scale, stride=scale)
    if kind in ("interpolate", "interpolate_nearest"):
        return InterpolateConv(spatial_dims, cin, cout, scale, "nearest" if kind == "interpolate_nearest" else "linear")
    if kind == "conv1x1_linear":
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        return nn.Sequential(conv_nd(spatial_dims)(cin, cout, 1), nn.Upsample(scale_factor=scale, mode=mode, align_corners=True))
    raise ConfigError(f"unknown upsampling '{kind}'; choose {' or '.join(UPSAMPLING)}")


def norm_nd(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    if kind == "instance":
        return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(16, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown normalisation '{kind}'; choose batch, instance, group or none")


def dropout_nd(spatial_dims: int, p: float, kind: str = "channel") -> nn.Module:
    """Dropout of whole channels (``channel``, Dropout2d/3d) or of single elements (``element``, nn.Dropout)."""
    if p <= 0:
        return nn.Identity()
    if kind == "element":
        return nn.Dropout(p)
    if kind != "channel":
        raise ConfigError(f"unknown dropout kind '{kind}'; choose channel or element")
    return {2: nn.Dropout2d, 3: nn.Dropout3d}[spatial_dims](p)
