"""Metrics on masks: the per-layer density report, the ITOP rate and the memory a sparsity engine adds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd


def itop_rate(fired: Mapping[str, Tensor]) -> float:
    """In-Time Over-Parameterization rate (Liu et al. 2021): the fraction of sparse-layer weights that have
    ever been active. ``fired``: ``{name: bool tensor shaped like the weight}`` (the union of all masks)."""
    total = sum(f.numel() for f in fired.values())
    return sum(int(f.sum().item()) for f in fired.values()) / total


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    """Bytes held by ``tensors`` (``numel * element_size`` each)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def layer_report(masks: Mapping[str, Tensor], fired: Mapping[str, Tensor] | None = None) -> pd.DataFrame:
    """One row per sparse layer: ``name, shape, numel, nnz, density`` (and ``itop``, the fraction of the
    layer ever active, when ``fired`` is given).

    Args:
        masks: ``{name: bool mask shaped like the weight}``.
        fired: ``{name: bool tensor}``, the union of all masks so far.

    Returns:
        a ``pandas.DataFrame``; ``df.attrs`` holds ``density`` (global) and ``itop_rate`` (with ``fired``).
    """
    import pandas as pd

    rows = []
    for name, mask in masks.items():
        nnz = int(mask.sum().item())
        row = {"name": name, "shape": tuple(mask.shape), "numel": mask.numel(), "nnz": nnz}
        row["density"] = nnz / mask.numel()
        if fired is not None:
            row["itop"] = int(fired[name].sum().item()) / mask.numel()
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["density"] = float(frame["nnz"].sum() / frame["numel"].sum())
    if fired is not None:
        frame.attrs["itop_rate"] = itop_rate(fired)
    return frame
