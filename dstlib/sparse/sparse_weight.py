"""A layer weight held as active values + indices, multiplied as a CSR matrix: the base of the truly sparse layers.

A truly sparse layer (:class:`~dstlib.sparse.truly_sparse.SparseLinear`,
:class:`~dstlib.sparse.sparse_conv.SparseConv2d`) stores of its dense weight of shape ``weight_shape`` only
the ``nnz`` active entries:

- ``values``: the ``nn.Parameter`` ``(nnz,)``, so any optimizer keeps state for the active weights only;
- ``indices``: a persistent int64 buffer ``(nnz,)``, the flat (row-major) positions in ``weight_shape``,
  increasing; its length is fixed, a topology update rewrites values, indices and optimizer state in place.

Its products multiply CSR matrices built from ``values``: for a linear layer ``W`` and ``W^T``; for a
convolution the kernel offsets' channel matrices stacked row-wise. A subclass says where each stored value lands
in those two matrices (:meth:`SparseWeight._coordinates`); this class keeps their CSR structures
(:class:`CSRLayout`) and rebuilds them after a topology change or a ``load_state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.export import csr_tensor


class CSRLayout:
    """The CSR structure of a ``shape`` matrix whose entry ``k`` sits at ``(rows[k], cols[k])`` and holds
    ``values[k]`` of a layer's ``(nnz,)`` values (int32 indices where they fit, as MKL is faster with them).

    It holds ``crow`` (shape ``(rows + 1,)``, the CSR row pointers), ``col`` (shape ``(nnz,)``, the column
    indices) and ``perm`` (shape ``(nnz,)``, the value positions in CSR order, or ``None`` when that is the
    values' own order).
    """

    def __init__(self, rows: Tensor, cols: Tensor, shape: tuple[int, int]) -> None:
        self.shape = shape
        index_dtype = torch.int32 if shape[0] * shape[1] < 2**31 else torch.int64
        order = torch.argsort(rows * shape[1] + cols)
        identity = bool((order == torch.arange(order.numel(), device=order.device)).all())
        crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
        crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
        self.crow, self.col = crow.to(index_dtype), cols[order].to(index_dtype)
        self.perm = None if identity else order.to(index_dtype)
        self._blocks: tuple[int, list[tuple[int, int, int, Tensor]]] | None = None

    def tensors(self) -> list[Tensor]:
        """The index tensors held."""
        return [self.crow, self.col] + ([] if self.perm is None else [self.perm])

    def ordered(self, values: Tensor) -> Tensor:
        """``values`` ``(nnz,)`` in CSR order."""
        return values if self.perm is None else values[self.perm]

    def matrix(self, values: Tensor) -> Tensor:
        """The ``torch.sparse_csr`` matrix holding ``values`` ``(nnz,)``."""
        return csr_tensor(self.crow, self.col, self.ordered(values), self.shape)

    def blocks(self, values: Tensor, n_blocks: int) -> list[tuple[int, Tensor]]:
        """The row blocks of :meth:`matrix` (``n_blocks`` equal ones) that hold entries, as
        ``(block index, CSR (rows / n_blocks, cols))`` (their structure is computed once per layout)."""
        if self._blocks is None or self._blocks[0] != n_blocks:
            rows = self.shape[0] // n_blocks
            starts = self.crow[::rows].tolist()
            crows = [self.crow[b * rows: (b + 1) * rows + 1] - starts[b] for b in range(n_blocks)]
            self._blocks = (n_blocks, [(b, starts[b], starts[b + 1], crows[b])
                                       for b in range(n_blocks) if starts[b + 1] > starts[b]])
        ordered, (n_rows, n_cols) = self.ordered(values), (self.shape[0] // n_blocks, self.shape[1])
        return [(b, csr_tensor(crow, self.col[start:end], ordered[start:end], (n_rows, n_cols)))
                for b, start, end, crow in self._blocks[1]]


def _rebuild_after_load(module: SparseWeight, incompatible_keys: object) -> None:
    module._rebuild_layout()  # load_state_dict wrote new indices


class SparseWeight(nn.Module):
    """Active values and indices of a ``weight_shape`` weight, with the CSR layout of its ``matrix_shape`` view.

    Args:
        weight_shape: the dense weight's shape. matrix_shape, transposed_shape: ``(rows, cols)`` of the forward
            product's matrix and of the input gradient's.
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
        transposed_shape: tuple[int, int],
        indices: Tensor,
        values: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.weight_shape, self.matrix_shape = tuple(weight_shape), tuple(matrix_shape)
        self.transposed_shape = tuple(transposed_shape)
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

    def _coordinates(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For the flat weight positions ``indices`` ``(nnz,)``: ``(rows, cols, t_rows, t_cols)``, int64 ``(nnz,)``
        each: the entries' places in the forward matrix (``matrix_shape``) and in the input gradient's matrix
        (``transposed_shape``)."""
        raise NotImplementedError

    def _rebuild_layout(self) -> None:
        """Derive the CSR structures of both products' matrices from ``indices`` (after a change of topology)."""
        rows, cols, t_rows, t_cols = self._coordinates(self.indices)
        self._layout = CSRLayout(rows, cols, self.matrix_shape)
        self._t_layout = CSRLayout(t_rows, t_cols, self.transposed_shape)

    def _follow_device(self) -> None:
        if self._layout.crow.device != self.indices.device:
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
        return [self.indices, *self._layout.tensors(), *self._t_layout.tensors()]

    @property
    def layout(self) -> CSRLayout:
        """The structure of the forward product's matrix (``matrix_shape``)."""
        self._follow_device()
        return self._layout

    @property
    def transposed_layout(self) -> CSRLayout:
        """The structure of the input gradient's matrix (``transposed_shape``)."""
        self._follow_device()
        return self._t_layout

    def csr(self, values: Tensor | None = None) -> Tensor:
        """The forward matrix as a ``torch.sparse_csr`` tensor (with ``values``, default the parameter)."""
        return self.layout.matrix(self.values if values is None else values)

    def csr_transposed(self, values: Tensor | None = None) -> Tensor:
        """The input gradient's matrix as a ``torch.sparse_csr`` tensor."""
        return self.transposed_layout.matrix(self.values if values is None else values)

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
