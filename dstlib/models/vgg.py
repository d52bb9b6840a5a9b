"""CIFAR VGG-11/16/19 with BatchNorm, as in the robustness (VGG16 on CIFAR-10-C, Wu et al. ICLR 2025) and
hard-sample (VGG19 on corrupted CIFAR-100, VGG16 adversarial training; Xiao et al. BMVC 2024) papers.

The CIFAR variant of the sparse-training code bases: the ImageNet VGG conv configuration (Simonyan &
Zisserman 2015) with bias-free 3x3 convs, BatchNorm and ReLU, four 2x2 max-pools (the fifth is dropped),
global average pooling and a single linear classifier. At ``width=1`` VGG-16 has ~14.7M parameters.

Parameter names (what a sparse engine selects):
    ``features.{i}.conv.weight`` for the i-th 3x3 conv (i = 0 .. depth - 4), ``classifier.weight``;
    ``features.{i}.bn.*`` and ``classifier.bias`` are 1-D.
"""

import torch
from torch import nn

from dstlib import checks
from dstlib.models.cnn import ConvBNReLU, scaled_width

# Output channels of each conv, grouped by resolution; a 2x2 max-pool follows every group but the last.
VGG_STAGES = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512)),
}


class VGG(nn.Module):
    """CIFAR VGG with BatchNorm.

    Input ``(B, in_channels, H, W)``, H and W >= 1 (32x32 in the papers; pools use ``ceil_mode`` so small
    inputs such as 16x16 also work); output logits ``(B, num_classes)``.

    Args:
        depth: 11, 16 or 19 (number of conv layers + 3, the ImageNet naming).
        num_classes: number of output logits.
        in_channels: image channels.
        width: channel multiplier; the default ``width=1`` (64..512 channels) is the paper scale,
            0.25 (16..128 channels) suits a CPU.
    """

    def __init__(
        self, depth: int = 16, num_classes: int = 10, in_channels: int = 3, width: float = 1.0
    ) -> None:
        super().__init__()
        checks.one_of("depth", depth, sorted(VGG_STAGES))
        checks.positive_ints(num_classes=num_classes, in_channels=in_channels)
        checks.number("width", width, low=0, low_open=True)
        layers = []
        stage_ends = []
        channels = in_channels
        for stage in VGG_STAGES[depth]:
            for base in stage:
                layers.append(ConvBNReLU(channels, scaled_width(base, width)))
                channels = scaled_width(base, width)
            stage_ends.append(len(layers) - 1)
        self.pool_after = frozenset(stage_ends[:-1])
        self.features = nn.ModuleList(layers)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``."""
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.pool_after:
                x = self.pool(x)
        return self.classifier(x.mean(dim=(2, 3)))
