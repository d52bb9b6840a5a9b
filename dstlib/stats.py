"""The evidence behind every chapter verdict: effects over seeds, family correction, detectable effects.

A chapter states the paper's claims as :class:`Claim` rows (method ``a`` is better than ``b`` by the
paper's ``paper_effect``) and :func:`judge` turns the per-seed results into one :class:`Verdict` per
claim, each with exactly one outcome from :data:`OUTCOMES`:

- ``"reproduced"``: the Holm-adjusted p-value is below ``alpha`` and the estimate is in the paper's
  direction (``a - b > 0``);
- ``"contradicted"``: the Holm-adjusted p-value is below ``alpha`` and the estimate is negative;
- ``"not reproduced"``: not significant, the run could detect an effect of the paper's size
  (minimum detectable effect at most ``paper_effect``) and the family-corrected interval lies
  entirely below ``paper_effect``: the run rules out an effect as large as the paper's;
- ``"inconclusive"``: anything else, in particular every non-significant claim whose minimum
  detectable effect exceeds ``paper_effect`` and every claim whose spread over seeds is undefined.

Claims that ``a`` *matches* ``b`` are tested against a margin: :func:`equivalence` ("matches": two
one-sided tests) and :func:`non_inferiority` ("matches or beats": one one-sided test). A chapter's claims
form one family (:func:`judge_family`): its one *headline* claim, when it has one, is tested first at the
full ``alpha`` and the other claims only once the headline is decided (fixed-sequence gatekeeping), so the
family-wise error stays at ``alpha``. Every verdict also says how many seeds would give 80% power at its
effect of interest with the spread the run measured (:func:`seeds_for_power`).

The arithmetic lives in two vectorised functions, :func:`difference_arrays` (per-claim estimate,
standard error and degrees of freedom over the last axis) and :func:`assess` (the family step: Holm,
the corrected intervals, the minimum detectable effect and the outcome). :func:`difference` and
:func:`judge` call them on one family; simulations call them on thousands of simulated grids at once.

Degenerate data are reported, never hidden: fewer than two values per side (two pairs when paired)
leave the standard error undefined (NaN), and so do values without spread (a standard error of zero,
up to rounding). A zero spread over two or three seeds says nothing about the noise, so no p-value,
interval or detectable effect is claimed from it (NaN), and the claim is "inconclusive".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
OUTCOMES = (REPRODUCED, CONTRADICTED, NOT_REPRODUCED, INCONCLUSIVE)

# A standard error below this fraction of the largest |value| is rounding noise: treated as exactly zero.
_ZERO_SPREAD_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Effect:
    """A difference of means ``a - b`` over seeds with its t-based uncertainty.

    ``estimate``, ``se``, ``low`` and ``high`` are in the units of the values; ``dof`` is the t
    distribution's degrees of freedom (Welch-Satterthwaite when unpaired, ``n - 1`` when paired);
    ``low``/``high`` bound the two-sided interval at ``level``; ``p_value`` is two-sided for the null
    hypothesis of no difference. ``se`` is NaN with fewer than two values per side (two pairs) and 0
    without spread; in both cases ``low``, ``high`` and ``p_value`` are NaN.
    """

    estimate: float
    se: float
    dof: float
    low: float
    high: float
    p_value: float
    n_a: int
    n_b: int
    paired: bool
    level: float


KINDS = ("superiority", "non-inferiority", "equivalence")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper: method ``a`` beats ``b`` by ``paper_effect`` (same units as ``a - b``), or,
    by ``kind``, ``a`` matches or beats ``b`` (``"non-inferiority"``: ``a - b > -paper_effect``) or ``a``
    matches ``b`` (``"equivalence"``: ``|a - b| < paper_effect``), ``paper_effect`` then being the margin.

    ``a`` and ``b`` are the per-seed values (when ``paired``, position ``i`` of both comes from seed
    ``i``); ``name`` is the row label of the verdict table and forest plot; ``units`` is printed after
    the numbers (e.g. ``"points"``). ``reference`` names where ``paper_effect`` comes from when the paper
    reports no size (e.g. ``"the book's smallest effect of interest"``); empty means the paper's own.
    """

    name: str
    a: tuple[float, ...]
    b: tuple[float, ...]
    paper_effect: float
    paired: bool = False
    units: str = ""
    reference: str = ""
    kind: str = "superiority"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: allowed one of {', '.join(map(repr, KINDS))}")
        object.__setattr__(self, "a", tuple(float(value) for value in _check_values("a", self.a)))
        object.__setattr__(self, "b", tuple(float(value) for value in _check_values("b", self.b)))
        if not (np.isfinite(self.paper_effect) and self.paper_effect > 0):
            raise ValueError(f"paper_effect={self.paper_effect!r}: allowed a finite number > 0 "
                             f"(the paper's a - b, with a the method the paper says is better)")


@dataclass(frozen=True)
class Assessment:
    """The family step of :func:`assess`, every array shaped like its ``estimate`` argument ``(..., m)``.

    ``corrected_low``/``corrected_high`` bound the Bonferroni-widened interval at ``corrected_level``
    (``1 - alpha / m``, one value per family, shape ``(..., 1)``); ``family_size`` is ``m``, the
    number of claims with a defined p-value in each family (shape ``(..., 1)``).
    """

    p_value: np.ndarray
    adjusted_p: np.ndarray
    corrected_low: np.ndarray
    corrected_high: np.ndarray
    corrected_level: np.ndarray
    family_size: np.ndarray
    mde: np.ndarray
    outcome: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Verdict:
    """The judged claim: its effect, the family-corrected evidence, the outcome and its sentence.

    ``alpha`` is the family-wise error rate and ``family_size`` the ``m`` claims it was spread over;
    ``corrected_low``/``corrected_high`` bound the interval at ``corrected_level`` = ``1 - alpha/m``;
    ``mde`` is the minimum detectable effect at ``alpha/m`` and 80% power (or the power given to
    :func:`judge`); all in ``units``. ``seeds_needed`` is the number of seeds that would give that power
    at ``paper_effect`` with the spread this run measured (``None`` when the spread is undefined).
    """

    name: str
    effect: Effect
    alpha: float
    family_size: int
    adjusted_p: float
    corrected_low: float
    corrected_high: float
    corrected_level: float
    mde: float
    paper_effect: float
    outcome: str
    units: str
    sentence: str
    seeds_needed: int | None = None
    reference: str = ""


def _check_probability(name: str, value: float) -> float:
    if not (isinstance(value, numbers.Real) and 0 < value < 1):
        raise ValueError(f"{name}={value!r}: allowed a number in (0, 1)")
    return float(value)


def _check_values(name: str, values: object) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}={values!r}: allowed a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}={values!r}: allowed finite numbers (no NaN or inf)")
    return array


def difference_arrays(a: np.ndarray, b: np.ndarray, *, paired: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, standard error and degrees of freedom of ``mean(a) - mean(b)`` over the last axis.

    ``a``: ``(..., n_a)``, ``b``: ``(..., n_b)`` finite values (``n_a == n_b`` when ``paired``);
    returns three arrays shaped ``(...)``. Paired: a one-sample t on the differences ``a - b`` (``se =
    sd / sqrt(n)``, ``dof = n - 1``). Unpaired: Welch (``se = sqrt(s_a^2/n_a + s_b^2/n_b)``,
    Welch-Satterthwaite ``dof``). ``se`` and ``dof`` are NaN with fewer than two values per side;
    ``se`` is 0 when it is below ``1e-10`` times the largest ``|value|`` (rounding noise), and
    ``dof`` is then NaN where the formula divides zero by zero.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a).max(axis=-1), np.abs(b).max(axis=-1))
    if paired:
        deltas = a - b
        n = deltas.shape[-1]
        estimate = deltas.mean(axis=-1)
        if n < 2:
            return estimate, np.full_like(estimate, np.nan), np.full_like(estimate, np.nan)
        se = deltas.std(axis=-1, ddof=1) / np.sqrt(n)
        dof = np.full_like(estimate, n - 1.0)
    else:
        n_a, n_b = a.shape[-1], b.shape[-1]
        estimate = a.mean(axis=-1) - b.mean(axis=-1)
        if min(n_a, n_b) < 2:
            return estimate, np.full_like(estimate, np.nan), np.full_like(estimate, np.nan)
        var_a, var_b = a.var(axis=-1, ddof=1) / n_a, b.var(axis=-1, ddof=1) / n_b
        se = np.sqrt(var_a + var_b)
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    se = np.where(se <= _ZERO_SPREAD_TOLERANCE * scale, 0.0, se)
    return estimate, se, dof


def _defined(se: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Where a t statistic carries information: a positive standard error and finite degrees of freedom."""
    return (se > 0) & np.isfinite(dof)


def t_interval(estimate: np.ndarray, se: np.ndarray, dof: np.ndarray, level: float | np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval ``estimate -/+ t_{(1+level)/2, dof} * se`` (arrays broadcast; NaN where undefined)."""
    estimate, se, dof = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (estimate, se, dof)))
    defined = _defined(se, dof)
    half = np.full(estimate.shape, np.nan)
    quantile = scipy_stats.t.ppf((1 + np.asarray(level)) / 2, np.where(defined, dof, 1.0))
    half[defined] = np.broadcast_to(quantile * se, estimate.shape)[defined]
    return estimate - half, estimate + half


def t_p_value(estimate: np.ndarray, se: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """Two-sided p-value of ``estimate / se`` under a t distribution with ``dof`` (NaN where undefined)."""
    estimate, se, dof = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (estimate, se, dof)))
    defined = _defined(se, dof)
    p = np.full(estimate.shape, np.nan)
    p[defined] = 2 * scipy_stats.t.sf(np.abs(estimate[defined]) / se[defined], dof[defined])
    return p


def difference(a: Sequence[float], b: Sequence[float], *, paired: bool = False, level: float = 0.95) -> Effect:
    """The difference of means ``a - b`` over seeds, with a two-sided t interval at ``level``.

    ``a``, ``b``: 1-D per-seed values. Unpaired (default): Welch's t with Welch-Satterthwaite degrees of
    freedom. ``paired=True``: a one-sample t on the per-seed differences (``a[i]`` and ``b[i]`` from seed
    ``i``; equal lengths required). Fewer than two values per side (two pairs) or no spread give NaN
    ``low``/``high``/``p_value`` (see :class:`Effect`). Raises ``ValueError`` on empty or non-finite
    values, unequal lengths when paired, or ``level`` outside (0, 1).
    """
    values_a, values_b = _check_values("a", a), _check_values("b", b)
    level = _check_probability("level", level)
    if paired and values_a.size != values_b.size:
        raise ValueError(f"len(b)={values_b.size}: allowed len(a)={values_a.size} when paired=True")
    estimate, se, dof = difference_arrays(values_a, values_b, paired=paired)
    low, high = t_interval(estimate, se, dof, level)
    return Effect(estimate=float(estimate), se=float(se), dof=float(dof), low=float(low), high=float(high),
                  p_value=float(t_p_value(estimate, se, dof)), n_a=values_a.size, n_b=values_b.size,
                  paired=paired, level=level)


def _holm_last_axis(p: np.ndarray) -> np.ndarray:
    """Holm adjustment of ``p`` ``(..., m)`` within each family along the last axis (NaN kept, not counted)."""
    order = np.argsort(p, axis=-1)  # NaN sorts last
    ordered = np.take_along_axis(p, order, axis=-1)
    family_size = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    factors = family_size - np.arange(p.shape[-1])
    adjusted_ordered = np.minimum(1.0, np.maximum.accumulate(ordered * factors, axis=-1))
    adjusted = np.empty_like(adjusted_ordered)
    np.put_along_axis(adjusted, order, adjusted_ordered, axis=-1)
    return adjusted


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family, in the input order (shape ``(m,)``).

    The ``k``-th smallest of the ``m`` p-values is multiplied by ``m - k + 1``, made non-decreasing in
    that order and capped at 1; a claim is significant at family-wise error ``alpha`` when its adjusted
    p-value is below ``alpha``. NaN p-values (untestable claims) stay NaN and do not count in ``m``:
    an untested claim spends none of the family's error rate.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"p_values={p_values!r}: allowed a 1-D sequence of p-values")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p_values={p_values!r}: allowed numbers in [0, 1] or NaN")
    return _holm_last_axis(p)


def minimum_detectable_effect(se: float | np.ndarray, dof: float | np.ndarray, *, alpha: float | np.ndarray,
                              power: float = 0.8) -> float | np.ndarray:
    """The smallest true difference a two-sided t-test at level ``alpha`` detects with probability ``power``.

    ``MDE = (t_{1 - alpha/2, dof} + t_{power, dof}) * se``, in the units of ``se``. The approximation
    treats ``se`` as the known standard error of the estimate (it is the observed one), uses central t
    quantiles in place of the noncentral t, and ignores rejections in the wrong tail; with few seeds the
    true power at the MDE is somewhat below ``power``. For a family of ``m`` claims under Holm pass the
    conservative ``alpha / m``. NaN where ``se`` is NaN or 0 (no information about the noise) or ``dof``
    is not finite. Arrays broadcast.
    """
    se_array, dof_array = np.asarray(se, dtype=float), np.asarray(dof, dtype=float)
    if np.any(se_array < 0):
        raise ValueError(f"se={se!r}: allowed numbers >= 0 (or NaN when undefined)")
    if np.any(dof_array <= 0):
        raise ValueError(f"dof={dof!r}: allowed numbers > 0 (or NaN when undefined)")
    alpha_array = np.asarray(alpha, dtype=float)
    if np.any((alpha_array <= 0) | (alpha_array >= 1)):
        raise ValueError(f"alpha={alpha!r}: allowed a number in (0, 1)")
    power = _check_probability("power", power)
    se_array, dof_array, alpha_array = np.broadcast_arrays(se_array, dof_array, alpha_array)
    defined = _defined(se_array, dof_array)
    safe_dof = np.where(defined, dof_array, 1.0)
    quantiles = scipy_stats.t.ppf(1 - alpha_array / 2, safe_dof) + scipy_stats.t.ppf(power, safe_dof)
    mde = np.where(defined, quantiles * se_array, np.nan)
    return float(mde) if mde.ndim == 0 else mde


MAX_SEEDS = 10_000


def seeds_for_power(effect: Effect, target: float, *, alpha: float, power: float = 0.8,
                    kind: str = "superiority") -> int | None:
    """How many seeds (pairs when paired, per side otherwise) would give ``power`` at ``target`` with the
    spread ``effect`` measured: the smallest ``n >= 2`` with ``(t_1 + t_2) * sd / sqrt(n) <= target``.

    ``sd`` is the per-seed spread behind ``effect.se`` (``se * sqrt(n)``; for Welch the two sides' seeds are
    taken as equal in number). The quantiles follow the test: superiority (two-sided at ``alpha``, a true
    difference of ``target``) ``t_{1-alpha/2} + t_{power}``; non-inferiority (one-sided, margin ``target``,
    no true difference) ``t_{1-alpha} + t_{power}``; equivalence (two one-sided tests, no true difference)
    ``t_{1-alpha} + t_{(1+power)/2}``; ``dof = n - 1`` (paired) or ``2n - 2``. The same approximation as
    :func:`minimum_detectable_effect`. ``None`` when the spread is undefined (NaN or zero), or when more
    than :data:`MAX_SEEDS` would be needed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: allowed one of {', '.join(map(repr, KINDS))}")
    power = _check_probability("power", power)
    alpha = _check_probability("alpha", alpha)
    if not (np.isfinite(effect.se) and effect.se > 0 and np.isfinite(target) and target > 0):
        return None
    sd = effect.se * np.sqrt(effect.n_a if effect.paired else min(effect.n_a, effect.n_b))
    normal = _power_quantile(kind, alpha, power, np.inf)  # the t quantiles' limit: a lower bound on n
    least = max(2, math.floor((normal * sd / target) ** 2))
    if least > MAX_SEEDS:
        return None
    n = np.arange(least, min(least + 200, MAX_SEEDS) + 1)
    dof = n - 1.0 if effect.paired else 2.0 * n - 2.0
    enough = _power_quantile(kind, alpha, power, dof) * sd / np.sqrt(n) <= target
    return int(n[np.argmax(enough)]) if enough.any() else None


def _power_text(seeds: int | None, power: float) -> str:
    if seeds is None:
        return ""
    return f" {seeds} seeds would give {power:.0%} power at the effect of interest with this spread."


def assess(estimate: np.ndarray, se: np.ndarray, dof: np.ndarray, paper_effect: np.ndarray, *,
           alpha: float = 0.05, power: float = 0.8) -> Assessment:
    """Judge families of claims: Holm over the last axis, corrected intervals, MDE and one outcome each.

    ``estimate``, ``se``, ``dof``: ``(..., m)`` from :func:`difference_arrays` (one family of ``m``
    claims per leading index); ``paper_effect``: broadcastable to ``(..., m)``, > 0. With ``m`` the
    number of claims with a defined p-value in the family, the corrected interval is at level
    ``1 - alpha/m`` and the MDE at ``alpha/m`` (the most conservative Holm step). Outcomes follow the
    module docstring; ``outcome`` holds the strings of :data:`OUTCOMES`.
    """
    estimate, se, dof = (np.asarray(x, dtype=float) for x in (estimate, se, dof))
    paper_effect = np.broadcast_to(np.asarray(paper_effect, dtype=float), estimate.shape)
    p = t_p_value(estimate, se, dof)
    adjusted = _holm_last_axis(p)
    family_size = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    corrected_alpha = alpha / np.maximum(family_size, 1)
    corrected_level = 1 - corrected_alpha
    corrected_low, corrected_high = t_interval(estimate, se, dof, corrected_level)
    mde = minimum_detectable_effect(se, dof, alpha=corrected_alpha, power=power)
    significant = adjusted < alpha  # NaN compares False
    codes = np.full(estimate.shape, OUTCOMES.index(INCONCLUSIVE))
    codes[significant & (estimate > 0)] = OUTCOMES.index(REPRODUCED)
    codes[significant & (estimate < 0)] = OUTCOMES.index(CONTRADICTED)
    codes[~significant & (corrected_high < paper_effect) & (mde <= paper_effect)] = OUTCOMES.index(NOT_REPRODUCED)
    return Assessment(p_value=p, adjusted_p=adjusted, corrected_low=corrected_low, corrected_high=corrected_high,
                      corrected_level=corrected_level, family_size=family_size, mde=np.asarray(mde),
                      outcome=np.asarray(OUTCOMES)[codes])


def _decimals(*scales: float) -> int:
    """Decimals that show two significant digits of the first finite positive ``scales`` value."""
    for scale in scales:
        if np.isfinite(scale) and scale > 0:
            return int(np.clip(1 - np.floor(np.log10(scale)), 0, 6))
    return 2


def _format_p(p: float) -> str:
    if np.isnan(p):
        return "undefined"
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def _interval_text(effect: Effect, digits: int) -> str:
    if not np.isfinite(effect.low):
        return "no interval"
    return f"{effect.level:.0%} CI {effect.low:+.{digits}f} to {effect.high:+.{digits}f}"


def describe(name: str, effect: Effect, units: str = "") -> str:
    """An exploratory effect in words, ``"name: +0.42 points (95% CI -0.31 to +1.15)"``: for numbers a
    chapter reports beside its claims, outside the corrected family, so with no verdict attached."""
    digits = _decimals(effect.se, abs(effect.estimate))
    unit = f" {units}" if units else ""
    return f"{name}: {effect.estimate:+.{digits}f}{unit} ({_interval_text(effect, digits)})"


def _sentence(name: str, effect: Effect, adjusted_p: float, corrected_low: float, corrected_high: float,
              corrected_level: float, mde: float, paper_effect: float, outcome: str, units: str,
              reference: str = "", seeds_needed: int | None = None, power: float = 0.8) -> str:
    """The verdict of one claim in English with its numbers and its power line (see :func:`judge`)."""
    return _outcome_sentence(name, effect, adjusted_p, corrected_low, corrected_high, corrected_level, mde,
                             paper_effect, outcome, units, reference) + _power_text(seeds_needed, power)


def _outcome_sentence(name: str, effect: Effect, adjusted_p: float, corrected_low: float, corrected_high: float,
                      corrected_level: float, mde: float, paper_effect: float, outcome: str, units: str,
                      reference: str) -> str:
    digits = _decimals(effect.se, abs(effect.estimate), paper_effect)
    unit = f" {units}" if units else ""
    target = reference or "the paper's"

    def signed(x: float) -> str:
        return f"{x:+.{digits}f}"

    interval = _interval_text(effect, digits)
    head = (f"{name}: {signed(effect.estimate)}{unit} ({interval}; Holm-adjusted p {_format_p(adjusted_p)}), "
            f"against {signed(paper_effect)} " + (f"({reference})" if reference else "in the paper"))
    corrected = f"{100 * corrected_level:.3g}% family-wise interval {signed(corrected_low)} to {signed(corrected_high)}"
    if outcome == REPRODUCED:
        smaller = (f", though the {corrected} lies below {target}" if corrected_high < paper_effect
                   else "")
        return f"{head}; it differs from zero in the paper's direction{smaller}, so it is reproduced."
    if outcome == CONTRADICTED:
        return f"{head}; the difference goes the opposite way, so it is contradicted."
    if outcome == NOT_REPRODUCED:
        return (f"{head}; the {corrected} excludes an effect as large as {target} "
                f"(smallest detectable: {mde:.{digits}f}{unit}), so it is not reproduced.")
    if not np.isfinite(mde):
        reason = ("fewer than two seeds per side" if min(effect.n_a, effect.n_b) < 2
                  else "the values do not vary over seeds")
        return f"{head}; the noise cannot be estimated ({reason}), so it is inconclusive."
    if mde > paper_effect:
        return (f"{head}; the smallest effect this run could detect is {mde:.{digits}f}{unit}, "
                f"larger than {target}, so it is inconclusive.")
    return (f"{head}; the {corrected} neither excludes zero nor the paper's effect, so it is inconclusive.")


def judge(claims: Sequence[Claim], *, alpha: float = 0.05, level: float = 0.95, power: float = 0.8) -> list[Verdict]:
    """One :class:`Verdict` per claim, the family of ``claims`` corrected together.

    Each claim's :func:`difference` (interval at ``level``) gives a p-value; Holm's method adjusts them
    over the family (family-wise error ``alpha``); with ``m`` the number of claims with a defined
    p-value, the corrected interval is at ``1 - alpha/m`` and the minimum detectable effect is taken
    at ``alpha/m`` and ``power``. Outcome rules: see the module docstring. Raises ``ValueError`` on an
    empty family or ``alpha``/``level``/``power`` outside (0, 1).
    """
    if len(claims) == 0:
        raise ValueError(f"claims={claims!r}: allowed a non-empty sequence of Claim")
    alpha = _check_probability("alpha", alpha)
    power = _check_probability("power", power)
    kinds = sorted({claim.kind for claim in claims} - {"superiority"})
    if kinds:
        raise ValueError(f"claims kind={kinds}: allowed only 'superiority' here (margins: judge_family)")
    effects = [difference(claim.a, claim.b, paired=claim.paired, level=level) for claim in claims]
    family = assess(np.array([e.estimate for e in effects]), np.array([e.se for e in effects]),
                    np.array([e.dof for e in effects]), np.array([c.paper_effect for c in claims]),
                    alpha=alpha, power=power)
    corrected_level, family_size = float(family.corrected_level[0]), int(family.family_size[0])
    verdicts = []
    for i, (claim, effect) in enumerate(zip(claims, effects, strict=True)):
        numbers = {"adjusted_p": float(family.adjusted_p[i]), "corrected_low": float(family.corrected_low[i]),
                   "corrected_high": float(family.corrected_high[i]), "corrected_level": corrected_level,
                   "mde": float(family.mde[i]), "paper_effect": float(claim.paper_effect),
                   "outcome": str(family.outcome[i]),
                   "seeds_needed": seeds_for_power(effect, claim.paper_effect, alpha=1 - corrected_level,
                                                   power=power)}
        sentence = _sentence(claim.name, effect, units=claim.units, reference=claim.reference, power=power,
                             **numbers)
        verdicts.append(Verdict(name=claim.name, effect=effect, alpha=alpha, family_size=family_size,
                                units=claim.units, sentence=sentence, reference=claim.reference, **numbers))
    return verdicts


MARGIN_KINDS = ("equivalence", "non-inferiority")


@dataclass(frozen=True)
class MarginVerdict:
    """A judged claim against a margin: ``a`` matches ``b`` (``kind="equivalence"``, see :func:`equivalence`)
    or ``a`` matches or beats ``b`` (``kind="non-inferiority"``, see :func:`non_inferiority`).

    ``low``/``high`` bound the interval of ``a - b`` at ``level`` = ``1 - 2 alpha / family_size`` (its ends
    are the one-sided bounds the tests read); ``outcome`` is one of :data:`OUTCOMES` (never "not
    reproduced"); ``mde`` is the smallest margin the run could establish with 80% power when the two do
    not differ, and ``seeds_needed`` the seeds that would establish ``margin`` (as in :class:`Verdict`)."""

    name: str
    effect: Effect
    margin: float
    alpha: float
    family_size: int
    low: float
    high: float
    level: float
    outcome: str
    units: str
    sentence: str
    kind: str = "equivalence"
    seeds_needed: int | None = None
    mde: float = float("nan")
    reference: str = ""


def _power_quantile(kind: str, alpha: float, power: float, dof: float | np.ndarray) -> float | np.ndarray:
    """``t_1 + t_2`` of a test with no true difference: superiority two-sided at ``alpha`` with ``power``;
    non-inferiority one-sided; equivalence two one-sided tests (see :func:`seeds_for_power`)."""
    first = scipy_stats.t.ppf(1 - alpha / 2 if kind == "superiority" else 1 - alpha, dof)
    return first + scipy_stats.t.ppf((1 + power) / 2 if kind == "equivalence" else power, dof)


def _margin_test(kind: str, name: str, a: Sequence[float], b: Sequence[float], margin: float, *, paired: bool,
                 alpha: float, family_size: int, units: str, power: float = 0.8, reference: str = "") -> MarginVerdict:
    alpha = _check_probability("alpha", alpha)
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin={margin!r}: allowed a finite number > 0")
    if not (isinstance(family_size, numbers.Integral) and family_size >= 1):
        raise ValueError(f"family_size={family_size!r}: allowed an integer >= 1")
    corrected = alpha / family_size
    effect = difference(a, b, paired=paired, level=1 - 2 * corrected)
    outcome = INCONCLUSIVE
    if kind == "equivalence":
        outer_low, outer_high = (float(x) for x in t_interval(effect.estimate, effect.se, effect.dof, 1 - corrected))
        if -margin < effect.low and effect.high < margin:
            outcome = REPRODUCED
        elif outer_low > margin or outer_high < -margin:
            outcome = CONTRADICTED
        against = "a margin of +/-{margin}"
        reason = {REPRODUCED: "it lies inside the margin, so the match is reproduced",
                  CONTRADICTED: "the difference exceeds the margin, so the match is contradicted",
                  INCONCLUSIVE: "it is not inside the margin, so the match is inconclusive"}[outcome]
    else:
        if effect.low > -margin:
            outcome = REPRODUCED
        elif effect.high < -margin:
            outcome = CONTRADICTED
        against = "a non-inferiority margin of -{margin}"
        reason = {REPRODUCED: "its lower end lies above -margin, so 'matches or beats' is reproduced",
                  CONTRADICTED: "it lies entirely below -margin, so 'matches or beats' is contradicted",
                  INCONCLUSIVE: "it reaches below -margin, so 'matches or beats' is inconclusive"}[outcome]
    digits = _decimals(effect.se, abs(effect.estimate), margin)
    unit = f" {units}" if units else ""
    interval = (f"{effect.level:.3g} interval {effect.low:+.{digits}f} to {effect.high:+.{digits}f}"
                if np.isfinite(effect.low) else "no interval: the spread over seeds is undefined")
    seeds = seeds_for_power(effect, margin, alpha=corrected, power=power, kind=kind)
    mde = (float(_power_quantile(kind, corrected, power, effect.dof) * effect.se) if _defined(
        np.asarray(effect.se), np.asarray(effect.dof)) else float("nan"))
    sentence = (f"{name}: {effect.estimate:+.{digits}f}{unit} against "
                f"{against.format(margin=f'{margin:.{digits}f}')}{unit} ({interval}); {reason}."
                + _power_text(seeds, power))
    return MarginVerdict(name=name, effect=effect, margin=float(margin), alpha=alpha, family_size=family_size,
                         low=effect.low, high=effect.high, level=effect.level, outcome=outcome, units=units,
                         sentence=sentence, kind=kind, seeds_needed=seeds, mde=mde, reference=reference)


def equivalence(name: str, a: Sequence[float], b: Sequence[float], margin: float, *, paired: bool = False,
                alpha: float = 0.05, family_size: int = 1, units: str = "") -> MarginVerdict:
    """Does ``a`` match ``b``, i.e. is ``|mean(a) - mean(b)| < margin``? Two one-sided t-tests (Schuirmann,
    1987) at ``alpha / family_size`` (Bonferroni over the chapter's family of claims), read off the
    ``1 - 2 alpha'`` interval of ``a - b``:

    - ``"reproduced"``: the interval lies inside ``(-margin, margin)``: the two match within the margin;
    - ``"contradicted"``: the two-sided ``1 - alpha'`` interval lies entirely beyond ``-margin`` or
      ``+margin``: they differ by more than the margin;
    - ``"inconclusive"``: anything else, including an undefined spread.
    """
    return _margin_test("equivalence", name, a, b, margin, paired=paired, alpha=alpha, family_size=family_size,
                        units=units)


def non_inferiority(name: str, a: Sequence[float], b: Sequence[float], margin: float, *, paired: bool = False,
                    alpha: float = 0.05, family_size: int = 1, units: str = "") -> MarginVerdict:
    """Does ``a`` match or beat ``b``, i.e. is ``mean(a) - mean(b) > -margin``? One one-sided t-test at
    ``alpha' = alpha / family_size`` of the null ``a - b <= -margin``, read off the ``1 - 2 alpha'`` interval
    of ``a - b`` (its lower end is the one-sided bound):

    - ``"reproduced"``: the lower end lies above ``-margin``: ``a`` is at most ``margin`` worse, or better;
    - ``"contradicted"``: the upper end lies below ``-margin``: ``a`` is worse by more than the margin;
    - ``"inconclusive"``: anything else, including an undefined spread.

    An exact match reads "reproduced" once the run is precise enough, where a superiority test of the same
    numbers could only say "not reproduced".
    """
    return _margin_test("non-inferiority", name, a, b, margin, paired=paired, alpha=alpha,
                        family_size=family_size, units=units)


DECIDED = (REPRODUCED, CONTRADICTED)  # a headline whose null is rejected opens the gate


@dataclass(frozen=True)
class Judgement:
    """A chapter's family of claims judged (:func:`judge_family`): superiority ``verdicts`` and ``margins``
    (equivalence, non-inferiority), each in the order given; the ``headline`` claim's name (``None`` when
    the chapter has none) and whether it was decided, so that the other claims were tested
    (``gate_open``); ``rerun`` formats a command that reruns the chapter with ``{seeds}`` seeds."""

    verdicts: list[Verdict]
    margins: list[MarginVerdict]
    alpha: float
    headline: str | None = None
    gate_open: bool = True
    rerun: str = ""

    def __bool__(self) -> bool:
        return bool(self.verdicts or self.margins)

    @property
    def judged(self) -> list[Verdict | MarginVerdict]:
        return [*self.verdicts, *self.margins]

    @property
    def outcomes(self) -> dict[str, str]:
        """``{claim name: outcome}`` for every claim."""
        return {v.name: v.outcome for v in self.judged}

    @property
    def headline_verdict(self) -> Verdict | MarginVerdict | None:
        return next((v for v in self.judged if v.name == self.headline), None)

    def rerun_line(self, verdict: Verdict | MarginVerdict) -> str:
        """The command that reruns the chapter with the seeds ``verdict`` needs (empty when unknown)."""
        if not self.rerun or verdict.seeds_needed is None:
            return ""
        seeds = ", ".join(str(seed) for seed in range(verdict.seeds_needed))
        return self.rerun.format(seeds=f"[{seeds}]")

    def summary(self) -> str:
        """The verdict paragraph: the headline first (when there is one), then the other claims."""
        if not self:
            return "No claim could be tested with these parameters."
        percent = f"{100 * self.alpha:.3g}%"
        others = [v for v in self.judged if v.name != self.headline]
        parts = []
        if self.headline_verdict is not None:
            parts.append(f"Headline claim, tested first at the full {percent}: {self.headline_verdict.sentence}")
            if others and self.gate_open:
                parts.append(f"The headline is decided, so the other {len(others)} claims were tested after it, "
                             f"together at a family-wise {percent} ({tally(others)}):")
            elif others:
                parts.append(f"The headline is not decided, so the other {len(others)} claims were not tested: "
                             f"fixed-sequence gatekeeping tests them only after it, which keeps the family-wise "
                             f"error at {percent}. Their estimates, for exploration only:")
        elif others:
            parts.append(f"Of {len(others)} claims, tested together at a family-wise error rate of {percent}: "
                         f"{tally(others)}.")
        parts.extend(v.sentence for v in others)
        return " ".join(parts)


def _untested(verdict: Verdict | MarginVerdict) -> Verdict | MarginVerdict:
    sentence = f"{describe(verdict.name, verdict.effect, verdict.units)}: not tested."
    return replace(verdict, outcome=INCONCLUSIVE, sentence=sentence)


def _together(claims: Sequence[Claim], alpha: float, power: float) -> tuple[list[Verdict], list[MarginVerdict]]:
    """One family at ``alpha``: the superiority claims share ``alpha * n_superiority / n`` under Holm, each
    margin claim is tested at ``alpha / n`` (Bonferroni)."""
    superiority = [claim for claim in claims if claim.kind == "superiority"]
    share = alpha if len(superiority) == len(claims) else alpha * len(superiority) / len(claims)
    verdicts = judge(superiority, alpha=share, power=power) if superiority else []
    margins = [_margin_test(claim.kind, claim.name, claim.a, claim.b, claim.paper_effect, paired=claim.paired,
                            alpha=alpha, family_size=len(claims), units=claim.units, power=power,
                            reference=claim.reference)
               for claim in claims if claim.kind != "superiority"]
    return verdicts, margins


def judge_family(claims: Sequence[Claim], *, alpha: float = 0.05, headline: str | None = None,
                 power: float = 0.8, rerun: str = "") -> Judgement:
    """A chapter's claims as one family with family-wise error ``alpha``.

    Without a ``headline``, every claim is tested together (:func:`_together`: Holm among the superiority
    claims, Bonferroni for the margins). With one (the name of a claim), fixed-sequence gatekeeping: the
    headline is tested first, alone, at the full ``alpha``; only if it is decided (its null rejected:
    reproduced or contradicted) are the other claims tested, together at ``alpha``; otherwise they are
    reported untested (their estimates only, outcome inconclusive). A true null can only be rejected
    after the headline's test spent ``alpha`` on it or rejected a false null, so the family-wise error
    stays at ``alpha``.
    """
    if len(claims) == 0:
        raise ValueError(f"claims={claims!r}: allowed a non-empty sequence of Claim")
    alpha = _check_probability("alpha", alpha)
    names = [claim.name for claim in claims]
    if headline is None:
        return Judgement(*_together(claims, alpha, power), alpha=alpha, rerun=rerun)
    if names.count(headline) != 1:
        raise ValueError(f"headline={headline!r}: allowed the name of exactly one claim, one of {names}")
    first = _together([claims[names.index(headline)]], alpha, power)
    decided = first[0][0].outcome if first[0] else first[1][0].outcome
    others = [claim for claim in claims if claim.name != headline]
    rest: tuple[list, list] = _together(others, alpha, power) if others else ([], [])
    if decided not in DECIDED:
        rest = ([_untested(v) for v in rest[0]], [_untested(m) for m in rest[1]])
    order = {name: i for i, name in enumerate(names)}

    def ordered(items: list) -> list:
        return sorted(items, key=lambda v: order[v.name])

    return Judgement(ordered([*first[0], *rest[0]]), ordered([*first[1], *rest[1]]), alpha=alpha,
                     headline=headline, gate_open=decided in DECIDED, rerun=rerun)


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim: claim, estimate, low, high (at the effect's level), adjusted_p, mde,
    paper_effect, outcome."""
    return pd.DataFrame([{"claim": v.name, "estimate": v.effect.estimate, "low": v.effect.low,
                          "high": v.effect.high, "adjusted_p": v.adjusted_p, "mde": v.mde,
                          "paper_effect": v.paper_effect, "outcome": v.outcome} for v in verdicts],
                        columns=["claim", "estimate", "low", "high", "adjusted_p", "mde", "paper_effect", "outcome"])


def tally(verdicts: Sequence[Verdict]) -> str:
    """The outcomes counted in words: ``"3 inconclusive and 1 not reproduced"``."""
    counts = [(sum(v.outcome == outcome for v in verdicts), outcome) for outcome in OUTCOMES]
    listed = [f"{count} {outcome}" for count, outcome in counts if count]
    if len(listed) <= 1:
        return listed[0] if listed else "no claim"
    return ", ".join(listed[:-1]) + " and " + listed[-1]


def summary(verdicts: Sequence[Verdict]) -> str:
    """The chapter's verdict paragraph, generated: counts per outcome, then every claim's sentence."""
    if len(verdicts) == 0:
        raise ValueError(f"verdicts={verdicts!r}: allowed a non-empty sequence of Verdict (from judge)")
    claims = "claim" if len(verdicts) == 1 else "claims"
    tested = verdicts[0].family_size
    return (f"Of {len(verdicts)} {claims}, {tested} tested together at a family-wise error rate of "
            f"{100 * verdicts[0].alpha:.3g}% (Holm): {tally(verdicts)}. "
            + " ".join(v.sentence for v in verdicts))
