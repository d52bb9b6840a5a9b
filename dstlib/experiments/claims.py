"""Claims as declarations: every chapter's ``CLAIMS`` is a table of :class:`ClaimSpec`, and :func:`judge`
turns it into verdicts through :mod:`dstlib.stats`, the same way for every chapter.

A claim compares the runs of one side with the runs of another on one metric, paired by seed (runs of
one seed share the initial weights and the data order):

* ``kind="superiority"``: side ``a`` beats side ``b`` by ``effect`` (the paper's effect, or the book's
  smallest effect of interest, :data:`BOOK_EFFECT`, when the paper gives none; ``reference`` says which);
* ``kind="non-inferiority"``: side ``a`` matches or beats side ``b``: it is worse by less than ``effect``
  (the margin), or better;
* ``kind="equivalence"``: side ``a`` matches side ``b`` within ``effect`` (the margin).

A side is a selector ``{column: value}`` of the records' frame. A claim can repeat over the values of a
setting found in the frame (``over``, e.g. every sparsity up to 0.5): a selector value :data:`AT` takes
the setting's value, and the name is formatted with the setting (``"SET - dense, sparsity {sparsity:g}"``).

The whole table is one family with one error budget ``alpha`` (:func:`dstlib.stats.judge_family`). A paper
chapter marks one claim ``headline=True``, the paper's central claim in the paper's own kind: it is tested
first at the full ``alpha``, and the other claims only once it is decided (fixed-sequence gatekeeping).
The other claims share ``alpha``: the superiority claims ``alpha * n_superiority / n`` under Holm's
correction, each margin claim ``alpha / n`` (Bonferroni); ``n`` counts the claims the run's records can
test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dstlib import checks, stats
from dstlib.experiments.common import align_by_seed, by_seed

# The book's smallest effect of interest, in accuracy (or Dice, WER) points: where a paper reports a
# difference without a size, a claim is tested against one point, the smallest gap this book calls one.
BOOK_EFFECT = 1.0
BOOK_EFFECT_REFERENCE = "the book's smallest effect of interest"
PAPER = ""  # ``reference`` of an effect the paper reports

KINDS = stats.KINDS
TRANSFORMS = ("identity", "log")


class _At:
    """The value of the claim's setting (see :class:`ClaimSpec`)."""

    def __repr__(self) -> str:
        return "AT"


AT = _At()

Levels = Callable[[pd.DataFrame], Sequence[Any]]


def levels(column: str, keep: Callable[[Any], bool] | None = None, **where: Any) -> Levels:
    """The sorted distinct values of ``column`` among the rows matching ``where`` (and ``keep(value)``)."""

    def values(frame: pd.DataFrame) -> list[Any]:
        rows = _select(frame, where)
        found = sorted(rows[column].dropna().unique()) if column in rows else []
        return [v.item() if hasattr(v, "item") else v for v in found if keep is None or keep(v)]

    return values


def largest(column: str, keep: Callable[[Any], bool] | None = None, **where: Any) -> Levels:
    """The largest value of ``column`` among :func:`levels` (none when there is no row)."""
    return lambda frame: levels(column, keep, **where)(frame)[-1:]


def smallest(column: str, keep: Callable[[Any], bool] | None = None, **where: Any) -> Levels:
    """The smallest value of ``column`` among :func:`levels` (none when there is no row)."""
    return lambda frame: levels(column, keep, **where)(frame)[:1]


def other_than(chosen: Levels, among: Levels) -> Levels:
    """The values of ``among`` that ``chosen`` does not give (the claim's other settings, beside a headline)."""
    return lambda frame: [value for value in among(frame) if value not in chosen(frame)]


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of a chapter's ``CLAIMS`` table (see the module docstring).

    ``name`` is the row label, formatted with the setting; ``metric`` the frame column; ``a`` and ``b`` the
    two sides (``b`` a number: ``a`` against that constant, such as a time ratio against 1); ``effect`` the
    effect of interest or the equivalence margin, in ``units`` after ``scale`` (100: fractions to points)
    and ``transform`` (``"log"``: ratios, such as a speed-up of 1.6x as ``log(1.6)``); ``reference`` where
    that number comes from (:data:`PAPER`: the paper's own); ``lower_is_better`` turns the comparison round
    (WER, time: ``b - a``); ``relative_margin`` reads a margin as a fraction of side ``b``'s mean; ``over``
    maps setting names to the function giving their values in the frame; ``headline`` marks the chapter's
    one headline claim (one setting at most).
    """

    name: str
    metric: str
    a: Mapping[str, Any]
    b: Mapping[str, Any] | float
    effect: float
    reference: str = PAPER
    kind: str = "superiority"
    over: Mapping[str, Levels] = field(default_factory=dict)
    units: str = "points"
    scale: float = 100.0
    transform: str = "identity"
    lower_is_better: bool = False
    relative_margin: bool = False
    headline: bool = False

    def __post_init__(self) -> None:
        checks.one_of("kind", self.kind, KINDS)
        checks.one_of("transform", self.transform, TRANSFORMS)
        checks.require(math.isfinite(self.effect) and self.effect > 0, "effect", self.effect, "a finite number > 0")
        checks.require(not self.relative_margin or self.kind != "superiority", "relative_margin",
                       self.relative_margin, "True only for a margin claim (equivalence, non-inferiority)")

    def settings(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Every combination of the setting values found in ``frame`` (one ``{}`` without ``over``)."""
        combos: list[dict[str, Any]] = [{}]
        for key, values in self.over.items():
            combos = [{**combo, key: value} for combo in combos for value in values(frame)]
        return combos

    def values(self, frame: pd.DataFrame, setting: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
        """``(a, b, effect)`` for one setting: the two sides' values aligned by seed, oriented so that
        ``a - b > 0`` means the claim holds, and the effect in their units (the margin made absolute)."""
        a_rows = by_seed(frame, self.metric, self.scale, **_place(self.a, setting))
        if isinstance(self.b, Mapping):
            b_rows = by_seed(frame, self.metric, self.scale, **_place(self.b, setting))
        else:
            b_rows = pd.Series(float(self.b) * self.scale, index=a_rows.index)
        effect = self.effect * float(b_rows.mean()) if self.relative_margin else self.effect
        if self.transform == "log":
            a_rows, b_rows = np.log(a_rows), np.log(b_rows)
        a, b = align_by_seed(a_rows, b_rows)
        return (b, a, effect) if self.lower_is_better else (a, b, effect)


def _place(selector: Mapping[str, Any], setting: Mapping[str, Any]) -> dict[str, Any]:
    return {key: setting[key] if value is AT else value for key, value in selector.items()}


def _select(frame: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    rows = frame
    for key, value in where.items():
        if key not in rows:
            return rows.iloc[0:0]
        rows = rows[rows[key] == value]
    return rows


def judge(claims: Sequence[ClaimSpec], frame: pd.DataFrame, *, alpha: float = 0.05,
          rerun: str = "") -> stats.Judgement:
    """The verdicts of the ``claims`` table on the records ``frame`` (see the module docstring); claims the
    records cannot test (a side without runs) are left out and do not count in the family. ``rerun`` is
    the command, with ``{seeds}``, that the power lines offer."""
    headlines = [spec.name for spec in claims if spec.headline]
    if len(headlines) > 1:
        raise ValueError(f"CLAIMS headline=True: {headlines}; allowed one headline claim per chapter")
    found: list[stats.Claim] = []
    headline = None
    for spec in claims if not frame.empty else ():
        settings = spec.settings(frame)
        if spec.headline and len(settings) > 1:
            raise ValueError(f"headline claim {spec.name!r}: {len(settings)} settings {settings}; allowed one")
        for setting in settings:
            a, b, effect = spec.values(frame, setting)
            if len(a):
                name = spec.name.format(**setting)
                found.append(stats.Claim(name, a, b, effect, paired=True, units=spec.units,
                                         reference=spec.reference, kind=spec.kind))
                headline = name if spec.headline else headline
    if not found:
        return stats.Judgement([], [], alpha)
    return stats.judge_family(found, alpha=alpha, headline=headline, rerun=rerun)
