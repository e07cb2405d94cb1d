"""U-Net (Ronneberger et al. 2015) for 2D and 3D, sized like the semi-supervised literature's U-Net.

Defaults follow the U-Net used for ACDC in the semi-supervised literature (and the
2D U-Net of ROAM): features 16-32-64-128-256, two 3x3 convolutions with batch
norm and LeakyReLU per level, dropout growing with depth (0.05 ... 0.5),
max-pool down, transposed-convolution up, concatenated skips, a 1x1 head.

Layers (see :mod:`semiseg.networks.base`): 1 = first encoder level, 2..D =
the deeper encoder levels (D = the bottleneck), D+1..2D-1 = decoder levels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from semiseg.networks.base import (
    FeatureInfo, LayerState, SegmentationNetwork, aux_heads, conv_nd, dropout_nd, norm_nd, pyramid_heads, set_activation, upsample_nd,
)


class ConvBlock(nn.Sequential):
    """conv - norm - LeakyReLU - dropout - conv - norm - LeakyReLU."""

    def __init__(self, dims: int, cin: int, cout: int, norm: str, dropout: float, dropout_kind: str = "channel") -> None:
        conv = conv_nd(dims)
        super().__init__(
            conv(cin, cout, 3, padding=1),
            norm_nd(norm, dims, cout),
            nn.LeakyReLU(0.01, inplace=True),
            dropout_nd(dims, dropout, dropout_kind),
            conv(cout, cout, 3, padding=1),
            norm_nd(norm, dims, cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class _Encoder(nn.Module):
    """One encoder level: (max-pool) + ConvBlock; pushes its output as a skip unless it is the bottleneck."""

    def __init__(self, dims: int, cin: int, cout: int, norm: str, dropout: float, pool: bool, push_skip: bool,
                 dropout_kind: str = "channel") -> None:
        super().__init__()
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](2) if pool else nn.Identity()
        self.conv = ConvBlock(dims, cin, cout, norm, dropout, dropout_kind)
        self.push_skip = push_skip

    def forward(self, state: LayerState) -> LayerState:
        h = self.conv(self.pool(state.h))
        return LayerState(h, state.skips + [h] if self.push_skip else list(state.skips))


class _Decoder(nn.Module):
    """One decoder level: learned upsampling, concatenate the last skip, ConvBlock."""

    def __init__(self, dims: int, cin: int, cskip: int, cout: int, norm: str, upsampling: str = "transpose") -> None:
        super().__init__()
        self.up = upsample_nd(upsampling, dims, cin, cskip)
        self.conv = ConvBlock(dims, 2 * cskip, cout, norm, 0.0)

    def forward(self, state: LayerState) -> LayerState:
        skip = state.skips[-1]
        h = self.conv(torch.cat([skip, self.up(state.h)], dim=1))
        return LayerState(h, state.skips[:-1])


class UNet(SegmentationNetwork):
    """U-Net for ``spatial_dims`` 2 or 3.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: output classes including background.
        features: channels per level, shallow to deep (the last is the bottleneck).
        dropout: dropout per encoder level: a list (one value per level), a float (every level),
            or None for the literature's schedule (0.05, 0.1, 0.2, 0.3, 0.5 for five levels; a
            linear ramp from 0.05 to 0.5 for other depths).
        norm: ``batch`` (default), ``instance``, ``group`` or ``none``.
        upsampling: ``transpose`` (transposed convolutions), ``interpolate`` ((bi/tri)linear
            upsampling + a 2x2 convolution with the same parameter shapes) or ``conv1x1_linear``
            (a 1x1 convolution, then linear upsampling: SSL4MIS's decoder).
        dropout_kind: ``channel`` (whole feature maps, the default) or ``element`` (SSL4MIS's nn.Dropout).
        head_kernel: kernel of the output convolution (1; SSL4MIS uses 3).
        sdf_head: add the signed-distance head (``forward_heads``; SASSNet, DTC).
        extra_decoders: upsampling kinds of further decoders on the shared encoder, each with its own head
            (``forward_heads``: ``decoder2``, ...; MC-Net).
        deep_supervision: a perturbed 3x3 head on every decoder stage but the last (URPC's pyramid).
        activation: ``relu`` or ``leaky_relu`` (slope 0.1) instead of the network's own activation.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float | Sequence[float] | None = None,
        norm: str = "batch",
        upsampling: str = "transpose",
        dropout_kind: str = "channel",
        head_kernel: int = 1,
        sdf_head: bool = False,
        extra_decoders: Sequence[str] | None = None,
        deep_supervision: bool = False,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
        features = list(features)
        if dropout is None:
            n = len(features)
            drops = [0.05, 0.1, 0.2, 0.3, 0.5] if n == 5 else [0.05 + 0.45 * i / max(n - 1, 1) for i in range(n)]
        elif isinstance(dropout, (int, float)):
            drops = [float(dropout)] * len(features)
        else:
            drops = [float(d) for d in dropout]
        if len(drops) != len(features):
            raise ValueError(f"dropout has {len(drops)} entries but features has {len(features)}")
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        depth = len(features)
        self.size_divisor = 2 ** (depth - 1)
        blocks: list[nn.Module] = []
        info = [FeatureInfo(0, "input", in_channels, 1)]
        cin = in_channels
        for i, f in enumerate(features):
            blocks.append(_Encoder(spatial_dims, cin, f, norm, drops[i], pool=i > 0, push_skip=i < depth - 1,
                                   dropout_kind=dropout_kind))
            info.append(FeatureInfo(len(blocks), f"encoder{i + 1}", f, 2**i))
            cin = f
        def decoder(kind: str) -> tuple[list[nn.Module], nn.Module]:
            levels = range(depth - 2, -1, -1)
            ins = [features[-1]] + [features[i] for i in levels][:-1]
            mods: list[nn.Module] = [_Decoder(spatial_dims, c, features[i], features[i], norm, kind) for c, i in zip(ins, levels)]
            return mods, conv_nd(spatial_dims)(features[0], num_classes, head_kernel, padding=head_kernel // 2)

        main, head = decoder(upsampling)
        for i, block in zip(range(depth - 2, -1, -1), main):
            blocks.append(block)
            info.append(FeatureInfo(len(blocks), f"decoder{depth - 1 - i}", features[i], 2**i))
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.aux_heads = aux_heads(spatial_dims, features[0], num_classes, sdf_head)
        self.set_extra_decoders(extra_decoders or [], decoder)
        self._feature_info = info
        stages = [(f.index, f.channels) for f in info if f.name.startswith("decoder")][:-1]
        self.pyramid_heads = pyramid_heads(spatial_dims, stages, num_classes) if deep_supervision else nn.ModuleDict()
        set_activation(self, activation)


def unet_ssl4mis(spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 4, **kwargs: object) -> UNet:
    """The U-Net of SSL4MIS / PyMIC (``networks/unet.py``), for like-for-like comparisons with that code:
    features 16-256, element dropout 0.05-0.5 in the encoder, 1x1 convolution + linear upsampling (aligned
    corners) in the decoder, a 3x3 output convolution; 1,813,764 parameters for 1 channel and 4 classes."""
    opts: dict = {"upsampling": "conv1x1_linear", "dropout_kind": "element", "head_kernel": 3}
    opts.update(kwargs)
    return UNet(spatial_dims, in_channels, num_classes, **opts)  # type: ignore[arg-type]
