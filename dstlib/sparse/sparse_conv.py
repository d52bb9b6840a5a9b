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

from typing import Any, NamedTuple

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


class _Grid(NamedTuple):
    """Where a batch lives on the phase grid: ``n`` images, ``hq x wq`` positions per phase image, of which the
    top-left ``h_out x w_out`` are the outputs; ``size = n * hq * wq``; ``margin``: the largest shift."""

    n: int
    hq: int
    wq: int
    h_out: int
    w_out: int
    margin: int

    @property
    def size(self) -> int:
        return self.n * self.hq * self.wq

    def buffer(self, phases: int, rows: int, like: Tensor) -> Tensor:
        """A flat zero buffer for ``(phases, rows, size)`` and ``margin`` trailing zeros."""
        return torch.zeros(phases * rows * self.size + self.margin, dtype=like.dtype, device=like.device)

    def window(self, buffer: Tensor, phase: int, shift: int, rows: int) -> Tensor:
        """The contiguous ``(rows, size)`` matrix at ``shift`` in phase ``phase`` of a :meth:`buffer`: row ``r``
        is the phase's row ``r`` from position ``shift`` on, then the first ``shift`` entries of row ``r + 1``
        (they land on positions that are no output, where output gradients are zero)."""
        start = phase * rows * self.size + shift
        return buffer[start: start + rows * self.size].view(rows, self.size)


class _SparseConvFunction(torch.autograd.Function):
    """``x (N, C_in, H, W), values (nnz,) -> (N, C_out, H_out, W_out)`` without bias."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor, layer: SparseConv2d) -> Tensor:
        grid = layer.grid(x.shape)
        phases = layer.phases(x, grid)
        ctx.save_for_backward(x, phases, values)
        ctx.layer, ctx.grid = layer, grid
        return layer.convolve(phases, values, grid)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, phases, values = ctx.saved_tensors
        layer, grid = ctx.layer, ctx.grid
        grad_grid = layer.on_grid(grad, grid)  # (C_out, size)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = layer.input_gradient(grad_grid, values, x.shape, grid)
        if ctx.needs_input_grad[1]:
            grad_values = layer.value_gradient(grad_grid, phases, values, grid)
        if layer.capture_dense_grad:  # RigL: the dense gradient, only on the step before an update
            layer.store_dense_grad(torch.nn.grad.conv2d_weight(x, layer.weight_shape, grad, layer.stride,
                                                               layer.padding, 1, layer.groups))
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
        self.offsets = self._offsets()
        super().__init__((out_channels, in_channels // groups, kh, kw), (kh * kw * out_channels, in_channels),
                         (kh * kw * in_channels, out_channels), indices, values, bias)

    def _coordinates(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        kernel = self.kernel_size[0] * self.kernel_size[1]
        per_row = self.weight_numel // self.out_channels  # C_in / groups * kh * kw
        out, offset = indices // per_row, indices % kernel
        group = out // (self.out_channels // self.groups)
        channel = group * (self.in_channels // self.groups) + (indices % per_row) // kernel
        return offset * self.out_channels + out, channel, offset * self.in_channels + channel, out

    def _offsets(self) -> list[tuple[int, int]]:
        """Per kernel offset ``(i, j)`` (row-major): ``(phase, shift)``, the stride phase ``(i mod s_h, j mod s_w)``
        it reads (flat) and its shift ``(i div s_h) * wq + j div s_w`` on the phase grid, as ``(phase, (a, b))``
        with the shift's two parts (``wq`` is known per batch)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return [((i % sh) * sw + j % sw, (i // sh, j // sw)) for i in range(kh) for j in range(kw)]

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

    # ------------------------------------------------------------------ the products on the phase grid
    def grid(self, input_shape: torch.Size) -> _Grid:
        """The phase grid of an input ``(N, C_in, H, W)``: the zero-padded image cut into ``s_h * s_w`` stride
        phases of ``ceil((H + 2 p_h) / s_h) x ceil((W + 2 p_w) / s_w)`` pixels."""
        n, _, height, width = input_shape
        (ph, pw), (sh, sw), (kh, kw) = self.padding, self.stride, self.kernel_size
        wq = -(-(width + 2 * pw) // sw)
        margin = (kh - 1) // sh * wq + (kw - 1) // sw
        return _Grid(n, -(-(height + 2 * ph) // sh), wq, *self.output_size(height, width), margin)

    def phases(self, x: Tensor, grid: _Grid) -> Tensor:
        """``(N, C_in, H, W) ->`` a flat :meth:`_Grid.buffer` holding ``(s_h * s_w, C_in, size)``: the padded
        input's stride phases, channels as rows."""
        (ph, pw), (sh, sw) = self.padding, self.stride
        n, c, height, width = x.shape
        padded = F.pad(x, (pw, grid.wq * sw - width - pw, ph, grid.hq * sh - height - ph))
        buffer = grid.buffer(sh * sw, c, x)
        phases = buffer[: buffer.numel() - grid.margin].view(sh, sw, c, n, grid.hq, grid.wq)
        phases.copy_(padded.view(n, c, grid.hq, sh, grid.wq, sw).permute(3, 5, 1, 0, 2, 4))
        return buffer

    def _window(self, buffer: Tensor, offset: int, grid: _Grid, rows: int) -> Tensor:
        """The ``(rows, size)`` window of ``buffer`` that kernel offset ``offset`` reads (or writes)."""
        phase, (a, b) = self.offsets[offset]
        return grid.window(buffer, phase, a * grid.wq + b, rows)

    def convolve(self, phases: Tensor, values: Tensor, grid: _Grid) -> Tensor:
        """:meth:`phases` ``-> (N, C_out, H_out, W_out)``: per kernel offset, its CSR channel matrix
        ``(C_out, C_in)`` times the shifted phase, accumulated on the grid."""
        out = torch.zeros(self.out_channels, grid.size, dtype=phases.dtype, device=phases.device)
        for offset, matrix in self.layout.blocks(values, len(self.offsets)):
            out.addmm_(matrix, self._window(phases, offset, grid, self.in_channels))
        on_grid = out.view(self.out_channels, grid.n, grid.hq, grid.wq)
        return on_grid[:, :, : grid.h_out, : grid.w_out].transpose(0, 1).contiguous()

    def on_grid(self, grad: Tensor, grid: _Grid) -> Tensor:
        """``(N, C_out, H_out, W_out) -> (C_out, size)``, zero off the outputs."""
        out = torch.zeros(self.out_channels, grid.n, grid.hq, grid.wq, dtype=grad.dtype, device=grad.device)
        out[:, :, : grid.h_out, : grid.w_out] = grad.transpose(0, 1)
        return out.view(self.out_channels, grid.size)

    def input_gradient(self, grad_grid: Tensor, values: Tensor, input_shape: torch.Size, grid: _Grid) -> Tensor:
        """``(C_out, size) -> (N, C_in, H, W)``: per offset, the transposed channel matrix ``(C_in, C_out)`` times
        the output gradient, added to the phase it read, then the phases put back together and cropped."""
        (ph, pw), (sh, sw) = self.padding, self.stride
        n, c, height, width = input_shape
        buffer = grid.buffer(sh * sw, c, grad_grid)
        for offset, matrix in self.transposed_layout.blocks(values, len(self.offsets)):
            self._window(buffer, offset, grid, c).addmm_(matrix, grad_grid)
        grad_phases = buffer[: buffer.numel() - grid.margin].view(sh, sw, c, n, grid.hq, grid.wq)
        padded = grad_phases.permute(3, 2, 4, 0, 5, 1)
        return padded.reshape(n, c, grid.hq * sh, grid.wq * sw)[:, :, ph: ph + height, pw: pw + width].contiguous()

    def value_gradient(self, grad_grid: Tensor, phases: Tensor, values: Tensor, grid: _Grid) -> Tensor:
        """``(nnz,)``: per offset, the SDDMM of the output gradient and the shifted phase at the active entries."""
        parts = []
        for offset, pattern in self.layout.blocks(values.detach(), len(self.offsets)):
            window = self._window(phases, offset, grid, self.in_channels)
            parts.append(torch.sparse.sampled_addmm(pattern, grad_grid, window.T, beta=0.0).values())
        ordered, perm = torch.cat(parts), self.layout.perm
        if perm is None:
            return ordered
        return torch.empty_like(ordered).index_copy_(0, perm, ordered)

    def forward(self, x: Tensor) -> Tensor:
        checks.require(x.dim() == 4 and x.shape[1] == self.in_channels, "x.shape", tuple(x.shape),
                       f"(N, {self.in_channels}, H, W)")
        if torch.is_grad_enabled() and (self.values.requires_grad or x.requires_grad):
            out = _SparseConvFunction.apply(x, self.values, self)
        else:  # inference: the bare products
            grid = self.grid(x.shape)
            out = self.convolve(self.phases(x, grid), self.values.detach(), grid)
        if self.bias is not None:
            out = out + self.bias.view(-1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, nnz={self.nnz}, density={self.density:.4f}, "
                f"bias={self.bias is not None}")
