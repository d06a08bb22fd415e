"""The book's segmentation model (ch. 13): a batch norm on the 7-channel input, a 2-D U-Net
of depth 3 (16, 32, 64 filters; 3×3 convolutions with padding, each followed by a ReLU and a
batch norm; 2×2 max-pooling down, 2×2 transposed convolutions up, the skip connections
concatenated) and a sigmoid on its one output channel. 118,271 parameters.

Input (N, 7, H, W) HU (H and W multiples of 4: the 64×64 training crops, the 512×512 slices);
output (N, 1, H, W), the probability of each pixel being nodule.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SEG_CHANNELS = 7          # the slice and 3 context slices each side
UNET_DEPTH = 3
UNET_WF = 4               # 2**4 = 16 filters in the first block, doubling down the U


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_channels),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_channels))


class UNet(nn.Module):
    def __init__(self, in_channels: int = SEG_CHANNELS, classes: int = 1,
                 depth: int = UNET_DEPTH, wf: int = UNET_WF) -> None:
        super().__init__()
        widths = [2 ** (wf + i) for i in range(depth)]
        self.down = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.down.append(_conv_block(prev, w))
            prev = w
        self.up_convs = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up_convs.append(nn.ConvTranspose2d(prev, w, kernel_size=2, stride=2))
            self.up_blocks.append(_conv_block(2 * w, w))
            prev = w
        self.last = nn.Conv2d(prev, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
        for up, block, skip in zip(self.up_convs, self.up_blocks, reversed(skips), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.last(x)


class SegModel(nn.Module):
    """The book's wrapper: input batch norm, U-Net, sigmoid."""

    def __init__(self, in_channels: int = SEG_CHANNELS) -> None:
        super().__init__()
        self.input_batchnorm = nn.BatchNorm2d(in_channels)
        self.unet = UNet(in_channels)
        self.final = nn.Sigmoid()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    _fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_out)
                    nn.init.uniform_(m.bias, -bound, bound)   # as LunaModel: see there

    def forward(self, input_batch: torch.Tensor) -> torch.Tensor:
        return self.final(self.unet(self.input_batchnorm(input_batch)))
