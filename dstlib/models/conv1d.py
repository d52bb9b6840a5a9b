"""1D CNNs for time-series classification: a small FCN baseline and DSN's SCNN with large sparse kernels.

- ``CNN1d``: three conv-BN-ReLU layers and global average pooling, the fully convolutional baseline of
  Wang et al. (IJCNN 2017), at tutorial width.
- ``SCNN``: the network of DSN (Xiao et al., "Dynamic Sparse Network for Time Series Classification:
  Learning What to 'See'", NeurIPS 2022; official ``model/SCNN.py``). ``depth`` modules of
  [1x1 bottleneck ->] large-kernel conv (k = 39) -> BN -> ReLU, whose ``out_groups`` (3) chunks of output
  channels are what DSN's region-constrained DST treats separately, then a head of adaptive average
  pooling to 50 steps, 1x1 conv + BN and global average pooling.

Both take ``(B, in_channels, T)`` and return logits ``(B, num_classes)`` (DSN's ``log_softmax`` + NLL loss
is the same as cross-entropy on these logits).

Parameter names (what a sparse engine selects):
    SCNN: ``blocks.{d}.sparse_conv.weight`` (``(out_groups*nf, C, k)``, the layers DSN sparsifies; also the
    only params matching DSN's rule "name contains 'conv' and kernel length >= 5"),
    ``blocks.{d}.bottleneck.weight`` (1x1, dense in DSN), ``head.conv.weight`` (1x1, dense in DSN);
    ``*.bn.*`` are 1-D. CNN1d: ``layers.{i}.conv.weight``, ``classifier.weight``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dstlib import checks


class CNN1d(nn.Module):
    """Conv1d-BN-ReLU x3 ("same" padding), global average pool, linear: ``(B, C, T) -> (B, num_classes)``.

    Args:
        num_classes: number of output logits.
        in_channels: variables of the series (1 for univariate).
        widths: output channels of the three convs (the FCN paper uses 128-256-128).
        kernel_sizes: odd kernel lengths of the three convs (the FCN paper uses 8-5-3).
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        widths: tuple[int, ...] = (32, 64, 32),
        kernel_sizes: tuple[int, ...] = (7, 5, 3),
    ) -> None:
        super().__init__()
        checks.positive_ints(num_classes=num_classes, in_channels=in_channels)
        checks.numbers("widths", widths, low=1, integer=True)
        checks.sequence("kernel_sizes", kernel_sizes, "odd integers (one per width)", checks.is_odd_int,
                        length=len(widths))
        layers = []
        channels = in_channels
        for width, kernel in zip(widths, kernel_sizes, strict=True):
            layers.append(ConvBNReLU1d(channels, width, kernel))
            channels = width
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, T)`` -> logits ``(B, num_classes)``."""
        return self.classifier(self.layers(x).mean(dim=2))


class ConvBNReLU1d(nn.Module):
    """Conv1d (no bias, "same" padding for odd k) -> BN -> ReLU: ``(B, C_in, T) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class SparseKernelConv1d(nn.Conv1d):
    """DSN's large-kernel conv (``Conv1d_new_padding``): ``(B, C_in, T) -> (B, C_out, T)``, no bias.

    Padding keeps the length: by default ``k - 1`` steps of *replication* padding on the right only (output
    step t sees ``x[t .. t+k-1]``, DSN's default); ``pad_zero=True`` pads zeros ``((k-1)//2, k//2)`` on the
    two sides (DSN's README setting for UCR 2018). ``out_groups`` records how many equal chunks of output
    channels DSN's region-constrained DST treats separately (chunk g may use the first
    ``(k // out_groups) * (g + 1)`` taps); see :meth:`region_lengths`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        out_groups: int = 1,
        pad_zero: bool = False,
    ) -> None:
        checks.positive_ints(kernel_size=kernel_size, out_groups=out_groups)
        checks.require(out_channels % out_groups == 0, "out_channels", out_channels, f"a multiple of {out_groups=}")
        super().__init__(in_channels, out_channels, kernel_size, bias=False)
        self.out_groups = out_groups
        self.pad_zero = pad_zero

    def region_lengths(self) -> list[int]:
        """Leading taps each output-channel chunk may use under DSN's rule ``(k // G) * (g + 1)``.

        13, 26, 39 for k = 39 and 3 groups; when G does not divide k the last ``k % G`` taps are never used,
        as in DSN's code.
        """
        k = self.kernel_size[0]
        return [(k // self.out_groups) * (g + 1) for g in range(self.out_groups)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if self.pad_zero:
            x = F.pad(x, ((k - 1) // 2, k // 2))
        else:
            x = F.pad(x, (0, k - 1), mode="replicate")
        return super().forward(x)


class InceptionModule(nn.Module):
    """One SCNN module: [1x1 bottleneck] -> ``SparseKernelConv1d`` -> BN -> ReLU.

    ``(B, C_in, T) -> (B, out_groups * nf, T)``. The bottleneck (C_in -> nf, no bias) is skipped when
    ``C_in == 1`` (univariate input to the first module), as in DSN.
    """

    def __init__(self, in_channels: int, nf: int, kernel_size: int, out_groups: int, pad_zero: bool) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(in_channels, nf, 1, bias=False) if in_channels > 1 else None
        conv_in = nf if self.bottleneck is not None else in_channels
        self.sparse_conv = SparseKernelConv1d(conv_in, out_groups * nf, kernel_size, out_groups, pad_zero)
        self.bn = nn.BatchNorm1d(out_groups * nf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bottleneck is not None:
            x = self.bottleneck(x)
        return torch.relu(self.bn(self.sparse_conv(x)))


class SCNNHead(nn.Module):
    """AdaptiveAvgPool1d(``pooled_length``) -> 1x1 conv (no bias) -> BN -> global average pool.

    ``(B, C, T) -> (B, num_classes)``.
    """

    def __init__(self, in_channels: int, num_classes: int, pooled_length: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(pooled_length)
        self.conv = nn.Conv1d(in_channels, num_classes, 1, bias=False)
        self.bn = nn.BatchNorm1d(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pool(x))).mean(dim=2)


class SCNN(nn.Module):
    """DSN's sparse CNN: ``(B, in_channels, T) -> (B, num_classes)`` logits, any T >= 1.

    Args:
        num_classes: number of output logits.
        in_channels: variables of the series.
        nf: channels per output group (DSN: 47 for UCR/UCI, 59 for UEA); each module outputs
            ``out_groups * nf`` channels.
        depth: number of modules (DSN: 4).
        kernel_size: length of the large kernels (DSN: 39).
        out_groups: chunks of output channels with different allowed regions (DSN: 3).
        pad_zero: zero "same" padding instead of DSN's default right-side replication padding.
        pooled_length: length of the head's adaptive average pool (DSN: 50).

    Defaults are the CPU tutorial scale (nf 16, depth 3); DSN's setting is ``nf=47, depth=4``.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        nf: int = 16,
        depth: int = 3,
        kernel_size: int = 39,
        out_groups: int = 3,
        pad_zero: bool = False,
        pooled_length: int = 50,
    ) -> None:
        super().__init__()
        checks.positive_ints(
            num_classes=num_classes,
            in_channels=in_channels,
            nf=nf,
            depth=depth,
            kernel_size=kernel_size,
            out_groups=out_groups,
            pooled_length=pooled_length,
        )
        checks.require(kernel_size >= out_groups, "kernel_size", kernel_size,
                       f"an integer >= out_groups ({out_groups})")
        self.blocks = nn.Sequential(
            *(
                InceptionModule(
                    in_channels if d == 0 else out_groups * nf, nf, kernel_size, out_groups, pad_zero
                )
                for d in range(depth)
            )
        )
        self.head = SCNNHead(out_groups * nf, num_classes, pooled_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, T)`` -> logits ``(B, num_classes)``."""
        return self.head(self.blocks(x))
