"""LunaModel: the book's chapter-11 nodule candidate classifier (222,220 parameters)."""

from __future__ import annotations

import math

import torch
from torch import nn


class LunaBlock(nn.Module):
    """Two 3x3x3 convolutions with ReLU, then a 2x2x2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.maxpool(x)


class LunaModel(nn.Module):
    """Input (N, 1, 32, 48, 48) chunks; returns (logits, probabilities), both (N, 2)."""

    def __init__(self, in_channels: int = 1, conv_channels: int = 8) -> None:
        super().__init__()
        self.tail_batchnorm = nn.BatchNorm3d(in_channels)
        self.block1 = LunaBlock(in_channels, conv_channels)
        self.block2 = LunaBlock(conv_channels, conv_channels * 2)
        self.block3 = LunaBlock(conv_channels * 2, conv_channels * 4)
        self.block4 = LunaBlock(conv_channels * 4, conv_channels * 8)
        # 64 channels x (32,48,48)/16 = 64 x 2 x 3 x 3 = 1152 features
        self.head_linear = nn.Linear(1152, 2)
        self.head_softmax = nn.Softmax(dim=1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_out)
                    # The book calls normal_(bias, -bound, bound): a normal with mean -bound.
                    # What it means is a uniform draw in [-bound, bound].
                    nn.init.uniform_(m.bias, -bound, bound)

    def forward(self, input_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tail_batchnorm(input_batch)
        x = self.block1(x)
        x = self.block2(x)
        x = self.block3(x)
        x = self.block4(x)
        # flatten() (not view) so that a channels_last_3d tensor flattens in NCDHW order
        logits = self.head_linear(x.flatten(1))
        return logits, self.head_softmax(logits)
