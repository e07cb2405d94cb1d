"""V-Net (Milletari et al. 2016) as used by the left-atrium semi-supervised literature.

This is the 16-channel V-Net of UA-MT / SASSNet / MC-Net and of the voxel-wise
adversarial paper (about 9.45 M parameters with batch norm): 1-2-3-3-3
convolutions per encoder stage, strided 2x2x2 convolutions down, transposed
convolutions up, skips *added* (not concatenated), 3-3-2-1 convolutions per
decoder stage, dropout (p=0.5) on the bottleneck and before the head when
``dropout`` is set (UA-MT uses it for Monte-Carlo dropout).

Layers: 1..5 = encoder stages (5 = bottleneck), 6..9 = decoder stages.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from semiseg.networks.base import (
    FeatureInfo, LayerState, SegmentationNetwork, aux_heads, conv_nd, dropout_nd, norm_nd, pyramid_heads, set_activation, upsample_nd,
)


def _conv_stage(dims: int, n: int, cin: int, cout: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [conv_nd(dims)(cin if i == 0 else cout, cout, 3, padding=1), norm_nd(norm, dims, cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class _Down(nn.Module):
    """(strided conv down) + conv stage; pushes a skip unless it is the bottleneck."""

    def __init__(self, dims: int, n: int, cin: int, cout: int, norm: str, down: bool, push_skip: bool, dropout: float) -> None:
        super().__init__()
        self.down = (
            nn.Sequential(conv_nd(dims)(cin, cout, 2, stride=2), norm_nd(norm, dims, cout), nn.ReLU(inplace=True))
            if down
            else nn.Identity()
        )
        self.stage = _conv_stage(dims, n, cout if down else cin, cout, norm)
        self.push_skip = push_skip
        self.dropout = dropout_nd(dims, dropout)

    def forward(self, state: LayerState) -> LayerState:
        h = self.dropout(self.stage(self.down(state.h)))
        return LayerState(h, state.skips + [h] if self.push_skip else list(state.skips))


class _Up(nn.Module):
    """learned upsampling + add the last skip + conv stage."""

    def __init__(self, dims: int, n: int, cin: int, cout: int, norm: str, dropout: float, upsampling: str) -> None:
        super().__init__()
        self.up = nn.Sequential(upsample_nd(upsampling, dims, cin, cout), norm_nd(norm, dims, cout), nn.ReLU(inplace=True))
        self.stage = _conv_stage(dims, n, cout, cout, norm)
        self.dropout = dropout_nd(dims, dropout)

    def forward(self, state: LayerState) -> LayerState:
        h = self.up(state.h) + state.skips[-1]
        return LayerState(self.dropout(self.stage(h)), state.skips[:-1])


class VNet(SegmentationNetwork):
    """V-Net with ``n_filters`` base channels (16 in the literature).

    Args:
        spatial_dims: 3 (the literature) or 2.
        in_channels, num_classes: input channels and classes including background.
        n_filters: base width; stages use 1x, 2x, 4x, 8x, 16x.
        norm: ``batch`` (default), ``instance``, ``group`` or ``none``.
        dropout: dropout on the bottleneck and on the last decoder stage (0.5 in UA-MT; 0 = off).
        upsampling: ``transpose`` (transposed convolutions, V-Net) or ``interpolate`` (trilinear
            upsampling + a 2x2x2 convolution with the same parameter shapes; MC-Net's second decoder
            and the second co-learning student of 003).
        sdf_head: add the signed-distance head (``forward_heads``; SASSNet, DTC).
        extra_decoders: upsampling kinds of further decoders on the shared encoder, each with its own head
            (``forward_heads``: ``decoder2``, ...; MC-Net uses ``[interpolate]``, MC-Net+ adds ``interpolate_nearest``).
        deep_supervision: a perturbed 3x3 head on every decoder stage but the last (URPC's pyramid).
        activation: ``relu`` or ``leaky_relu`` (slope 0.1) instead of the network's own activation.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 2,
        n_filters: int = 16,
        norm: str = "batch",
        dropout: float = 0.0,
        upsampling: str = "transpose",
        sdf_head: bool = False,
        extra_decoders: Sequence[str] | None = None,
        deep_supervision: bool = False,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.size_divisor = 16
        f = n_filters
        widths = [f, 2 * f, 4 * f, 8 * f, 16 * f]
        convs_down = [1, 2, 3, 3, 3]
        convs_up = [3, 3, 2, 1]
        blocks: list[nn.Module] = []
        info = [FeatureInfo(0, "input", in_channels, 1)]
        for i, (w, n) in enumerate(zip(widths, convs_down)):
            cin = in_channels if i == 0 else widths[i - 1]
            blocks.append(_Down(spatial_dims, n, cin, w, norm, down=i > 0, push_skip=i < 4, dropout=dropout if i == 4 else 0.0))
            info.append(FeatureInfo(len(blocks), f"encoder{i + 1}", w, 2**i))
        def decoder(kind: str) -> tuple[list[nn.Module], nn.Module]:
            mods: list[nn.Module] = [_Up(spatial_dims, n, widths[4 - j], widths[3 - j], norm, dropout=dropout if j == 3 else 0.0,
                                         upsampling=kind) for j, n in enumerate(convs_up)]
            return mods, conv_nd(spatial_dims)(f, num_classes, 1)

        main, head = decoder(upsampling)
        for j, block in enumerate(main):
            blocks.append(block)
            info.append(FeatureInfo(len(blocks), f"decoder{j + 1}", widths[3 - j], 2 ** (3 - j)))
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.aux_heads = aux_heads(spatial_dims, f, num_classes, sdf_head)
        self.set_extra_decoders(extra_decoders or [], decoder)
        self._feature_info = info
        stages = [(f.index, f.channels) for f in info if f.name.startswith("decoder")][:-1]
        self.pyramid_heads = pyramid_heads(spatial_dims, stages, num_classes) if deep_supervision else nn.ModuleDict()
        set_activation(self, activation)
