"""Granularities: what one mask decision switches, and where it may switch it.

A granularity maps a weight of shape ``(out, in, *kernel)`` to a *unit* tensor on which prune and grow
decisions are taken, splits the units into *groups* (contiguous slices along ``out``) that keep their own
counts, and may forbid some units per group (a *region*). The stored mask always has the full weight shape.

- :class:`Element`: one unit per weight, one group per layer (SET, RigL, ...).
- :class:`Kernel`: one unit per ``(out, in)`` pair switching a whole kernel (E2ENet's feature fusion),
  scored by the mean ``|w|`` of the kernel (the L1 norm divided by the kernel size: same ranking inside a
  layer, comparable across layers). Linear weights ``(out, in)`` have one-element kernels.
- :class:`RegionGroups`: DSN's region-constrained groups. The ``out`` channels are split into ``G``
  contiguous groups (sizes as in ``torch.tensor_split``); group ``g`` (0-based) may only hold weights in the
  first ``r_g = floor(k / G) * (g + 1)`` taps of the last kernel axis (``k`` = its length); the density is
  relative to that region. Needs weights with a kernel axis, e.g. Conv1d ``(out, in, k)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from dstlib import checks
from dstlib.sparse.criteria import random_scores

GRANULARITIES = ("element", "kernel", "region")
"""Names accepted by :func:`make_granularity` (``"region"`` means ``RegionGroups(groups=3)``)."""


class Element:
    """One mask entry per weight; the base class (every method is the identity or trivial here)."""

    name = "element"

    def check(self, name: str, shape: Sequence[int]) -> None:
        """Raise ``ValueError`` if a weight of ``shape`` cannot use this granularity."""

    def to_units(self, x: Tensor) -> Tensor:
        """Reduce a weight-shaped tensor to units: here the identity."""
        return x

    def unit_mask(self, mask: Tensor) -> Tensor:
        """Bool unit mask from a weight-shaped mask: here the mask itself."""
        return mask.bool()

    def expand(self, unit_mask: Tensor, shape: Sequence[int]) -> Tensor:
        """Bool weight-shaped mask from a unit mask: here the identity."""
        return unit_mask

    def unit_size(self, shape: Sequence[int]) -> int:
        """Number of weights one unit switches."""
        return 1

    def groups(self, shape: Sequence[int]) -> list[slice]:
        """Slices along dim 0 of the unit tensor, each keeping its own count: here the whole layer."""
        return [slice(0, shape[0])]

    def allowed(self, block_shape: Sequence[int], group: int, device: torch.device) -> Tensor | None:
        """Bool tensor of ``block_shape`` (the units of one group): where units may be active; ``None`` =
        everywhere."""
        return None

    def capacity(self, block_shape: Sequence[int], group: int) -> int:
        """How many units of the group may be active at density 1."""
        return math.prod(block_shape)

    def init_scores(
        self, block_shape: Sequence[int], group: int, generator: torch.Generator, device: torch.device
    ) -> Tensor:
        """Scores choosing the initial active units (top-n of them): uniform random draws."""
        return random_scores(block_shape, generator, device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Kernel(Element):
    """One mask entry per ``(out, in)`` kernel; units have shape ``(out, in)``."""

    name = "kernel"

    def to_units(self, x: Tensor) -> Tensor:
        """``(out, in, *kernel)`` -> ``(out, in)``: the mean over the kernel axes."""
        return x.flatten(2).mean(-1) if x.ndim > 2 else x

    def unit_mask(self, mask: Tensor) -> Tensor:
        """``(out, in, *kernel)`` bool -> ``(out, in)``: a kernel is active if any of its entries is."""
        return mask.flatten(2).any(-1) if mask.ndim > 2 else mask.bool()

    def expand(self, unit_mask: Tensor, shape: Sequence[int]) -> Tensor:
        """``(out, in)`` -> ``(out, in, *kernel)``: each kernel all on or all off."""
        return unit_mask.reshape(*unit_mask.shape, *([1] * (len(shape) - 2))).expand(*shape)

    def unit_size(self, shape: Sequence[int]) -> int:
        return math.prod(shape[2:])


class RegionGroups(Element):
    """DSN's region-constrained groups (see the module docstring).

    Args:
        groups: ``G``, the number of output-channel groups.
        fill: initial mask inside each region: ``"random"`` (uniform, exact count) or ``"first_taps"`` (DSN's
            ``remain_sort``: all ``(out, in)`` pairs of tap 0, then of tap 1, ..., until the budget is used).
    """

    name = "region"
    FILLS = ("random", "first_taps")

    def __init__(self, groups: int = 3, fill: str = "random") -> None:
        self.n_groups = checks.integer("groups", groups, low=1)
        self.fill = checks.one_of("fill", fill, self.FILLS)

    def check(self, name: str, shape: Sequence[int]) -> None:
        ok = len(shape) >= 3 and shape[-1] >= self.n_groups and shape[0] >= self.n_groups
        checks.require(ok, "granularity", self, f"only on weights (out, in, *kernel) with out and the last kernel "
                       f"axis >= {self.n_groups}; {name!r} has shape {tuple(shape)} (exclude it, e.g. "
                       "include=[torch.nn.Conv1d])")

    def groups(self, shape: Sequence[int]) -> list[slice]:
        bounds = [len(chunk) for chunk in torch.arange(shape[0]).tensor_split(self.n_groups)]
        starts = [sum(bounds[:g]) for g in range(self.n_groups)]
        return [slice(start, start + size) for start, size in zip(starts, bounds, strict=True)]

    def region_taps(self, kernel_length: int, group: int) -> int:
        """``r_g = floor(k / G) * (g + 1)``: the number of leading taps group ``g`` may use."""
        return kernel_length // self.n_groups * (group + 1)

    def allowed(self, block_shape: Sequence[int], group: int, device: torch.device) -> Tensor:
        taps = torch.arange(block_shape[-1], device=device)
        return (taps < self.region_taps(block_shape[-1], group)).expand(*block_shape)

    def capacity(self, block_shape: Sequence[int], group: int) -> int:
        return math.prod(block_shape[:-1]) * self.region_taps(block_shape[-1], group)

    def init_scores(
        self, block_shape: Sequence[int], group: int, generator: torch.Generator, device: torch.device
    ) -> Tensor:
        if self.fill == "random":
            return super().init_scores(block_shape, group, generator, device)
        per_tap = math.prod(block_shape[:-1])
        within = torch.arange(per_tap, dtype=torch.float64, device=device).reshape(*block_shape[:-1], 1)
        tap = torch.arange(block_shape[-1], dtype=torch.float64, device=device)
        return -(tap * per_tap + within)

    def __repr__(self) -> str:
        return f"RegionGroups(groups={self.n_groups}, fill={self.fill!r})"


Granularity = Element
"""Type of granularity objects (all derive from :class:`Element`)."""


def make_granularity(spec: str | Element) -> Element:
    """``"element"`` / ``"kernel"`` / ``"region"`` (3 groups) or a granularity object -> granularity object.

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(spec, Element):
        return spec
    factories = {"element": Element, "kernel": Kernel, "region": RegionGroups}
    checks.require(spec in factories, "granularity", spec,
                   f"one of {', '.join(map(repr, GRANULARITIES))} or a granularity object")
    return factories[spec]()
