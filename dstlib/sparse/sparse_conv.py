"""Truly sparse 2-D convolution: only the active kernel weights stored, every product over them only.

:class:`SparseConv2d` is ``nn.Conv2d`` (zero padding, no dilation; any kernel, stride and groups) with its weight
``(C_out, C_in / groups, kh, kw)`` held as ``values`` ``(nnz,)`` + ``indices`` ``(nnz,)`` (flat positions in the
weight, increasing; see :mod:`~dstlib.sparse.sparse_weight`). Its products run on the *phase grid*: the
zero-padded input cut into its ``s_h * s_w`` stride phases, channels as rows, ``P`` ``(s_h * s_w, C_in, size)``
with ``size = N * hq * wq`` (``hq, wq``: the padded size over the stride, rounded up), stored flat with a zero
margin. Kernel offset ``(i, j)`` reads phase ``(i mod s_h, j mod s_w)`` shifted by ``(i div s_h) * wq + j div
s_w`` positions, a contiguous ``(C_in, size)`` window of that buffer, and owns the CSR channel matrix ``W_ij``
``(C_out, C_in)`` of its active weights (block-diagonal over groups). With ``G`` the output gradient on the grid
``(C_out, size)`` (zero off the outputs):

- forward ``Y = sum_ij W_ij P_ij`` (one ``addmm_`` CSR x dense per offset with entries), then the top-left
  ``H_out x W_out`` of each image as ``(N, C_out, H_out, W_out)``;
- input gradient: ``W_ij^T G`` added into the window each offset read (a second CSR structure stacks the
  ``W_ij^T``), the phases put back together and the padding cropped;
- value gradient ``dL/dv = G P_ij^T`` sampled at the active entries of each ``W_ij``: the SDDMM
  ``torch.sparse.sampled_addmm`` (only ``nnz`` dot products of length ``size``);
- RigL's dense gradient ``torch.nn.grad.conv2d_weight``, only on the step before a topology update.

Choices measured on the project CPU (2 cores shared with other jobs, load 20-28, so by this thread's CPU time;
one thread, torch 2.13 + MKL, density 0.05, batch 64; ``benchmarks/bench_vs_sparseprop.py`` for the layers):

- im2col (``F.unfold``, CSR x the ``(C_in kh kw, N L)`` columns, ``F.fold`` for the input gradient): training
  step 3.9-5.8x the dense ``nn.Conv2d`` on ResNet-20's 3x3 layers (wall time); the unfold, its transpose and
  the fold are dense passes over ``kh * kw`` times the input. The phase grid copies the input once: 1.1-1.3x.
- one product with all offsets stacked (``(kh kw C_out, C_in)`` x ``P``, then shifted sums): forward 1.6x (16
  channels at 8x8) to 23x (16 channels at 32x32) slower than one ``addmm_`` per offset.
- windows as column slices of ``P`` (strided) made the SDDMM 5-10x slower than on the contiguous windows of
  the flat buffer (its wrapped-around tail lands on grid positions that are no output, where ``G`` is zero);
- tiling the grid so that the output stays in cache: forward up to 1.3x faster at 128 channels, slower below
  (more calls), so not done.

Where it stands (race at density 0.05, batch 64): about as fast as dense (0.95-1.22x) on ResNet-18's 3x3
layers at 32x32 input, 1.1-1.2x dense on ResNet-20's, 2.1-2.4x on SmallCNN's 4x4 and 8x8 maps, where MKL's
per-call cost and its CSR kernels (about a fifth of the dense GEMM's rate) dominate; SparseProp's AVX2 kernels
mostly reach 0.5-0.8x. Better dense (:func:`dense_preferred`): 1x1 convolutions with stride > 1 (1.3-1.7x
dense: one offset, while the phase copy serves ``s_h * s_w`` phases; SparseProp keeps them dense too) and
depthwise ones (``groups == C_in``: ``kh * kw`` products per pass, each over a diagonal channel matrix with
about ``density`` of an entry per row; 13x13 at density 0.4, SLaK's regime, 1.6x dense, 31x31 4.3x). The
gain of the others is memory: weights, gradients and optimizer state for the active entries only.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.sparse_weight import SparseWeight


def dense_preferred(model: nn.Module) -> list[str]:
    """Patterns for ``exclude=`` (of :func:`~dstlib.sparse.truly_sparse.initial_masks` and the masked engine
    alike) naming the weights of ``model``'s ``nn.Conv2d`` layers that train faster dense than as
    :class:`SparseConv2d` (measured, see the module's docstring): 1x1 kernels with a stride above 1, and
    depthwise convolutions (``groups == in_channels > 1``)."""
    return [
        f"^{re.escape(name)}\\.weight$"
        for name, module in model.named_modules()
        if type(module) is nn.Conv2d and (
            (module.kernel_size == (1, 1) and module.stride != (1, 1))
            or (module.groups == module.in_channels > 1)
        )
    ]


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
        ctx.save_for_backward(x if layer.capture_dense_grad else None, phases, values)  # x: for RigL only
        ctx.layer, ctx.grid, ctx.input_shape = layer, grid, x.shape
        return layer.convolve(phases, values, grid)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, phases, values = ctx.saved_tensors
        layer, grid = ctx.layer, ctx.grid
        grad_grid = layer.on_grid(grad, grid)  # (C_out, size)
        grad_x = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_x = layer.input_gradient(grad_grid, values, ctx.input_shape, grid)
        if ctx.needs_input_grad[1]:
            grad_values = layer.value_gradient(grad_grid, phases, values, grid)
        if x is not None:  # RigL: the dense gradient, only on the step before an update
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
        as for :class:`~dstlib.sparse.truly_sparse.SparseLinear` (a dense gradient of the weight's shape), except
        that the flag is read by the forward pass (only then does it keep the input for the dense gradient).
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

    def _offsets(self) -> list[tuple[int, tuple[int, int]]]:
        """Per kernel offset ``(i, j)`` (row-major): ``(phase, (a, b))``, the stride phase it reads, numbered
        ``(i mod s_h) * s_w + j mod s_w``, and its shift ``(a, b) = (i div s_h, j div s_w)`` in phase pixels
        (``a * wq + b`` positions on the grid)."""
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
        grad = torch.empty_like(ordered)
        grad[perm] = ordered
        return grad

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
