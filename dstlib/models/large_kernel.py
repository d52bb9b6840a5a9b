"""SLaK: decomposed sparse large kernels in a ConvNeXt (Liu et al., "More ConvNets in the 2020s: Scaling
up Kernels Beyond 51x51 using Sparsity", ICLR 2023; official ``models/SLaK.py``).

- ``DecomposedLargeKernel``: a depthwise M x M kernel replaced by parallel depthwise M x N and N x M
  kernels plus a small N x N one (N < M), each followed by its own BatchNorm, outputs summed
  (``decompose=False`` keeps a full M x M branch instead: RepLKNet, or ConvNeXt without the small branch).
  Plain PyTorch needs padding (M//2, N//2) for the M x N branch (the original's GEMM op pads implicitly).
  ``merged_kernel()`` folds each branch's BatchNorm in and sums the branches into one M x M kernel and bias
  (structural re-parameterisation, for inference).
- ``ConvNeXtBlock``: large kernel -> LayerNorm -> Linear(d, 4d) -> GELU -> Linear(4d, d) -> layer scale ->
  drop path -> residual.
- ``SLaKNet``: ConvNeXt macro design (patchify stem + LayerNorm, LayerNorm + 2x2 stride-2 downsampling,
  stages of blocks, global average pool + LayerNorm + linear head) with ``width_factor`` ("use sparse
  groups, expand more width": SLaK-T is 1.3x ConvNeXt-T at 40% sparsity). ``slak_tiny`` builds the
  paper-scale SLaK-T / ConvNeXt-T.

Parameter names (what a sparse engine selects):
    ``stages.{s}.{b}.large_kernel.lora1.conv.weight`` (M x N), ``...large_kernel.lora2.conv.weight``
    (N x M), ``...large_kernel.small.conv.weight`` (N x N) or ``...large_kernel.full.conv.weight``
    (M x M, ``decompose=False``): pattern ``*.large_kernel.*`` (``*.large_kernel.lora*`` = SLaK's
    ``--only-L``); ``stages.{s}.{b}.pwconv1.weight``, ``pwconv2.weight`` (2-D); ``stem.0.weight``,
    ``downsample.{s}.1.weight``, ``head.weight``. SLaK masks every 2-D/4-D tensor; BN/LN/``gamma``/biases
    are 1-D.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dstlib import checks


class DepthwiseConvBN(nn.Module):
    """Depthwise ``(kh, kw)`` conv (no bias, "same" padding) -> BatchNorm2d: ``(B, C, H, W)`` -> same."""

    def __init__(self, channels: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        padding = (kernel[0] // 2, kernel[1] // 2)
        self.conv = nn.Conv2d(channels, channels, kernel, padding=padding, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv with its BatchNorm folded in (eval mode: running statistics): weight ``(C, 1, kh, kw)``
        and bias ``(C,)`` with ``conv2d(x, weight, bias, padding, groups=C) == self.eval()(x)``."""
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return self.conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class DecomposedLargeKernel(nn.Module):
    """SLaK's large-kernel depthwise block: ``(B, C, H, W) -> (B, C, H, W)``, the sum of its branches.

    Args:
        channels: C.
        kernel_size: M, odd.
        small_kernel: N, odd, <= M (SLaK: 5), or ``None`` for no small kernel. With ``decompose=True``
            it is also the short edge of the two rectangular kernels and is required.
        decompose: ``True``: branches ``lora1`` (M x N) + ``lora2`` (N x M) + ``small`` (N x N, only if
            N < M). ``False``: ``full`` (M x M) + ``small`` (N x N, only if N is given and N < M).
    """

    def __init__(
        self, channels: int, kernel_size: int = 15, small_kernel: int | None = 3, decompose: bool = True
    ) -> None:
        super().__init__()
        checks.positive_ints(channels=channels)
        checks.require(checks.is_odd_int(kernel_size), "kernel_size", kernel_size, "an odd integer >= 1")
        allowed = f"an odd integer <= kernel_size ({kernel_size})" + ("" if decompose else " or None")
        ok = (small_kernel is None and not decompose) or (
            checks.is_odd_int(small_kernel) and small_kernel <= kernel_size
        )
        checks.require(ok, "small_kernel", small_kernel, allowed)
        m, n = kernel_size, small_kernel
        self.lora1 = DepthwiseConvBN(channels, (m, n)) if decompose else None
        self.lora2 = DepthwiseConvBN(channels, (n, m)) if decompose else None
        self.full = None if decompose else DepthwiseConvBN(channels, (m, m))
        self.small = DepthwiseConvBN(channels, (n, n)) if n is not None and n < m else None

    def branches(self) -> list[nn.Module]:
        """The branches present, in the order ``lora1, lora2, full, small``."""
        return [b for b in (self.lora1, self.lora2, self.full, self.small) if b is not None]

    @torch.no_grad()
    def merged_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Structural re-parameterisation: the branches as one depthwise M x M conv.

        Each branch's BatchNorm is folded into its kernel (eval mode: running statistics), the kernel is
        zero-padded to M x M around the centre, and kernels and biases are summed. Returns weight
        ``(C, 1, M, M)`` and bias ``(C,)`` with ``conv2d(x, weight, bias, padding=M // 2, groups=C)`` equal
        to the block in eval mode: one kernel for inference, whatever the branches.
        """
        weights, biases = zip(*(branch.fused() for branch in self.branches()), strict=True)
        m = max(max(w.shape[-2:]) for w in weights)
        merged = torch.zeros(weights[0].shape[0], 1, m, m, dtype=weights[0].dtype, device=weights[0].device)
        for w in weights:
            top, left = (m - w.shape[-2]) // 2, (m - w.shape[-1]) // 2
            merged[:, :, top:top + w.shape[-2], left:left + w.shape[-1]] += w
        return merged, torch.stack(biases).sum(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = self.branches()
        out = branches[0](x)
        for branch in branches[1:]:
            out = out + branch(x)
        return out


def drop_path(x: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with ``probability``, rescale the rest."""
    if probability == 0.0 or not training:
        return x
    keep = 1.0 - probability
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block with a ``DecomposedLargeKernel`` token mixer: ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        small_kernel: int | None,
        decompose: bool,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        self.large_kernel = DecomposedLargeKernel(dim, kernel_size, small_kernel, decompose)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.large_kernel(x).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + drop_path(y.permute(0, 3, 1, 2), self.drop_path, self.training)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of ``(B, C, H, W)`` (ConvNeXt's "channels_first" LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def per_stage(name: str, value: int | tuple[int, ...], stages: int) -> tuple[int, ...]:
    """An int applies to every stage; a tuple must have one entry per stage."""
    values = (value,) * stages if isinstance(value, int) else tuple(value)
    checks.require(len(values) == stages, name, value, f"an int or {stages} ints (one per stage)")
    return values


class SLaKNet(nn.Module):
    """Mini ConvNeXt / SLaK: ``(B, in_channels, H, W) -> (B, num_classes)`` logits.

    Args:
        num_classes: number of output logits.
        in_channels: image channels.
        depths: blocks per stage (SLaK-T / ConvNeXt-T: 3, 3, 9, 3).
        dims: channels per stage before ``width_factor`` (T: 96, 192, 384, 768).
        kernel_size: large kernel M per stage, or one M for all (SLaK-T: 51, 49, 47, 13; ConvNeXt: 7).
        small_kernel: N (SLaK: 5), or ``None`` (with ``decompose=False``: plain ConvNeXt).
        decompose: M x N + N x M (+ N x N) branches instead of a full M x M one.
        width_factor: multiplies ``dims`` (truncated to int, as in SLaK; SLaK-T: 1.3).
        stem_stride: patchify stem kernel and stride (ImageNet: 4; 32x32 images: 2 or 1).
        drop_path: maximum stochastic-depth rate, linearly increased over blocks.
        layer_scale_init: initial layer-scale value (0 disables layer scale).

    Defaults are the CPU tutorial scale: 3 stages [1, 1, 2] x [32, 64, 128], M = 15/13/7 on the 16/8/4
    maps of a 32x32 input, N = 3.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        depths: tuple[int, ...] = (1, 1, 2),
        dims: tuple[int, ...] = (32, 64, 128),
        kernel_size: int | tuple[int, ...] = (15, 13, 7),
        small_kernel: int | None = 3,
        decompose: bool = True,
        width_factor: float = 1.0,
        stem_stride: int = 2,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        checks.positive_ints(num_classes=num_classes, in_channels=in_channels, stem_stride=stem_stride)
        checks.numbers("depths", depths, low=1, integer=True)
        checks.numbers("dims", dims, length=len(depths), low=1, integer=True)
        checks.number("width_factor", width_factor, low=0, low_open=True)
        checks.number("drop_path", drop_path, low=0, high=1, high_open=True)
        kernels = per_stage("kernel_size", kernel_size, len(depths))
        widths = [max(1, int(d * width_factor)) for d in dims]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], stem_stride, stem_stride), LayerNorm2d(widths[0], eps=1e-6)
        )
        self.downsample = nn.ModuleList(
            nn.Sequential(LayerNorm2d(widths[s], eps=1e-6), nn.Conv2d(widths[s], widths[s + 1], 2, 2))
            for s in range(len(widths) - 1)
        )
        rates = iter(torch.linspace(0.0, drop_path, sum(depths)).tolist())
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    ConvNeXtBlock(width, kernel, small_kernel, decompose, next(rates), layer_scale_init)
                    for _ in range(depth)
                )
            )
            for depth, width, kernel in zip(depths, widths, kernels, strict=True)
        )
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling: ``(B, in_channels, H, W)`` -> ``(B, C_last, h, w)``."""
        x = self.stages[0](self.stem(x))
        for down, stage in zip(self.downsample, self.stages[1:], strict=True):
            x = stage(down(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> logits ``(B, num_classes)``."""
        return self.head(self.norm(self.features(x).mean(dim=(2, 3))))


def slak_tiny(
    num_classes: int = 1000,
    in_channels: int = 3,
    kernel_size: int | tuple[int, ...] = (51, 49, 47, 13),
    small_kernel: int | None = 5,
    decompose: bool = True,
    width_factor: float = 1.3,
    drop_path: float = 0.1,
) -> SLaKNet:
    """Paper-scale SLaK-T (defaults) on the ConvNeXt-T macro design.

    SLaK-T has ~50.7M dense parameters at 1000 classes, ~30M non-zero at the paper's 40% sparsity (the
    figure SLaK reports); ConvNeXt-T has 28.6M.

    ConvNeXt-T is ``kernel_size=7, small_kernel=None, decompose=False, width_factor=1.0``.
    ``(B, in_channels, 224, 224) -> (B, num_classes)``.
    """
    return SLaKNet(
        num_classes,
        in_channels,
        depths=(3, 3, 9, 3),
        dims=(96, 192, 384, 768),
        kernel_size=kernel_size,
        small_kernel=small_kernel,
        decompose=decompose,
        width_factor=width_factor,
        stem_stride=4,
        drop_path=drop_path,
    )
