"""Data addressed by sample index: the one way :func:`dstlib.train.fit` and
:func:`dstlib.evaluation.evaluate` read batches.

Data can be in-memory tensors (fastest), a map-style ``Dataset`` with a ``collate`` function
(variable-length items), or any iterable of batches such as a ``DataLoader`` (read as it comes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

Data = Dataset | Sequence[Tensor] | Iterable[Any]


class IndexedData:
    """Training data addressed by sample index: in-memory tensors, or a map-style dataset + ``collate``.

    ``fetch(index)`` returns the batch of the samples ``index`` ``(B,)``: a tuple of tensors, or
    whatever ``collate`` makes of ``[dataset[i] for i in index]``.
    """

    def __init__(self, data: Dataset | Sequence[Tensor], collate: Callable[[list[Any]], Any] | None = None) -> None:
        self.tensors: tuple[Tensor, ...] | None = None
        if isinstance(data, TensorDataset):
            self.tensors = tuple(data.tensors)
        elif isinstance(data, list | tuple) and data and all(isinstance(t, Tensor) for t in data):
            self.tensors = tuple(data)
        if self.tensors is not None:
            sizes = {t.shape[0] for t in self.tensors}
            if len(sizes) != 1:
                raise ValueError(f"data first dimensions={sorted(sizes)}: allowed tensors of one length N")
            self.size = sizes.pop()
        else:
            self.dataset = data
            self.size = len(data)  # type: ignore[arg-type]
            from torch.utils.data import default_collate

            self.collate = collate or default_collate

    def __len__(self) -> int:
        return self.size

    def fetch(self, index: Tensor) -> Any:
        if self.tensors is not None:
            return tuple(t[index] for t in self.tensors)
        return self.collate([self.dataset[i] for i in index.tolist()])


def is_indexed(data: Any) -> bool:
    """Whether ``data`` can be addressed by index (tensors or a map-style dataset with ``len``)."""
    if isinstance(data, TensorDataset):
        return True
    if isinstance(data, list | tuple):
        return bool(data) and all(isinstance(t, Tensor) for t in data)
    iterable = isinstance(data, torch.utils.data.IterableDataset)
    return isinstance(data, Dataset) and hasattr(data, "__len__") and not iterable


def in_order(data: Data, batch_size: int, collate: Callable | None) -> Iterable[Any]:
    """The batches of ``data`` in sample order (evaluation); an iterable of batches as it is."""
    if is_indexed(data):
        source = IndexedData(data, collate)  # type: ignore[arg-type]
        return (source.fetch(torch.arange(s, min(s + batch_size, len(source))))
                for s in range(0, len(source), batch_size))
    return data
