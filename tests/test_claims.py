"""Claims as declarations (dstlib.experiments.claims): settings found in the records, sides aligned by seed,
orientation, transforms, constants, relative margins and one error budget for the whole table."""

import math

import numpy as np
import pandas as pd
import pytest

from dstlib import stats
from dstlib.experiments.claims import AT, BOOK_EFFECT, BOOK_EFFECT_REFERENCE, ClaimSpec, judge, largest, levels


def _frame():
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(6):
        for density in (1.0, 0.2, 0.1):
            for method in (("dense",) if density == 1.0 else ("set", "rigl")):
                gain = {"dense": 0.0, "set": 0.02, "rigl": 0.05}[method]
                rows.append({"seed": seed, "method": method, "density": density,
                             "accuracy": 0.8 + gain + 0.002 * rng.standard_normal(),
                             "time": 10.0 / (1.0 + gain * 10) + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_a_claim_repeats_over_the_settings_found_in_the_records():
    spec = ClaimSpec("RigL - SET, density {density:g}", "accuracy", a={"method": "rigl", "density": AT},
                     b={"method": "set", "density": AT}, effect=1.0,
                     over={"density": levels("density", lambda d: d < 1)})
    judged = judge([spec], _frame())
    assert [v.name for v in judged.verdicts] == ["RigL - SET, density 0.1", "RigL - SET, density 0.2"]
    assert all(v.effect.estimate == pytest.approx(3.0, abs=0.5) for v in judged.verdicts)
    assert all(v.effect.n_a == 6 and v.effect.paired for v in judged.verdicts)


def test_sides_pair_by_seed_and_match_stats_claims():
    frame = _frame()
    spec = ClaimSpec("SET - dense", "accuracy", a={"method": "set", "density": 0.1}, b={"method": "dense"},
                     effect=BOOK_EFFECT, reference=BOOK_EFFECT_REFERENCE)
    a = frame[(frame.method == "set") & (frame.density == 0.1)].sort_values("seed")["accuracy"].to_numpy() * 100
    b = frame[frame.method == "dense"].sort_values("seed")["accuracy"].to_numpy() * 100
    expected = stats.judge([stats.Claim("SET - dense", a, b, BOOK_EFFECT, paired=True, units="points",
                                        reference=BOOK_EFFECT_REFERENCE)])
    assert judge([spec], frame).verdicts == expected


def test_lower_is_better_log_ratios_and_constants():
    frame = _frame()
    faster = ClaimSpec("RigL faster than dense", "time", a={"method": "rigl", "density": 0.1}, b={"method": "dense"},
                       effect=math.log(1.2), transform="log", lower_is_better=True, scale=1.0, units="log ratio")
    against_one = ClaimSpec("time ratio below 1", "ratio", a={"method": "rigl"}, b=1.0, effect=0.1, transform="log",
                            lower_is_better=True, scale=1.0)
    frame["ratio"] = frame["time"] / 10.0
    judged = judge([faster, against_one], frame)
    assert judged.verdicts[0].effect.estimate == pytest.approx(math.log(1.5), abs=0.05)
    assert judged.verdicts[1].effect.estimate > 0


def test_equivalence_with_a_relative_margin_shares_the_error_budget():
    frame = _frame()
    match = ClaimSpec("SET matches dense", "accuracy", a={"method": "set", "density": 0.2}, b={"method": "dense"},
                      effect=0.05, kind="equivalence", relative_margin=True)
    beats = ClaimSpec("RigL - dense", "accuracy", a={"method": "rigl", "density": 0.2}, b={"method": "dense"}, effect=1)
    judged = judge([match, beats], frame)
    dense_mean = 100 * frame[frame.method == "dense"]["accuracy"].mean()
    assert judged.margins[0].margin == pytest.approx(0.05 * dense_mean)
    assert judged.margins[0].family_size == 2 and judged.verdicts[0].alpha == pytest.approx(0.025)
    assert set(judged.outcomes) == {"SET matches dense", "RigL - dense"}


def test_untestable_claims_are_left_out_and_an_empty_frame_judges_nothing():
    spec = ClaimSpec("MEST - dense", "accuracy", a={"method": "mest"}, b={"method": "dense"}, effect=1.0)
    largest_spec = ClaimSpec("at {density:g}", "accuracy", a={"method": "rigl", "density": AT},
                             b={"method": "set", "density": AT}, effect=1.0, over={"density": largest("density",
                                                                                                  method="set")})
    judged = judge([spec, largest_spec], _frame())
    assert [v.name for v in judged.verdicts] == ["at 0.2"]
    assert not judge([spec], pd.DataFrame()) and judge([spec], pd.DataFrame()).summary().startswith("No claim")


def test_bad_claim_declarations_are_refused():
    with pytest.raises(ValueError, match="kind='beats': allowed one of"):
        ClaimSpec("x", "m", a={}, b={}, effect=1.0, kind="beats")
    with pytest.raises(ValueError, match="effect=0"):
        ClaimSpec("x", "m", a={}, b={}, effect=0)
    with pytest.raises(ValueError, match="relative_margin=True"):
        ClaimSpec("x", "m", a={}, b={}, effect=0.1, relative_margin=True)


def test_one_headline_is_judged_first_and_glued():
    headline = ClaimSpec("RigL - dense", "accuracy", a={"method": "rigl", "density": 0.1},
                         b={"method": "dense"}, effect=1.0, headline=True)
    others = [ClaimSpec("SET matches or beats dense", "accuracy", a={"method": "set", "density": 0.1},
                        b={"method": "dense"}, effect=1.0, kind="non-inferiority"),
              ClaimSpec("RigL - SET, density {density:g}", "accuracy", a={"method": "rigl", "density": AT},
                        b={"method": "set", "density": AT}, effect=1.0,
                        over={"density": levels("density", lambda d: d < 1)})]
    judged = judge([*others, headline], _frame(), rerun="papermill ch.ipynb -y 'seeds: {seeds}'")
    assert judged.headline == "RigL - dense" and judged.gate_open
    assert judged.headline_verdict.family_size == 1 and judged.headline_verdict.outcome == stats.REPRODUCED
    assert [m.kind for m in judged.margins] == ["non-inferiority"] and judged.margins[0].family_size == 3
    assert judged.margins[0].outcome == stats.REPRODUCED  # SET is 2 points better: it matches or beats
    assert judged.rerun_line(judged.headline_verdict).startswith("papermill ch.ipynb -y 'seeds: [0, 1")
    with pytest.raises(ValueError, match="allowed one headline claim per chapter"):
        judge([headline, headline], _frame())
    spread = ClaimSpec("RigL - dense at {density:g}", "accuracy", a={"method": "rigl", "density": AT},
                       b={"method": "dense"}, effect=1.0, over={"density": levels("density", lambda d: d < 1)},
                       headline=True)
    with pytest.raises(ValueError, match="headline claim 'RigL - dense at {density:g}': 2 settings"):
        judge([spread], _frame())


def test_the_verdict_block_glues_the_headline(monkeypatch):
    from dstlib import book

    glued = {}
    monkeypatch.setattr(book, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    headline = ClaimSpec("RigL - dense", "accuracy", a={"method": "rigl", "density": 0.1}, b={"method": "dense"},
                         effect=1.0, headline=True)
    table = book.show_verdict(judge([headline], _frame(), rerun="run {seeds}"))
    assert {"headline_claim", "headline_outcome", "headline_mde", "headline_effect", "headline_estimate",
            "headline_power"} <= set(glued)
    assert "seeds would give 80% power at this spread: run [0, 1" in glued["headline_power"]
    assert glued["headline_claim"] == "RigL - dense" and glued["headline_mde"] <= glued["headline_effect"]
    assert table.loc["RigL - dense", "kind"] == "superiority (headline)"


def test_a_page_without_a_testable_headline_still_glues_it():
    from dstlib import book

    values = book.headline_glue(judge([ClaimSpec("x", "accuracy", a={"method": "none"}, b={"method": "dense"},
                                                 effect=1.0, headline=True)], _frame()))
    assert values["outcome"] == "not tested" and math.isnan(values["mde"])
