"""Schedules, all functions of the optimizer step ``t``: when topology updates happen (:class:`Schedule`, shared
by the masked and the truly sparse engine), the drop fraction of prune-and-regrow updates, and the cubic density
schedule of gradual pruning (Zhu & Gupta 2017, used by GMP and GraNet)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dstlib import checks

DROP_SCHEDULES = ("constant", "cosine", "linear")
"""Shapes accepted by :class:`DropFraction`."""
STOP_FRACTION = 0.75
"""Default end of topology changes, as a fraction of the run (RigL's): ``int(0.75 * total_steps)``."""


def stop_step(total_steps: int, end: int | None) -> int:
    """``end``, or by default the step ``int(STOP_FRACTION * total_steps)``."""
    return int(STOP_FRACTION * total_steps) if end is None else end


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


@dataclass(frozen=True)
class Schedule:
    """When an engine updates its topology, and how much: one object shared by
    :class:`~dstlib.sparse.SparseEngine` and :class:`~dstlib.sparse.truly_sparse.TrulySparseEngine`.

    An update is due at every step ``t`` (optimizer steps taken) that is a multiple of ``update_every``; its
    prune-and-regrow part replaces the fraction ``drop_fraction(t)`` of each group's active units.

    Attributes:
        update_every: optimizer steps between updates.
        total_steps: optimizer steps of the whole run (``None`` for a static engine).
        drop_fraction: the prune-and-regrow fraction (``None``: no prune-and-regrow).
    """

    update_every: int = 100
    total_steps: int | None = None
    drop_fraction: DropFraction | None = None

    @classmethod
    def build(
        cls,
        *,
        update_every: int | None = None,
        update_every_epochs: float | None = None,
        steps_per_epoch: int | None = None,
        total_steps: int | None = None,
        regrow: bool = True,
        update_begin: int = 0,
        update_end: int | None = None,
        drop_fraction: float = 0.3,
        drop_schedule: str = "cosine",
        drop_fraction_min: float = 0.0,
    ) -> Schedule:
        """The schedule of an engine's keywords (they mean what they mean for
        :class:`~dstlib.sparse.SparseEngine`): ``update_every`` (default 100) or ``round(update_every_epochs *
        steps_per_epoch)``; with ``regrow`` a :class:`DropFraction` over ``[update_begin, update_end)``,
        ``update_end`` defaulting to :func:`stop_step`. ``total_steps`` is required with ``regrow``.

        Raises:
            ValueError: a bad keyword, or ``update_every`` given with ``update_every_epochs``.
        """
        if update_every_epochs is not None or steps_per_epoch is not None:
            checks.require(update_every is None, "update_every", update_every,
                           "None with update_every_epochs/steps_per_epoch (give one or the other)")
            checks.number("update_every_epochs", update_every_epochs, low=0, low_open=True)
            checks.integer("steps_per_epoch", steps_per_epoch, low=1)
            update_every = max(1, round(update_every_epochs * steps_per_epoch))
        update_every = checks.integer("update_every", 100 if update_every is None else update_every, low=1)
        if regrow or total_steps is not None:
            checks.integer("total_steps", total_steps, low=1)
        window = None
        if regrow:
            end = stop_step(total_steps, update_end)
            window = DropFraction(drop_fraction, drop_schedule, update_begin, end, drop_fraction_min)
        return cls(update_every, total_steps, window)

    def last_update(self, t: int) -> int:
        """The last update step at or before step ``t``."""
        return t - t % self.update_every

    def next_update(self, t: int) -> int:
        """The first update step at or after step ``t``."""
        return -(-t // self.update_every) * self.update_every

    def fraction(self, t: int) -> float:
        """The drop fraction of an update at step ``t`` (0 outside the window or without prune-and-regrow)."""
        return 0.0 if self.drop_fraction is None else self.drop_fraction(t)
