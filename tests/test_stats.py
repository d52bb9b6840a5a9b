"""Tests of dstlib.stats: hand computations, degenerate and bad input, and the calibration the book promises
(simulated grids shaped like a chapter's: several methods and sparsities against one dense baseline)."""

from __future__ import annotations

import math
import statistics

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats as scipy_stats

from dstlib import plotting, stats

ALPHA = 0.05
N_GRIDS = 4000
# Allowed excess over a nominal rate: three Monte Carlo standard errors at N_GRIDS simulated grids.
MC_MARGIN = 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_GRIDS)


# ---------------------------------------------------------------------------------------------- difference


def test_welch_matches_hand_computation_and_scipy():
    a, b = [1.0, 2.0, 3.0], [4.0, 5.0, 7.5]
    var_a, var_b = statistics.variance(a) / 3, statistics.variance(b) / 3
    se = math.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a**2 / 2 + var_b**2 / 2)
    half = scipy_stats.t.ppf(0.95, dof) * se  # level 0.9 -> 0.95 quantile
    effect = stats.difference(a, b, level=0.9)
    assert effect.estimate == pytest.approx(2.0 - 5.5)
    assert effect.se == pytest.approx(se)
    assert effect.dof == pytest.approx(dof)
    assert (effect.low, effect.high) == pytest.approx((-3.5 - half, -3.5 + half))
    assert effect.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert (effect.n_a, effect.n_b, effect.paired, effect.level) == (3, 3, False, 0.9)


def test_paired_is_one_sample_t_on_differences():
    a, b = [0.71, 0.74, 0.69, 0.75], [0.70, 0.71, 0.69, 0.72]
    deltas = np.subtract(a, b)
    effect = stats.difference(a, b, paired=True)
    se = statistics.stdev(deltas) / 2
    half = scipy_stats.t.ppf(0.975, 3) * se
    assert effect.estimate == pytest.approx(deltas.mean())
    assert (effect.se, effect.dof) == pytest.approx((se, 3.0))
    assert (effect.low, effect.high) == pytest.approx((deltas.mean() - half, deltas.mean() + half))
    assert effect.p_value == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert effect.p_value == pytest.approx(scipy_stats.ttest_1samp(deltas, 0.0).pvalue)
    assert effect.paired
    # Pairing matters: the same numbers unpaired give a different (here larger) p-value.
    assert stats.difference(a, b).p_value > effect.p_value


def test_welch_with_one_constant_side_uses_the_other_sides_dof():
    b = [1.0, 1.5, 0.8, 1.1]
    effect = stats.difference([2.0, 2.0, 2.0], b)
    se = statistics.stdev(b) / 2
    assert (effect.se, effect.dof) == pytest.approx((se, 3.0))
    assert effect.p_value == pytest.approx(2 * scipy_stats.t.sf((2.0 - statistics.mean(b)) / se, 3))


@pytest.mark.parametrize(("a", "b", "paired"), [([0.8], [0.7], False), ([0.8], [0.7, 0.6, 0.65], False),
                                                ([0.8], [0.7], True)])
def test_too_few_values_give_nan_not_certainty(a, b, paired):
    effect = stats.difference(a, b, paired=paired)
    assert np.isfinite(effect.estimate)
    assert all(math.isnan(x) for x in (effect.se, effect.dof, effect.low, effect.high, effect.p_value))


@pytest.mark.parametrize(("a", "b", "paired"), [
    ([0.9, 0.9], [0.8, 0.8], False),  # identical values on each side, nonzero difference
    ([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], True),  # constant per-seed differences
    ([0.1, 0.2, 0.3], [0.0, 0.1, 0.2], True),  # constant up to rounding (deltas differ by ~1e-17)
])
def test_zero_spread_gives_no_p_value(a, b, paired):
    effect = stats.difference(a, b, paired=paired)
    assert effect.se == 0.0
    assert effect.estimate == pytest.approx(0.1)
    assert all(math.isnan(x) for x in (effect.low, effect.high, effect.p_value))
    assert math.isnan(stats.minimum_detectable_effect(effect.se, 2.0, alpha=0.05))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"a": [1.0, float("nan")], "b": [1.0, 2.0]}, "a=.*: allowed finite numbers"),
    ({"a": [1.0, 2.0], "b": [1.0, float("inf")]}, "b=.*: allowed finite numbers"),
    ({"a": [], "b": [1.0, 2.0]}, r"a=\[\]: allowed a non-empty 1-D sequence"),
    ({"a": [[1.0, 2.0]], "b": [1.0, 2.0]}, "a=.*: allowed a non-empty 1-D sequence"),
    ({"a": [1.0, 2.0], "b": [1.0, 2.0], "level": 1.5}, r"^level=1\.5: allowed a number in \(0, 1\)$"),
    ({"a": [1.0, 2.0], "b": [1.0, 2.0], "level": 0}, r"level=0: allowed a number in \(0, 1\)"),
    ({"a": [1.0, 2.0], "b": [1.0, 2.0, 3.0], "paired": True}, r"len\(b\)=3: allowed len\(a\)=2 when paired"),
])
def test_bad_input_raises_with_name_value_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stats.difference(**kwargs)


# ---------------------------------------------------------------------------------------------- holm, mde


def test_holm_hand_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]) == pytest.approx([0.02])


def test_holm_keeps_nan_out_of_the_family():
    adjusted = stats.holm([0.01, float("nan"), 0.04])
    assert math.isnan(adjusted[1])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.04])
    assert np.isnan(stats.holm([float("nan")] * 3)).all()


def test_holm_is_monotone_and_never_below_raw():
    p = np.random.default_rng(3).uniform(0, 0.2, 50)
    adjusted = stats.holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)


@pytest.mark.parametrize("p_values", [[0.1, 1.2], [[0.1, 0.2]], [-0.1]])
def test_holm_bad_input(p_values):
    with pytest.raises(ValueError, match="p_values=.*: allowed"):
        stats.holm(p_values)


def test_minimum_detectable_effect_formula():
    expected = (scipy_stats.t.ppf(1 - 0.01 / 2, 4) + scipy_stats.t.ppf(0.9, 4)) * 0.5
    assert stats.minimum_detectable_effect(0.5, 4, alpha=0.01, power=0.9) == pytest.approx(expected)
    assert math.isnan(stats.minimum_detectable_effect(float("nan"), 4, alpha=0.05))
    with pytest.raises(ValueError, match="se=-1.0: allowed"):
        stats.minimum_detectable_effect(-1.0, 4, alpha=0.05)
    with pytest.raises(ValueError, match=r"alpha=1.5: allowed a number in \(0, 1\)"):
        stats.minimum_detectable_effect(1.0, 4, alpha=1.5)


# ---------------------------------------------------------------------------------------------- judge


def _claim(name, a, b, paper_effect, **kwargs):
    return stats.Claim(name, a, b, paper_effect, units="points", **kwargs)


def test_judge_outcomes_sentences_table_and_summary():
    rng = np.random.default_rng(0)
    dense = 70 + rng.normal(0, 1, 10)
    claims = [
        _claim("better", dense + 5 + rng.normal(0, 0.3, 10), dense, 3.0, paired=True),
        _claim("worse", dense - 5 + rng.normal(0, 0.3, 10), dense, 3.0, paired=True),
        _claim("no effect, precise", dense + rng.normal(0, 0.05, 10), dense, 3.0, paired=True),
        _claim("one seed", [71.0], [70.0], 3.0),
    ]
    verdicts = stats.judge(claims)
    assert [v.outcome for v in verdicts] == [stats.REPRODUCED, stats.CONTRADICTED, stats.NOT_REPRODUCED,
                                             stats.INCONCLUSIVE]
    # The untestable claim spends none of the error rate: m = 3.
    assert {v.family_size for v in verdicts} == {3}
    assert verdicts[0].corrected_level == pytest.approx(1 - 0.05 / 3)
    p = [stats.difference(c.a, c.b, paired=c.paired).p_value for c in claims[:3]]
    assert [v.adjusted_p for v in verdicts[:3]] == pytest.approx(stats.holm(p))
    for verdict in verdicts[:3]:
        assert verdict.corrected_low < verdict.effect.low < verdict.effect.high < verdict.corrected_high
        assert verdict.mde == pytest.approx(stats.minimum_detectable_effect(
            verdict.effect.se, verdict.effect.dof, alpha=0.05 / 3))
    # Numbers carry two significant digits of the standard error (se ~ 0.09 here: three decimals).
    assert verdicts[0].sentence.startswith(f"better: {verdicts[0].effect.estimate:+.3f} points (95% CI ")
    assert "so it is reproduced." in verdicts[0].sentence
    assert "against +3.000 in the paper" in verdicts[0].sentence
    assert "contradicted" in verdicts[1].sentence
    assert "so it is not reproduced." in verdicts[2].sentence
    assert "noise cannot be estimated (fewer than two seeds per side)" in verdicts[3].sentence
    table = stats.verdict_table(verdicts)
    assert list(table.columns) == ["claim", "estimate", "low", "high", "adjusted_p", "mde", "paper_effect",
                                   "outcome"]
    assert list(table["outcome"]) == [v.outcome for v in verdicts] and len(table) == 4
    text = stats.summary(verdicts)
    assert text.startswith("Of 4 claims, 3 tested together at a family-wise error rate of 5% (Holm): "
                           "1 reproduced, 1 contradicted, 1 not reproduced and 1 inconclusive.")
    assert all(v.sentence in text for v in verdicts)


def test_judge_noisy_run_is_inconclusive_with_its_mde_stated():
    rng = np.random.default_rng(1)
    claims = [_claim("noisy", rng.normal(0, 2, 3), rng.normal(0, 2, 3), 0.5)]
    verdict, = stats.judge(claims)
    assert verdict.outcome == stats.INCONCLUSIVE
    assert verdict.mde > verdict.paper_effect
    assert f"smallest effect this run could detect is {verdict.mde:.1f}" in verdict.sentence


@pytest.mark.parametrize(("call", "message"), [
    (lambda: stats.judge([]), r"claims=\[\]: allowed a non-empty sequence"),
    (lambda: stats.judge([_claim("x", [1, 2], [0, 1], 1.0)], alpha=0), r"alpha=0: allowed a number in \(0, 1\)"),
    (lambda: _claim("x", [1, 2], [0, 1], 0.0), "paper_effect=0.0: allowed a finite number > 0"),
    (lambda: _claim("x", [1, 2], [0, 1], -0.4), "paper_effect=-0.4: allowed"),
    (lambda: _claim("x", [1, float("nan")], [0, 1], 1.0), "a=.*: allowed finite numbers"),
    (lambda: _claim("x", [1, 2], [[0, 1]], 1.0), "b=.*: allowed a non-empty 1-D sequence"),
    (lambda: stats.judge([_claim("x", [1, 2], [0], 1.0, paired=True)]), r"len\(b\)=1: allowed len\(a\)=2"),
])
def test_judge_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------- calibration

METHODS, SPARSITIES = 4, 3
FAMILY = METHODS * SPARSITIES  # 12 claims, each "method at sparsity s - dense"


def _simulate(truth, *, seeds, paired, sigma=1.0, paper_effect=1.0, grids=N_GRIDS, seed=0):
    """Outcomes ``(grids, FAMILY)`` of simulated chapter grids: per grid, one dense baseline over ``seeds``
    shared by every claim. Paired: a seed effect (sd 2 sigma) shared by all runs of one seed plus
    per-run noise (sd ``sigma``). Unpaired: independent runs, the methods noisier (sd 1.5 sigma) than
    dense (sd ``sigma``), the case Welch is for."""
    rng = np.random.default_rng(seed)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), (FAMILY,))
    if paired:
        seed_effect = rng.normal(0, 2 * sigma, (grids, 1, seeds))
        dense = seed_effect + rng.normal(0, sigma, (grids, 1, seeds))
        methods = truth[:, None] + seed_effect + rng.normal(0, sigma, (grids, FAMILY, seeds))
    else:
        dense = rng.normal(0, sigma, (grids, 1, seeds))
        methods = truth[:, None] + rng.normal(0, 1.5 * sigma, (grids, FAMILY, seeds))
    estimate, se, dof = stats.difference_arrays(methods, np.broadcast_to(dense, methods.shape), paired=paired)
    return stats.assess(estimate, se, dof, paper_effect, alpha=ALPHA).outcome


def _true_mde(*, seeds, paired, sigma=1.0):
    """The MDE of one claim at alpha/FAMILY from the simulation's known noise (see ``_simulate``)."""
    if paired:
        return stats.minimum_detectable_effect(sigma * math.sqrt(2 / seeds), seeds - 1, alpha=ALPHA / FAMILY)
    var_a, var_b = (1.5 * sigma) ** 2 / seeds, sigma**2 / seeds
    dof = (var_a + var_b) ** 2 / ((var_a**2 + var_b**2) / (seeds - 1))
    return stats.minimum_detectable_effect(math.sqrt(var_a + var_b), dof, alpha=ALPHA / FAMILY)


@pytest.mark.parametrize(("seeds", "paired"), [(5, True), (3, True), (5, False), (3, False)])
def test_no_true_difference_rarely_claims_any(seeds, paired):
    outcomes = _simulate(0.0, seeds=seeds, paired=paired)
    any_significant = np.isin(outcomes, [stats.REPRODUCED, stats.CONTRADICTED]).any(axis=1)
    rate = any_significant.mean()
    print(f"family-wise false positives, {seeds} seeds, {'paired' if paired else 'Welch'}: {rate:.4f}")
    assert rate <= ALPHA + MC_MARGIN


@pytest.mark.parametrize(("seeds", "paired"), [(5, True), (3, True), (5, False)])
def test_effect_of_twice_the_mde_is_reproduced(seeds, paired):
    mde = _true_mde(seeds=seeds, paired=paired)
    truth = np.zeros(FAMILY)
    truth[0] = 2 * mde
    power = (_simulate(truth, seeds=seeds, paired=paired, paper_effect=2 * mde)[:, 0] == stats.REPRODUCED).mean()
    truth[0] = mde
    at_mde = (_simulate(truth, seeds=seeds, paired=paired, paper_effect=mde)[:, 0] == stats.REPRODUCED).mean()
    print(f"power, {seeds} seeds, {'paired' if paired else 'Welch'}: {power:.4f} at 2 x MDE ({2 * mde:.2f} sigma), "
          f"{at_mde:.4f} at the MDE")
    assert power >= 0.8
    assert at_mde >= 0.5  # the MDE's approximation (known se) overstates power a little with few seeds


def test_precise_run_without_effect_is_not_reproduced():
    outcomes = _simulate(0.0, seeds=10, paired=True, sigma=0.1, paper_effect=1.0)
    rate = (outcomes == stats.NOT_REPRODUCED).mean()
    print(f"'not reproduced' for a precise null run: {rate:.4f}")
    assert rate >= 0.9


def test_noisy_run_is_inconclusive():
    outcomes = _simulate(0.0, seeds=3, paired=True, sigma=2.0, paper_effect=0.5)
    rate = (outcomes == stats.INCONCLUSIVE).mean()
    print(f"'inconclusive' for a noisy null run: {rate:.4f}")
    lucky = (outcomes == stats.NOT_REPRODUCED).mean()  # a small observed spread: a valid, rare call
    print(f"'not reproduced' for a noisy null run: {lucky:.4f}")
    assert rate >= 1 - ALPHA - MC_MARGIN


@pytest.mark.parametrize(("seeds", "paired"), [(5, True), (5, False)])
def test_paper_sized_truth_is_rarely_called_not_reproduced(seeds, paired):
    mde = _true_mde(seeds=seeds, paired=paired)
    outcomes = _simulate(mde, seeds=seeds, paired=paired, paper_effect=mde)
    rate = (outcomes == stats.NOT_REPRODUCED).any(axis=1).mean()
    print(f"family-wise false 'not reproduced', {seeds} seeds, {'paired' if paired else 'Welch'}: {rate:.4f}")
    assert rate <= ALPHA + MC_MARGIN


# ---------------------------------------------------------------------------------------------- forest plot


def test_forest_has_one_row_per_verdict_and_survives_nan_intervals():
    claims = [_claim("precise", [1.0, 1.2, 1.1, 0.9], [0.2, 0.1, 0.3, 0.2], 0.5),
              _claim("one seed", [1.0], [0.5], 0.4),
              _claim("no spread", [1.0, 1.0], [0.5, 0.5], 0.4, paired=True)]
    verdicts = stats.judge(claims)
    assert math.isnan(verdicts[1].effect.low) and math.isnan(verdicts[2].corrected_low)
    figure = plotting.forest(verdicts)
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["precise", "one seed", "no spread"]
    assert sorted(ax.get_yticks()) == [0, 1, 2]
    assert {text.get_text() for text in ax.texts} == {v.outcome for v in verdicts}
    assert "points" in ax.get_xlabel()
    figure.canvas.draw()  # renders without error
    plt.close(figure)
    _, ax = plt.subplots()
    assert plotting.forest(verdicts, ax=ax) is ax.figure
    plt.close(ax.figure)


# ---- equivalence: "a matches b within a margin" ---------------------------------------------------------

def test_equivalence_reproduces_a_match_contradicts_a_gap_and_stays_inconclusive_without_power():
    rng = np.random.default_rng(0)
    base = rng.normal(20.0, 1.0, 8)
    close = stats.equivalence("70% vs full", base + rng.normal(0.05, 0.05, 8), base, margin=0.5, paired=True,
                              units="points")
    assert close.outcome == stats.REPRODUCED and -0.5 < close.low < close.high < 0.5
    assert close.level == pytest.approx(0.9) and "so the match is reproduced" in close.sentence
    far = stats.equivalence("gap", base + 2.0 + rng.normal(0, 0.05, 8), base, margin=0.5, paired=True)
    assert far.outcome == stats.CONTRADICTED
    noisy = stats.equivalence("noisy", base + rng.normal(0, 3.0, 8), base, margin=0.5, paired=True)
    assert noisy.outcome == stats.INCONCLUSIVE
    # Bonferroni over a family of 4: the interval widens to 1 - 2 * 0.05 / 4
    wide = stats.equivalence("70% vs full", base + 0.05, base + rng.normal(0, 0.05, 8), margin=0.5, paired=True,
                             family_size=4)
    assert wide.level == pytest.approx(0.975)
    flat = stats.equivalence("flat", [1.0, 1.0], [1.0, 1.0], margin=0.5, paired=True)
    assert flat.outcome == stats.INCONCLUSIVE and "undefined" in flat.sentence


@pytest.mark.parametrize(("option", "value"), [("margin", 0.0), ("margin", float("nan")), ("family_size", 0)])
def test_equivalence_rejects_bad_options_by_name(option, value):
    kwargs = {"margin": 1.0, option: value}
    with pytest.raises(ValueError, match=f"{option}="):
        stats.equivalence("x", [1.0, 2.0], [1.0, 2.5], **kwargs)


# ---- non-inferiority: "a matches or beats b" -----------------------------------------------------------

def test_non_inferiority_reproduces_a_match_and_a_win_contradicts_a_clear_loss():
    rng = np.random.default_rng(3)
    base = rng.normal(60.0, 1.0, 8)
    match = stats.non_inferiority("match", base + rng.normal(0.0, 0.1, 8), base, margin=0.5, paired=True,
                                  units="points")
    assert match.outcome == stats.REPRODUCED and match.low > -0.5 and match.kind == "non-inferiority"
    assert "'matches or beats' is reproduced" in match.sentence and "seeds would give 80% power" in match.sentence
    win = stats.non_inferiority("win", base + 3.0 + rng.normal(0, 0.1, 8), base, margin=0.5, paired=True)
    assert win.outcome == stats.REPRODUCED
    loss = stats.non_inferiority("loss", base - 2.0 + rng.normal(0, 0.1, 8), base, margin=0.5, paired=True)
    assert loss.outcome == stats.CONTRADICTED and loss.high < -0.5
    noisy = stats.non_inferiority("noisy", base + rng.normal(0, 3.0, 8), base, margin=0.5, paired=True)
    assert noisy.outcome == stats.INCONCLUSIVE and noisy.mde > 0.5
    # The same exact match read as superiority by the margin: not reproduced, never "matches".
    superiority, = stats.judge([stats.Claim("match", match.effect.estimate + base, base, 0.5, paired=True)])
    assert superiority.outcome != stats.REPRODUCED


def test_non_inferiority_at_the_margin_rarely_reproduces():
    """Calibration: a true a - b of exactly -margin is called 'matches or beats' at most alpha of the time."""
    rng = np.random.default_rng(4)
    rate = np.mean([stats.non_inferiority("x", rng.normal(-0.5, 1.0, 6), np.zeros(6), margin=0.5,
                                          paired=True).outcome == stats.REPRODUCED for _ in range(N_GRIDS // 2)])
    assert rate <= ALPHA + 2 * MC_MARGIN


# ---- seeds for power -----------------------------------------------------------------------------------

def test_seeds_for_power_gives_the_power_it_promises():
    rng = np.random.default_rng(5)
    pilot = stats.difference(rng.normal(0, 1.0, 400), np.zeros(400), paired=True)  # sd of a difference ~ 1
    n = stats.seeds_for_power(pilot, 0.8, alpha=0.05)
    assert n == stats.seeds_for_power(pilot, 0.8, alpha=0.05, power=0.8) and 12 <= n <= 16  # z-approx: 12.3
    assert stats.seeds_for_power(pilot, 0.4, alpha=0.05) > 3 * n  # a half-size effect needs ~4x the seeds
    hits = [stats.difference(rng.normal(0.8, 1.0, n), np.zeros(n), paired=True).p_value < 0.05
            for _ in range(N_GRIDS // 2)]
    assert np.mean(hits) >= 0.8 - 2 * MC_MARGIN
    assert stats.seeds_for_power(stats.difference([1.0, 1.0], [0.0, 0.0], paired=True), 0.5, alpha=0.05) is None
    assert stats.seeds_for_power(pilot, 1e-4, alpha=0.05) is None  # beyond MAX_SEEDS
    with pytest.raises(ValueError, match="kind='better'"):
        stats.seeds_for_power(pilot, 0.8, alpha=0.05, kind="better")


# ---- the headline and fixed-sequence gatekeeping -------------------------------------------------------

def _family(rng, headline_truth, seeds=5, others=3, margin_claim=True):
    dense = rng.normal(0, 1, seeds)
    claims = [stats.Claim("headline", dense + headline_truth + rng.normal(0, 1, seeds), dense, 1.0, paired=True)]
    claims += [stats.Claim(f"other {i}", dense + rng.normal(0, 1, seeds), dense, 1.0, paired=True)
               for i in range(others)]
    if margin_claim:  # a true a - b at the margin: "matches or beats" is a false claim
        claims.append(stats.Claim("margin", dense - 1.0 + rng.normal(0, 1, seeds), dense, 1.0, paired=True,
                                  kind="non-inferiority"))
    return stats.judge_family(claims, alpha=ALPHA, headline="headline")


@pytest.mark.parametrize("headline_truth", [0.0, 3.0])
def test_gatekeeping_keeps_the_family_wise_error_at_alpha(headline_truth):
    """Every other claim's null is true; the headline's too (truth 0) or clearly false (truth 3, the gate
    nearly always opens). A false claim anywhere in the family is rare."""
    rng = np.random.default_rng(6)
    errors, opened = [], []
    families = 1000
    for _ in range(families):
        judged = _family(rng, headline_truth)
        wrong = [v.outcome in stats.DECIDED for v in judged.judged if v.name != "headline"]
        if headline_truth == 0.0:
            wrong.append(judged.headline_verdict.outcome in stats.DECIDED)
        errors.append(any(wrong))
        opened.append(judged.gate_open)
    assert np.mean(errors) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / families)
    assert np.mean(opened) > (0.9 if headline_truth else 0.0)


def test_the_headline_is_tested_alone_first_and_closes_the_gate_when_undecided():
    rng = np.random.default_rng(7)
    dense = rng.normal(0, 1, 6)
    strong = [stats.Claim("other", dense + 5 + rng.normal(0, 0.1, 6), dense, 1.0, paired=True)]
    open_gate = stats.judge_family([stats.Claim("headline", dense + 2 + rng.normal(0, 0.1, 6), dense, 1.0,
                                                paired=True), *strong], headline="headline")
    head = open_gate.headline_verdict
    assert head.family_size == 1 and head.alpha == ALPHA and open_gate.gate_open
    assert open_gate.verdicts[1].outcome == stats.REPRODUCED
    assert open_gate.summary().startswith("Headline claim, tested first at the full 5%: headline: ")
    no_effect = stats.Claim("headline", dense + np.array([0.05, -0.05, 0.1, -0.1, 0.02, -0.02]), dense, 1.0,
                            paired=True)  # a mean difference of exactly zero, precisely measured
    closed = stats.judge_family([no_effect, *strong], headline="headline",
                                rerun="papermill x.ipynb -y 'seeds: {seeds}'")
    assert closed.headline_verdict.outcome == stats.NOT_REPRODUCED  # decided against the paper, null kept
    assert not closed.gate_open and closed.verdicts[1].outcome == stats.INCONCLUSIVE
    assert closed.verdicts[1].sentence.endswith("not tested.") and "were not tested" in closed.summary()
    n = closed.headline_verdict.seeds_needed
    assert closed.rerun_line(closed.headline_verdict) == f"papermill x.ipynb -y 'seeds: {list(range(n))}'"
    with pytest.raises(ValueError, match="headline='missing': allowed the name of exactly one claim"):
        stats.judge_family(strong, headline="missing")
