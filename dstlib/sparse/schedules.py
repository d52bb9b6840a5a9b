"""Schedules, all functions of the optimizer step ``t``: the drop fraction of prune-and-regrow updates, and
the cubic density schedule of gradual pruning (Zhu & Gupta 2017, used by GMP and GraNet)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dstlib import checks

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
        checks.number("drop_fraction", self.initial, low=0, high=1)
        checks.require(checks.is_number(self.minimum, low=0, high=self.initial), "drop_fraction_min", self.minimum,
                       f"a number in [0, drop_fraction={self.initial}]")
        checks.one_of("drop_schedule", self.kind, DROP_SCHEDULES)
        checks.integer("update_begin", self.begin, low=0)
        if self.end is None:
            checks.require(self.kind == "constant", "update_end", self.end,
                           f"a step (or total_steps) with drop_schedule={self.kind!r}; None only with 'constant'")
        else:
            checks.require(checks.is_number(self.end, low=self.begin, low_open=True, integer=True), "update_end",
                           self.end, f"an integer > update_begin={self.begin}")

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
    checks.require(end > begin, "prune_end", end, f"a step > prune_begin={begin!r}")
    progress = min(max((t - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1 - progress) ** 3
