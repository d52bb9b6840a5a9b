"""CIFAR-style ResNets: the 3-stage ResNet-8/20/32/56 family and ResNet-18/34 with a 3x3 stem.

- ``resnet_3stage(depth)``: He et al. (CVPR 2016, section 4.2) CIFAR ResNets, depth = 6n + 2, stages of
  16/32/64 channels (times ``width``). ResNet-20 is ~0.27M parameters. Used as the CPU-scale model of the
  robustness (Wu et al., ICLR 2025) and hard-sample (Xiao et al., BMVC 2024) chapters.
- ``resnet_4stage(depth)``: ResNet-18/34 as used on CIFAR/TinyImageNet by the robustness (ResNet34 on
  CIFAR-100-C) and hard-sample (ResNet18 on CIFAR-100, ResNet34 on TinyImageNet) papers: 3x3 stride-1 stem,
  no max-pool, stages of 64/128/256/512 channels (times ``width``). ResNet-18 at ``width=1`` is ~11.2M.

Both use basic blocks with a 1x1-conv + BN projection shortcut where the shape changes (option B), global
average pooling and a linear classifier, so any input size >= 8 works.

Parameter names (what a sparse engine selects):
    ``stem.conv.weight``; ``stages.{s}.{b}.conv1.weight``, ``stages.{s}.{b}.conv2.weight`` (3x3 convs);
    ``stages.{s}.{b}.shortcut.0.weight`` (1x1 projection convs); ``classifier.weight``.
    BatchNorm parameters (``*.bn*``, ``*.shortcut.1.*``) and biases are 1-D.
"""

import torch
from torch import nn

from dstlib import checks
from dstlib.models.cnn import ConvBNReLU, scaled_width


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual: ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem conv-BN-ReLU, stages of basic blocks (stride 2 at the start of every stage but the first),
    global average pool, linear.

    Input ``(B, in_channels, H, W)``; output logits ``(B, num_classes)``.

    Args:
        stage_widths: output channels of each stage (its length is the number of stages).
        blocks_per_stage: basic blocks in each stage (same length as ``stage_widths``).
        num_classes: number of output logits.
        in_channels: image channels.
    """

    def __init__(
        self,
        stage_widths: tuple[int, ...],
        blocks_per_stage: tuple[int, ...],
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        checks.positive_ints(num_classes=num_classes, in_channels=in_channels)
        checks.require(
            len(stage_widths) == len(blocks_per_stage) > 0,
            "blocks_per_stage",
            blocks_per_stage,
            f"one entry per stage width ({len(stage_widths)})",
        )
        self.stem = ConvBNReLU(in_channels, stage_widths[0])
        stages = []
        channels = stage_widths[0]
        for index, (width, blocks) in enumerate(zip(stage_widths, blocks_per_stage, strict=True)):
            first_stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels, width, first_stride)]
            stage += [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``."""
        x = self.stages(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))


def resnet_3stage(depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> ResNet:
    """He et al. CIFAR ResNet-``depth`` (depth = 6n + 2: 8, 20, 32, 44, 56, 110), stages 16/32/64 x ``width``.

    ``(B, in_channels, H, W)`` -> ``(B, num_classes)``.
    """
    ok = checks.is_number(depth, low=8, integer=True) and (depth - 2) % 6 == 0
    checks.require(ok, "depth", depth, "an integer 6n + 2 with n >= 1")
    checks.number("width", width, low=0, low_open=True)
    widths = tuple(scaled_width(base, width) for base in (16, 32, 64))
    return ResNet(widths, ((depth - 2) // 6,) * 3, num_classes, in_channels)


RESNET_4STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def resnet_4stage(
    depth: int = 18, num_classes: int = 10, in_channels: int = 3, width: float = 1.0
) -> ResNet:
    """CIFAR ResNet-18/34 (3x3 stem, no max-pool), stages 64/128/256/512 x ``width``.

    The default ``width=1`` is the paper-scale network (ResNet-18 ~11.2M, ResNet-34 ~21.3M parameters
    at 10 classes); ``width=0.25`` (16/32/64/128 channels) suits a CPU.
    ``(B, in_channels, H, W)`` -> ``(B, num_classes)``.
    """
    checks.one_of("depth", depth, sorted(RESNET_4STAGE_BLOCKS))
    checks.number("width", width, low=0, low_open=True)
    widths = tuple(scaled_width(base, width) for base in (64, 128, 256, 512))
    return ResNet(widths, RESNET_4STAGE_BLOCKS[depth], num_classes, in_channels)


class WideBasicBlock(nn.Module):
    """Pre-activation wide block (Zagoruyko & Komodakis 2016): BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus a
    1x1 projection shortcut when the shape changes. ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for 32x32 images (Zagoruyko & Komodakis 2016), the CIFAR-10 network of
    RigL (WRN-22-2, ~1.1M parameters): a 16-channel 3x3 stem, three stages of (depth - 4) / 6
    pre-activation wide blocks with 16/32/64 x ``widen`` channels, BN-ReLU, global average pool, linear.

    ``(B, in_channels, H, W) -> (B, num_classes)``. Sparse layers: ``stem.weight``,
    ``stages.{s}.{b}.conv{1,2}.weight``, ``stages.{s}.{b}.shortcut.weight``, ``head.weight``.
    """

    def __init__(self, depth: int = 22, widen: int = 2, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        ok = checks.is_number(depth, low=10, integer=True) and (depth - 4) % 6 == 0
        checks.require(ok, "depth", depth, "an integer 6n + 4 with n >= 1")
        checks.positive_ints(widen=widen, num_classes=num_classes, in_channels=in_channels)
        blocks = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        channels, stages = 16, []
        for index, base in enumerate((16, 32, 64)):
            out = base * widen
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(*[WideBasicBlock(channels if b == 0 else out, out, stride if b == 0 else 1)
                                          for b in range(blocks)]))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.stages(self.stem(x))))
        return self.head(out.mean(dim=(2, 3)))
