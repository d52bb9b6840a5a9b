"""Schedules, all functions of the optimizer step ``t``: the drop fraction of prune-and-regrow updates, and
the cubic density schedule of gradual pruning (Zhu & Gupta 2017, used by GMP and GraNet)."""

from __future__ import annotations

import math
from dataclasses import dataclass

DROP_SCHEDULES = ("constant", "cosine", "linear")
"""Shapes accepted by :class:`DropFraction`."""


@dataclass(frozen=True)
class DropFraction:
    """Fraction of a layer's active weights replaced at an update at step ``t``.

    ``f(t) = minimum + (initial - minimum) * shape(s)`` with ``s = (t - begin) / (end - begin)`` and
    ``shape`` = 1 (``"constant"``), ``(1 + cos(pi s)) / 2`` (``"cosine"``, RigL and the ``sparselearning``
    forks' ``CosineDecay``) or ``1 - s`` (``"linear"``). Outside ``[begin, end)`` there are no updates and
    ``f(t) = 0``.

    Example: ``DropFraction(0.3, "cosine", 0, 1000)(500) == 0.15``.
    """

    initial: float
    kind: str = "cosine"
    begin: int = 0
    end: int | None = None
    minimum: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= 1:
            raise ValueError(f"drop_fraction={self.initial!r}: must be in [0, 1]")
        if not 0 <= self.minimum <= self.initial:
            raise ValueError(f"drop_fraction_min={self.minimum!r}: must be in [0, drop_fraction={self.initial}]")
        if self.kind not in DROP_SCHEDULES:
            raise ValueError(f"drop_schedule={self.kind!r}: allowed are {', '.join(DROP_SCHEDULES)}")
        if self.begin < 0:
            raise ValueError(f"update_begin={self.begin!r}: must be >= 0")
        if self.end is None and self.kind != "constant":
            raise ValueError(f"drop_schedule={self.kind!r} needs update_end (or total_steps)")
        if self.end is not None and self.end <= self.begin:
            raise ValueError(f"update_end={self.end!r}: must be greater than update_begin={self.begin}")

    def active(self, t: int) -> bool:
        """Whether step ``t`` lies in the update window ``[begin, end)``."""
        return self.begin <= t and (self.end is None or t < self.end)

    def __call__(self, t: int) -> float:
        if not self.active(t):
            return 0.0
        if self.kind == "constant":
            return self.initial
        progress = (t - self.begin) / (self.end - self.begin)
        shape = (1 + math.cos(math.pi * progress)) / 2 if self.kind == "cosine" else 1 - progress
        return self.minimum + (self.initial - self.minimum) * shape


def cubic_density(t: int, initial: float, final: float, begin: int, end: int) -> float:
    """Gradual-pruning density at step ``t`` (Zhu & Gupta 2017):

    ``d(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** 3`` for ``begin <= t <= end``,
    ``initial`` before ``begin`` and ``final`` after ``end``.
    """
    if end <= begin:
        raise ValueError(f"prune_end={end!r}: must be greater than prune_begin={begin!r}")
    progress = min(max((t - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1 - progress) ** 3
