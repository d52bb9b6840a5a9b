"""Training on part of a dataset: fixed random subsets (a smaller training set, a data ratio)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from dstlib import checks


def subset(data: TensorDataset, size: int, seed: int = 0) -> TensorDataset:
    """The first ``size`` samples of a random permutation fixed by ``seed``; all of ``data`` for ``size``
    0 or at least its length. The same ``(size, seed)`` always gives the same samples, and a smaller
    subset is contained in a larger one."""
    checks.integer("size", size, low=0)
    n = len(data)
    if size == 0 or size >= n:
        return data
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
    return TensorDataset(*(t[order] for t in data.tensors))
