"""Export a trained masked model for sparse inference with ``torch.sparse_csr`` weights.

Masked training gives no speedup by itself: the pruned weights are zeros in dense tensors. After training,
:func:`to_sparse_csr` returns a copy in which every ``nn.Linear`` and every 1x1 ``nn.Conv2d`` (ungrouped,
no padding; a linear map over channels) whose weight is sparse enough stores that weight in compressed
sparse row form and multiplies with ``torch.sparse.mm``. Outputs equal the dense model's up to float
rounding. Whether it is faster depends on the density, the batch size and the CPU/GPU sparse kernels:
``benchmarks/bench_csr_inference.py`` measures it. The copy is for inference (its CSR weights are
buffers, not parameters).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from dstlib import checks


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` (out, in) in CSR form: ``(*, in_features) -> (*, out_features)``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _csr(linear.weight))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        out = times_transposed(self.weight, x.reshape(-1, self.in_features))
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight._nnz()}"


class CSRPointwiseConv2d(nn.Module):
    """A 1x1 convolution as a CSR matrix over channels: ``(N, C_in, H, W) -> (N, C_out, H/s, W/s)``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = conv.in_channels, conv.out_channels, conv.stride
        self.register_buffer("weight", _csr(conv.weight.reshape(conv.out_channels, conv.in_channels)))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride[0], :: self.stride[1]]
        n, c, h, w = x.shape
        out = torch.sparse.mm(self.weight, x.transpose(0, 1).reshape(c, n * h * w))  # (C_out, N*H*W)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(self.out_channels, n, h, w).transpose(0, 1).contiguous()

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, nnz={self.weight._nnz()}"


def to_sparse_csr(model: nn.Module, max_density: float = 0.5) -> nn.Module:
    """A deep copy of ``model`` with sparse linear and 1x1-conv weights in ``torch.sparse_csr`` form.

    A layer is converted when the fraction of non-zero entries of its weight is at most ``max_density``
    (above about one half a CSR matrix is larger than the dense one). Pass the trained model with its masks
    applied (pruned weights exactly zero, as after ``engine.step()``). ``model`` itself is not changed.
    """
    checks.number("max_density", max_density, low=0, high=1, low_open=True)
    exported = copy.deepcopy(model)
    replacements = {
        name: _csr_module(module)
        for name, module in exported.named_modules()
        if _convertible(module) and _nonzero_fraction(module.weight) <= max_density
    }
    for name, replacement in replacements.items():
        parent_name, _, child = name.rpartition(".")
        setattr(exported.get_submodule(parent_name), child, replacement)
    return exported


def _convertible(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (1, 1)
        and module.groups == 1
        and module.padding in ((0, 0), "valid")
    )


def _csr_module(module: nn.Module) -> nn.Module:
    return CSRLinear(module) if isinstance(module, nn.Linear) else CSRPointwiseConv2d(module)


def _nonzero_fraction(weight: Tensor) -> float:
    return float(torch.count_nonzero(weight)) / weight.numel()


def csr_tensor(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A ``torch.sparse_csr`` matrix from its row pointers, column indices and values (not re-checked)."""
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state": expected, not actionable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def times_transposed(matrix: Tensor, rows: Tensor) -> Tensor:
    """``rows @ matrix^T`` for a CSR ``matrix`` (n, k) and dense ``rows`` (M, k) -> contiguous (M, n).

    ``torch.sparse.mm(matrix, rows^T)`` (dense @ CSR is far slower); one row goes through ``torch.mv``
    (2.5x faster than ``torch.sparse.mm`` with one column on the CPU)."""
    if rows.shape[0] == 1:
        return torch.mv(matrix, rows[0]).unsqueeze(0)
    return torch.sparse.mm(matrix, rows.T).T.contiguous()


def _csr(matrix: Tensor) -> Tensor:
    """``matrix`` (2-D, dense) in CSR form with int32 indices where they fit (faster than int64 on the CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        sparse = matrix.detach().to_sparse_csr()
    index = torch.int32 if matrix.numel() < 2**31 else torch.int64
    return csr_tensor(sparse.crow_indices().to(index), sparse.col_indices().to(index), sparse.values(),
                      tuple(matrix.shape))
