"""Small 2D CNN for the fast CPU chapters, plus the conv-BN-ReLU unit and width scaling the models share.

``SmallCNN`` stands in for the CIFAR VGG/ResNet of Wu et al. (ICLR 2025, DST vs dense corruption
robustness) and Xiao et al. (BMVC 2024, sparse networks as hard-sample learners) when a chapter has to
train many models on a laptop CPU in minutes.

Parameter names (what a sparse engine selects):
    ``block{1..4}.conv.weight`` the four 3x3 convs (4-D), ``classifier.weight`` the linear head (2-D);
    ``block*.bn.*`` and ``classifier.bias`` are 1-D and normally kept dense.
"""

import torch
from torch import nn

from dstlib import checks


def scaled_width(base: int, width: float) -> int:
    """Channels of a layer whose paper width is ``base`` under width multiplier ``width`` (at least 1)."""
    return max(1, round(base * width))


class ConvBNReLU(nn.Module):
    """``k x k`` conv (no bias, "same" padding) -> BatchNorm2d -> ReLU.

    ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``; parameters ``conv.weight``, ``bn.*``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (16-32-64-64), max-pool after blocks 1 and 2, global average pool, linear.

    Input ``(B, in_channels, H, W)`` with any H, W >= 4 (16x16 digits, 32x32 CIFAR-sized images, ...);
    output logits ``(B, num_classes)``. ``stem_stride=2`` makes the first conv stride 2, so a 32x32 input
    costs about what a 16x16 one costs at ``stem_stride=1``.

    Args:
        num_classes: number of output logits.
        in_channels: image channels (1 for digits, 3 for RGB).
        widths: output channels of the four convs.
        stem_stride: stride of the first conv (1 or 2).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths: tuple[int, int, int, int] = (16, 32, 64, 64),
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        checks.positive_ints(num_classes=num_classes, in_channels=in_channels)
        checks.numbers("widths", widths, length=4, low=1, integer=True)
        checks.one_of("stem_stride", stem_stride, (1, 2))
        c1, c2, c3, c4 = widths
        self.block1 = ConvBNReLU(in_channels, c1, stride=stem_stride)
        self.block2 = ConvBNReLU(c1, c2)
        self.block3 = ConvBNReLU(c2, c3)
        self.block4 = ConvBNReLU(c3, c4)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(c4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``."""
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block4(self.block3(x))
        return self.classifier(x.mean(dim=(2, 3)))
