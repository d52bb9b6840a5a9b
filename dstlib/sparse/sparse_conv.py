"""Truly sparse 2-D convolution: only the active kernel weights stored, every product over them only.

:class:`SparseConv2d` is ``nn.Conv2d`` (zero padding, no dilation) with its weight ``(C_out, C_in / groups, kh,
kw)`` held as ``values`` ``(nnz,)`` + ``indices`` ``(nnz,)`` (flat positions in the weight, increasing; see
:mod:`~dstlib.sparse.sparse_weight`). The products see the weight as the im2col matrix ``W`` of shape
``(C_out, K)``, ``K = C_in * kh * kw`` (block-diagonal over groups), and the input as its unfolded columns
``X`` ``(K, N * L)`` (``L = H_out * W_out`` output positions per image, ``F.unfold``):

- forward ``Y = W X``: a CSR x dense product ``(C_out, N * L)``, then laid out as ``(N, C_out, H_out, W_out)``;
- input gradient ``dL/dX = W^T G`` with the transposed CSR structure (``G``: the output gradient as
  ``(C_out, N * L)``), folded back (``F.fold``, the adjoint of unfold) to ``(N, C_in, H, W)``;
- value gradient ``dL/dv_k = sum_m G[row_k, m] X[col_k, m]``: the SDDMM ``torch.sparse.sampled_addmm(W_csr, G,
  X^T)``, only the ``nnz`` entries computed (``X`` is saved from the forward pass).

Measured on a 2-core x86 CPU (MKL, torch 2.13, one thread, shared machine at load ~20; ratios to the dense
``nn.Conv2d`` training step of the same round, density 0.05; ``benchmarks/bench_vs_sparseprop.py``):
the unfold, its layout change and the fold are dense passes over ``K x N x L`` floats and cost more than the
sparse products at this density, so a 3x3 layer gains what its dense FLOPs leave above that memory traffic;
the numbers and the layers that stay dense are in the benchmark's README section.
Depthwise convolutions (``groups == C_in``, the large-kernel blocks) are not converted by default: one kernel
per channel leaves a CSR row of ``kh * kw * density`` entries, and the unfolded input is ``kh * kw`` times the
input, where the dense depthwise kernel reads the input once (see :func:`check_convertible`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.sparse_weight import SparseWeight


def check_convertible(conv: nn.Module, name: str = "conv") -> None:
    """Raise ``ValueError`` naming the attribute if ``conv`` is not an ``nn.Conv2d`` :class:`SparseConv2d` has:
    exactly ``nn.Conv2d`` (no subclass), zero padding given as numbers (``padding_mode='zeros'``, not
    ``'same'``/``'valid'`` strings), ``dilation=1``."""
    checks.require(type(conv) is nn.Conv2d, name, type(conv).__name__, "an nn.Conv2d (not a subclass)")
    checks.require(conv.padding_mode == "zeros", f"{name}.padding_mode", conv.padding_mode, "'zeros'")
    checks.require(not isinstance(conv.padding, str), f"{name}.padding", conv.padding,
                   "integers (zero padding in pixels), not 'same' or 'valid'")
    checks.require(tuple(conv.dilation) == (1, 1), f"{name}.dilation", conv.dilation, "(1, 1)")


class _SparseConvMatmul(torch.autograd.Function):
    """``x (N, C_in, H, W), values (nnz,) -> (N, C_out, H_out, W_out)`` without bias."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, layer: SparseConv2d) -> Tensor:
        columns = layer.unfold(x)  # (K, N * L)
        ctx.save_for_backward(columns, values)
        ctx.layer, ctx.input_shape = layer, x.shape
        return layer.to_images(torch.sparse.mm(layer.csr(values), columns), x.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        columns, values = ctx.saved_tensors
        layer = ctx.layer
        grad_rows = grad.transpose(0, 1).reshape(layer.out_channels, -1)  # (C_out, N * L)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = layer.fold(torch.sparse.mm(layer.csr_transposed(values), grad_rows), ctx.input_shape)
        if ctx.needs_input_grad[1]:
            pattern = layer.csr(values.detach())
            grad_values = torch.sparse.sampled_addmm(pattern, grad_rows, columns.T, beta=0.0).values()
        if layer.capture_dense_grad:  # RigL: the dense gradient, only on the step before an update
            groups = layer.groups
            per_group = torch.bmm(grad_rows.view(groups, layer.out_channels // groups, -1),
                                  columns.view(groups, columns.shape[0] // groups, -1).transpose(1, 2))
            layer.store_dense_grad(per_group.reshape(layer.weight_shape))
        return grad_x, grad_values, None


class SparseConv2d(SparseWeight):
    """``nn.Conv2d`` (zero padding, dilation 1) with only the ``nnz`` active kernel weights stored:
    ``(N, C_in, H, W) -> (N, C_out, H_out, W_out)``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, groups: as for ``nn.Conv2d`` (integers or
            pairs; padding in pixels of zeros).
        indices: int64 ``(nnz,)`` flat positions in the weight ``(C_out, C_in / groups, kh, kw)`` (any order,
            no repeats; stored sorted).
        values: float ``(nnz,)`` matching ``indices`` (default zeros). bias: float ``(C_out,)`` or ``None``.

    Attributes:
        values: ``nn.Parameter`` ``(nnz,)``; indices: buffer ``(nnz,)``; ``capture_dense_grad`` / ``dense_grad``
        as for :class:`~dstlib.sparse.truly_sparse.SparseLinear` (a dense gradient of the weight's shape).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        indices: Tensor,
        values: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
    ) -> None:
        checks.positive_ints(in_channels=in_channels, out_channels=out_channels, groups=groups)
        checks.require(in_channels % groups == 0 and out_channels % groups == 0, "groups", groups,
                       f"a divisor of in_channels={in_channels} and out_channels={out_channels}")
        self.kernel_size, self.stride = nn.modules.utils._pair(kernel_size), nn.modules.utils._pair(stride)
        self.padding = nn.modules.utils._pair(padding)
        checks.require(all(checks.is_number(k, low=1, integer=True) for k in self.kernel_size + self.stride),
                       "kernel_size, stride", (self.kernel_size, self.stride), "positive integers")
        checks.require(all(checks.is_number(p, low=0, integer=True) for p in self.padding), "padding", padding,
                       "non-negative integers")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        kh, kw = self.kernel_size
        weight_shape = (out_channels, in_channels // groups, kh, kw)
        super().__init__(weight_shape, (out_channels, in_channels * kh * kw), indices, values, bias)

    def _coordinates(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        per_row = self.weight_numel // self.out_channels  # C_in / groups * kh * kw
        rows = indices // per_row
        group = rows // (self.out_channels // self.groups)
        return rows, indices % per_row + group * per_row

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, mask: Tensor) -> SparseConv2d:
        """The active weights (``mask`` bool, the weight's shape) of ``conv``, and its bias.

        Raises:
            ValueError: ``conv`` has what :func:`check_convertible` rejects, or ``mask`` another shape.
        """
        check_convertible(conv)
        checks.require(tuple(mask.shape) == tuple(conv.weight.shape), "mask.shape", tuple(mask.shape),
                       f"the weight's shape {tuple(conv.weight.shape)}")
        indices = mask.reshape(-1).nonzero().squeeze(1)
        values = conv.weight.detach().reshape(-1)[indices]
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, indices, values, conv.bias,
                   stride=conv.stride, padding=conv.padding, groups=conv.groups)

    def to_conv(self) -> nn.Conv2d:
        """A dense ``nn.Conv2d`` with the same function (inactive weights 0)."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         groups=self.groups, bias=self.bias is not None, device=self.values.device,
                         dtype=self.values.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.dense_weight())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H_out, W_out)`` for an input of ``height x width``."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1

    def unfold(self, x: Tensor) -> Tensor:
        """im2col: ``(N, C_in, H, W) -> (K, N * L)`` (contiguous), column ``n * L + l`` the patch of output ``l``."""
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (N, K, L)
        return patches.transpose(0, 1).reshape(patches.shape[1], -1)

    def fold(self, columns: Tensor, input_shape: torch.Size) -> Tensor:
        """The adjoint of :meth:`unfold`: ``(K, N * L) -> (N, C_in, H, W)`` (overlapping patches summed)."""
        n = input_shape[0]
        patches = columns.view(columns.shape[0], n, -1).transpose(0, 1)
        return F.fold(patches, input_shape[-2:], self.kernel_size, padding=self.padding, stride=self.stride)

    def to_images(self, rows: Tensor, input_shape: torch.Size) -> Tensor:
        """``(C_out, N * L) -> (N, C_out, H_out, W_out)`` (contiguous) for an input of ``input_shape``."""
        size = self.output_size(input_shape[2], input_shape[3])
        return rows.view(self.out_channels, input_shape[0], *size).transpose(0, 1).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        checks.require(x.dim() == 4 and x.shape[1] == self.in_channels, "x.shape", tuple(x.shape),
                       f"(N, {self.in_channels}, H, W)")
        if torch.is_grad_enabled() and (self.values.requires_grad or x.requires_grad):
            out = _SparseConvMatmul.apply(x, self.values, self)
        else:  # inference: the bare CSR product
            out = self.to_images(torch.sparse.mm(self.csr(self.values.detach()), self.unfold(x)), x.shape)
        if self.bias is not None:
            out = out + self.bias.view(-1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, nnz={self.nnz}, density={self.density:.4f}, "
                f"bias={self.bias is not None}")
