"""Fully convolutional DenseNet ("Tiramisu", Jégou et al. 2017) as used by EquiReg (Schölin 2020, Sec. 5.1).

Components (EquiReg Table 1):

- dense-block layer: batch norm - ReLU - 3x3 convolution (``growth_rate`` maps) - dropout 0.2;
  each layer sees the concatenation of the block input and every earlier layer's output;
- transition down: batch norm - ReLU - 1x1 convolution (same width) - dropout 0.2 - 2x2 max pooling;
- transition up: 3x3 transposed convolution, stride 2, concatenated with the skip of that resolution.

Down the encoder a block's output is its input concatenated with its new maps (the widths grow
48 -> 112 -> 192 -> 304 -> 464 -> 656 for FC-DenseNet103); the bottleneck and the decoder blocks
output only their new maps (n x growth_rate), which the next transition up upsamples.

Transition-up widths: Jégou et al. upsample a block's ``n x growth_rate`` new maps to as many
maps (``transition_up="jegou"``: decoder widths 896, 656, 464, 304, 192, about 9.4 M
parameters for 3 input channels and 11 classes, as Jégou et al. report). The EquiReg thesis's
Table 2 lists 896, 704, 496, 352, 224 instead: every transition up after the first keeps the
width of the one before it (240, 240, 192, 160, 112 maps). ``fc_densenet103`` follows the
thesis table (``transition_up="thesis"``, the default), which its test checks row by row.

Layers (see :mod:`semiseg.networks.base`), for FC-DenseNet103: 1 = first 3x3 convolution,
2..6 = dense block + transition down, 7 = bottleneck dense block, 8 = first transition up,
9..12 = dense block + transition up, 13 = last dense block; the head is a 1x1 convolution.
So ``feature_info`` lists exactly the rows of Table 2.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from semiseg.networks.base import FeatureInfo, LayerState, SegmentationNetwork, conv_nd, conv_transpose_nd


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _bn(dims: int, channels: int) -> nn.Module:
    return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](channels)


class DenseLayer(nn.Sequential):
    """BN - ReLU - 3x3 conv to ``growth_rate`` maps - dropout (Table 1, first column)."""

    def __init__(self, dims: int, cin: int, growth_rate: int, dropout: float) -> None:
        super().__init__(_bn(dims, cin), nn.ReLU(inplace=True), conv_nd(dims)(cin, growth_rate, 3, padding=1), _dropout(dropout))


class DenseBlock(nn.Module):
    """``n_layers`` dense layers; returns the new maps only, or the input concatenated with them."""

    def __init__(self, dims: int, cin: int, n_layers: int, growth_rate: int, dropout: float, keep_input: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(dims, cin + i * growth_rate, growth_rate, dropout) for i in range(n_layers))
        self.keep_input = keep_input
        self.out_channels = (cin if keep_input else 0) + n_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new: list[torch.Tensor] = []
        stack = x
        for layer in self.layers:
            y = layer(stack)
            new.append(y)
            stack = torch.cat([stack, y], dim=1)
        return stack if self.keep_input else torch.cat(new, dim=1)


class TransitionDown(nn.Sequential):
    """BN - ReLU - 1x1 conv - dropout - 2x2 max pooling (Table 1, second column)."""

    def __init__(self, dims: int, channels: int, dropout: float) -> None:
        pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](2)
        super().__init__(_bn(dims, channels), nn.ReLU(inplace=True), conv_nd(dims)(channels, channels, 1), _dropout(dropout), pool)


class _Stem(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv_nd(dims)(cin, cout, 3, padding=1)

    def forward(self, state: LayerState) -> LayerState:
        return LayerState(self.conv(state.h), list(state.skips))


class _Down(nn.Module):
    """Dense block (input kept) -> push it as the skip -> transition down."""

    def __init__(self, dims: int, cin: int, n_layers: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.block = DenseBlock(dims, cin, n_layers, growth_rate, dropout, keep_input=True)
        self.down = TransitionDown(dims, self.block.out_channels, dropout)

    def forward(self, state: LayerState) -> LayerState:
        skip = self.block(state.h)
        return LayerState(self.down(skip), state.skips + [skip])


class _Block(nn.Module):
    """A dense block that outputs its new maps only (the bottleneck, the last decoder block)."""

    def __init__(self, dims: int, cin: int, n_layers: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.block = DenseBlock(dims, cin, n_layers, growth_rate, dropout, keep_input=False)

    def forward(self, state: LayerState) -> LayerState:
        return LayerState(self.block(state.h), list(state.skips))


class _Up(nn.Module):
    """(Optional dense block, new maps only) -> 3x3 transposed conv, stride 2 -> concatenate the last skip."""

    def __init__(self, dims: int, cin: int, n_layers: int, growth_rate: int, dropout: float, up_channels: int) -> None:
        super().__init__()
        self.block = DenseBlock(dims, cin, n_layers, growth_rate, dropout, keep_input=False) if n_layers else None
        width = self.block.out_channels if self.block is not None else cin
        self.up = conv_transpose_nd(dims)(width, up_channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, state: LayerState) -> LayerState:
        h = self.block(state.h) if self.block is not None else state.h
        skip = state.skips[-1]
        return LayerState(torch.cat([self.up(h), skip], dim=1), state.skips[:-1])


class FCDenseNet(SegmentationNetwork):
    """FC-DenseNet for ``spatial_dims`` 2 or 3 (defaults: FC-DenseNet103 of EquiReg Table 2).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (4 for the BraTS sequences).
        num_classes: output classes including background.
        growth_rate: maps added by each dense layer (16).
        first_channels: maps of the first 3x3 convolution (48).
        down_layers: layers of the encoder blocks, shallow to deep (4, 5, 7, 10, 12); the decoder mirrors them.
        bottleneck_layers: layers of the bottleneck block (15).
        dropout: dropout after each convolution of the dense layers and transitions down (0.2).
        transition_up: ``thesis`` (EquiReg Table 2 widths) or ``jegou`` (Jégou et al.); see the module docstring.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        growth_rate: int = 16,
        first_channels: int = 48,
        down_layers: Sequence[int] = (4, 5, 7, 10, 12),
        bottleneck_layers: int = 15,
        dropout: float = 0.2,
        transition_up: Literal["thesis", "jegou"] = "thesis",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
        if transition_up not in ("thesis", "jegou"):
            raise ValueError(f"transition_up must be 'thesis' or 'jegou'; got {transition_up!r}")
        down = [int(n) for n in down_layers]
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.size_divisor = 2 ** len(down)
        g, d = growth_rate, spatial_dims
        blocks: list[nn.Module] = [_Stem(d, in_channels, first_channels)]
        info = [FeatureInfo(0, "input", in_channels, 1), FeatureInfo(1, "stem", first_channels, 1)]
        width, skips = first_channels, []
        for i, n in enumerate(down):
            blk = _Down(d, width, n, g, dropout)
            blocks.append(blk)
            width = blk.block.out_channels
            skips.append(width)
            info.append(FeatureInfo(len(blocks), f"down{i + 1}", width, 2 ** (i + 1)))
        blocks.append(_Block(d, width, bottleneck_layers, g, dropout))
        width = bottleneck_layers * g
        info.append(FeatureInfo(len(blocks), "bottleneck", width, 2 ** len(down)))
        # decoder: transition up i upsamples the new maps of block ``ups[i]`` (the bottleneck first)
        ups = [bottleneck_layers] + down[::-1][:-1]
        up_widths = [n * g for n in ups]
        if transition_up == "thesis":
            up_widths = [up_widths[0]] + up_widths[:-1]
        for i, skip in enumerate(skips[::-1]):
            blk = _Up(d, width, 0 if i == 0 else ups[i], g, dropout, up_widths[i])
            blocks.append(blk)
            width = up_widths[i] + skip
            info.append(FeatureInfo(len(blocks), f"up{i + 1}", width, 2 ** (len(down) - 1 - i)))
        blocks.append(_Block(d, width, down[0], g, dropout))
        width = down[0] * g
        info.append(FeatureInfo(len(blocks), "last_block", width, 1))
        self.blocks = nn.ModuleList(blocks)
        self.head = conv_nd(d)(width, num_classes, 1)
        self._feature_info = info


def fc_densenet103(spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2, dropout: float = 0.2,
                   transition_up: Literal["thesis", "jegou"] = "thesis") -> FCDenseNet:
    """FC-DenseNet103 exactly as EquiReg Table 2 (growth 16, blocks 4-5-7-10-12-15-12-10-7-5-4)."""
    return FCDenseNet(spatial_dims, in_channels, num_classes, dropout=dropout, transition_up=transition_up)
