"""A layer weight held as active values + indices, multiplied as a CSR matrix: the base of the truly sparse layers.

A truly sparse layer (:class:`~dstlib.sparse.truly_sparse.SparseLinear`,
:class:`~dstlib.sparse.sparse_conv.SparseConv2d`) stores of its dense weight of shape ``weight_shape`` only
the ``nnz`` active entries:

- ``values``: the ``nn.Parameter`` ``(nnz,)``, so any optimizer keeps state for the active weights only;
- ``indices``: a persistent int64 buffer ``(nnz,)``, the flat (row-major) positions in ``weight_shape``,
  increasing; its length is fixed, a topology update rewrites values, indices and optimizer state in place.

Its products see the weight as a matrix ``W`` of ``matrix_shape`` ``(rows, cols)`` (for a linear layer the
weight itself; for a convolution the ``(C_out, C_in * kh * kw)`` matrix of im2col, block-diagonal over
groups). A subclass says where each flat position lands in that matrix (:meth:`SparseWeight._coordinates`,
row-major order kept, so ``values`` is also the CSR value array); this class derives the CSR structures of
``W`` and ``W^T`` from ``indices`` and rebuilds them after a topology change or a ``load_state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.export import csr_tensor


def _rebuild_after_load(module: SparseWeight, incompatible_keys: object) -> None:
    module._rebuild_layout()  # load_state_dict wrote new indices


class SparseWeight(nn.Module):
    """Active values and indices of a ``weight_shape`` weight, with the CSR layout of its ``matrix_shape`` view.

    Args:
        weight_shape: the dense weight's shape. matrix_shape: ``(rows, cols)`` of the matrix the products use.
        indices: int64 ``(nnz,)`` flat positions in ``weight_shape`` (any order, no repeats; stored sorted).
        values: float ``(nnz,)`` matching ``indices`` (default zeros). bias: float ``(rows,)`` or ``None``.

    Attributes:
        values: ``nn.Parameter`` ``(nnz,)`` in increasing position order. indices: buffer ``(nnz,)``.
        capture_dense_grad: when True, the backward pass also stores the dense weight gradient
            (``weight_shape``) in ``dense_grad`` (set by the truly sparse engine before an update).
    """

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        matrix_shape: tuple[int, int],
        indices: Tensor,
        values: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.weight_shape, self.matrix_shape = tuple(weight_shape), tuple(matrix_shape)
        indices = torch.as_tensor(indices, dtype=torch.int64).flatten()
        order = torch.argsort(indices)
        indices = indices[order]
        numel = math.prod(self.weight_shape)
        checks.require(indices.numel() > 0, "indices", tuple(indices.shape), "at least one active weight")
        checks.require(bool((indices[1:] > indices[:-1]).all()) and int(indices[0]) >= 0 and int(indices[-1]) < numel,
                       "indices", f"tensor of {indices.numel()}", f"distinct positions in [0, {numel})")
        if values is None:
            values = torch.zeros(indices.numel(), device=indices.device)
        values = torch.as_tensor(values).detach().flatten()
        checks.require(values.numel() == indices.numel(), "values", tuple(values.shape),
                       f"one value per index ({indices.numel()},)")
        self.values = nn.Parameter(values[order.to(values.device)].clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.register_buffer("indices", indices.to(values.device))
        self.capture_dense_grad = False
        self.dense_grad: Tensor | None = None
        self._rebuild_layout()
        self.register_load_state_dict_post_hook(_rebuild_after_load)

    def _coordinates(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """``(rows, cols)`` int64 ``(nnz,)`` in ``matrix_shape`` of the flat weight positions ``indices``."""
        raise NotImplementedError

    def _rebuild_layout(self) -> None:
        """Derive the CSR structures of ``W`` and ``W^T`` from ``indices`` (after a change of topology)."""
        n_rows, n_cols = self.matrix_shape
        index_dtype = torch.int32 if n_rows * n_cols < 2**31 else torch.int64
        rows, cols = self._coordinates(self.indices)
        crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
        crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
        transposed = torch.argsort(cols * n_rows + rows)
        t_crow = torch.zeros(n_cols + 1, dtype=torch.int64, device=rows.device)
        t_crow[1:] = torch.bincount(cols, minlength=n_cols).cumsum(0)
        self._crow, self._col = crow.to(index_dtype), cols.to(index_dtype)
        self._t_crow, self._t_col = t_crow.to(index_dtype), rows[transposed].to(index_dtype)
        self._t_perm = transposed.to(index_dtype)

    def _follow_device(self) -> None:
        if self._crow.device != self.indices.device:
            self._rebuild_layout()

    @property
    def nnz(self) -> int:
        """Number of stored (active) weights."""
        return self.indices.numel()

    @property
    def weight_numel(self) -> int:
        """Entries of the dense weight."""
        return math.prod(self.weight_shape)

    def layout_tensors(self) -> list[Tensor]:
        """The index structures: ``indices`` and the CSR row pointers, columns and permutation."""
        return [self.indices, self._crow, self._col, self._t_crow, self._t_col, self._t_perm]

    def csr(self, values: Tensor | None = None) -> Tensor:
        """``W`` as a ``torch.sparse_csr`` tensor ``matrix_shape`` (with ``values``, default the parameter)."""
        self._follow_device()
        values = self.values if values is None else values
        return csr_tensor(self._crow, self._col, values, self.matrix_shape)

    def csr_transposed(self, values: Tensor | None = None) -> Tensor:
        """``W^T`` as a ``torch.sparse_csr`` tensor ``(cols, rows)``."""
        self._follow_device()
        values = self.values if values is None else values
        return csr_tensor(self._t_crow, self._t_col, values[self._t_perm], self.matrix_shape[::-1])

    def store_dense_grad(self, dense: Tensor) -> None:
        """Add ``dense`` (``weight_shape``) to ``dense_grad`` (a backward pass with ``capture_dense_grad``)."""
        self.dense_grad = dense if self.dense_grad is None else self.dense_grad + dense

    def mask(self) -> Tensor:
        """Bool ``weight_shape``: the active positions (a new dense tensor)."""
        mask = torch.zeros(self.weight_numel, dtype=torch.bool, device=self.indices.device)
        mask[self.indices] = True
        return mask.view(self.weight_shape)

    def dense_weight(self) -> Tensor:
        """The weight as a dense ``weight_shape`` tensor (zeros at inactive positions; a new tensor, no grad)."""
        weight = torch.zeros(self.weight_numel, dtype=self.values.dtype, device=self.values.device)
        weight[self.indices] = self.values.detach()
        return weight.view(self.weight_shape)

    def set_topology(self, indices: Tensor, values: Tensor) -> None:
        """Write a new topology in place: ``indices`` (sorted, ``nnz`` of them) and their ``values``."""
        with torch.no_grad():
            self.indices.copy_(indices)
            self.values.copy_(values)
        self._rebuild_layout()

    @property
    def density(self) -> float:
        """``nnz`` over the dense weight's entries."""
        return self.nnz / self.weight_numel
