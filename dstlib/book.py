"""What a chapter page shows through myst-nb ``glue``: values, figures and tables glued once, and the verdict
block every chapter ends its experiment with.

:func:`glue` is myst-nb's ``glue`` that closes a glued figure, so a chapter read in Jupyter shows each
figure once (the glue's display) instead of twice (the glue's display and the figure the inline backend
draws again at the end of the cell). :func:`show_verdict` is the one verdict cell of every chapter::

    judgement = experiments.judge(chapter, frame)
    book.show_verdict(judgement)

The page shows the verdict once: the cell's output is removed there (tag ``remove-output``), and the
chapter's text shows the forest plot (``fig_forest``) and the table (``table_verdicts``) as captioned glued
figures and the paragraph (``verdict``) as glued text.
"""

from __future__ import annotations

import time
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dstlib import plotting, stats
from dstlib.experiments import scale
from dstlib.experiments.claims import BOOK_EFFECT
from dstlib.stats import Judgement


def glue(name: str, value: Any, display: bool = True) -> None:
    """``myst_nb.glue(name, value, display)``; a matplotlib figure is closed once glued (see the module)."""
    from myst_nb import glue as myst_glue

    myst_glue(name, value, display=display)
    if isinstance(value, plt.Figure):
        plt.close(value)


def verdict_table(judgement: Judgement) -> pd.DataFrame:
    """One row per claim (superiority claims, then margin claims): its kind, estimate, interval, the effect
    of interest or margin, the smallest detectable effect, the outcome, and the seeds that would give 80%
    power; the headline claim's kind is marked ``(headline)``. Rounded for the page."""
    rows = [{"claim": v.name, "kind": getattr(v, "kind", "superiority"), "estimate": v.effect.estimate,
             "low": v.effect.low if isinstance(v, stats.Verdict) else v.low,
             "high": v.effect.high if isinstance(v, stats.Verdict) else v.high,
             "effect / margin": v.paper_effect if isinstance(v, stats.Verdict) else v.margin,
             "smallest detectable": v.mde, "outcome": v.outcome,
             "seeds for 80% power": v.seeds_needed if v.seeds_needed is not None else np.nan}
            for v in judgement.judged]
    table = pd.DataFrame(rows, columns=["claim", "kind", "estimate", "low", "high", "effect / margin",
                                        "smallest detectable", "outcome", "seeds for 80% power"])
    table.loc[table["claim"] == judgement.headline, "kind"] += " (headline)"
    return table.set_index("claim").round(2)


def headline_glue(judgement: Judgement) -> dict[str, Any]:
    """The headline claim's values for the page: ``claim`` (its name), ``outcome``, ``estimate``, ``effect``
    (its effect of interest or margin), ``mde`` (its smallest detectable effect) and ``power`` (a sentence:
    the seeds that would give 80% power and the command that runs them); NaN and "no headline claim was
    tested" when the records cannot test one."""
    headline = judgement.headline_verdict
    if headline is None:
        return {"claim": "no headline claim was tested", "outcome": "not tested", "estimate": np.nan,
                "effect": np.nan, "mde": np.nan, "power": ""}
    effect = headline.paper_effect if isinstance(headline, stats.Verdict) else headline.margin
    power = (f"{headline.seeds_needed} seeds would give 80% power at this spread: {judgement.rerun_line(headline)}"
             if headline.seeds_needed is not None else "The spread over seeds is undefined: no seed count follows.")
    return {"claim": headline.name, "outcome": headline.outcome, "estimate": float(headline.effect.estimate),
            "effect": float(effect), "mde": float(headline.mde), "power": power}


def verdict_paragraph(judgement: Judgement) -> str:
    """The verdict in one short paragraph, for the page beside the forest plot and :func:`verdict_table`
    (which carry every claim's numbers): the headline claim's sentence, then the other claims counted by
    outcome (or, where the headline is not decided, why they were not tested), then the command that reruns
    the chapter with the seeds the headline needs; without a headline, the count of outcomes alone."""
    if not judgement:
        return "No claim could be tested with these parameters."
    percent = f"{100 * judgement.alpha:.3g}%"
    headline = judgement.headline_verdict
    others = [v for v in judgement.judged if headline is None or v.name != headline.name]
    see = "the table gives each one's estimate, interval and outcome"
    if headline is None:
        claims = "1 claim" if len(others) == 1 else f"{len(others)} claims"
        return f"Of {claims}, tested together at a family-wise error rate of {percent}: {stats.tally(others)}; {see}."
    parts = [f"Headline claim, tested first at the full {percent}: {headline.sentence}"]
    other = "the other claim was" if len(others) == 1 else f"the other {len(others)} claims were"
    if others and judgement.gate_open:
        parts.append(f"The headline is decided, so {other} tested after it, together at a family-wise "
                     f"{percent}: {stats.tally(others)}; {see}.")
    elif others:
        parts.append(f"The headline is not decided, so {other} not tested (fixed-sequence gatekeeping tests them "
                     f"only after it, which keeps the family-wise error at {percent}); the table gives their "
                     f"estimates, for exploration only.")
    rerun = judgement.rerun_line(headline)
    if rerun:
        parts.append(f"To rerun with the seeds the headline needs: {rerun}")
    return " ".join(parts)


def show_verdict(judgement: Judgement) -> pd.DataFrame:
    """Glue a chapter's verdict block and return its table (the cell's result):

    * ``fig_forest``: the forest plot of the superiority claims (an empty figure without one);
    * ``verdict``: the generated paragraph (:func:`verdict_paragraph`);
    * ``table_verdicts``: :func:`verdict_table` (not displayed: it is the cell's result);
    * ``n_claims``, ``mde_low``, ``mde_high``: the claims tested and the range of their minimum detectable
      effects; ``effect_of_interest``: the book's smallest effect of interest;
    * ``headline_claim``, ``headline_outcome``, ``headline_estimate``, ``headline_effect``,
      ``headline_mde`` and ``headline_power``: see :func:`headline_glue`.
    """
    verdicts = judgement.verdicts
    glue("fig_forest", plotting.forest(verdicts) if verdicts else plt.figure())
    glue("verdict", verdict_paragraph(judgement), display=False)
    table = verdict_table(judgement)
    glue("table_verdicts", table, display=False)
    glue("n_claims", len(judgement.outcomes), display=False)
    mdes = [v.mde for v in verdicts]
    glue("mde_low", float(min(mdes, default=np.nan)), display=False)
    glue("mde_high", float(max(mdes, default=np.nan)), display=False)
    glue("effect_of_interest", BOOK_EFFECT, display=False)
    for name, value in headline_glue(judgement).items():
        glue(f"headline_{name}", value, display=False)
    return table


PAPER_COST_COLUMNS = {"point": "point", "runs": "runs", "steps": "optimizer steps", "samples_per_step": "batch",
                      "gflops_per_sample": "GFLOPs per sample", "ms_per_sample_here": "ms per sample (this CPU)",
                      "cpu_days": "days on this CPU", "gpu_hours": "GPU hours"}


def show_pilot(chapter: str) -> pd.DataFrame:
    """Glue the chapter's recorded pilot for its folded "How this regime was chosen" box: ``pilot_table``
    (one row per candidate regime, :func:`dstlib.experiments.pilot.pilot_table`) and ``pilot_why`` (why
    the chosen regime was chosen). Returns the table."""
    from dstlib import experiments
    from dstlib.experiments import pilot

    table = pilot.pilot_table(chapter)
    glue("pilot_table", table, display=False)
    glue("pilot_why", experiments.module(chapter).PILOT.why, display=False)
    return table


def paper_cost_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`dstlib.experiments.scale.cost_table` for the page: readable headings, rounded, the total row's
    empty cells blank."""
    shown = table.rename(columns=PAPER_COST_COLUMNS).set_index("point")
    shown = shown.round({"GFLOPs per sample": 3, "ms per sample (this CPU)": 2, "days on this CPU": 1,
                         "GPU hours": 2})
    return shown.astype(object).where(shown.notna(), "")


def show_paper_cost(chapter: Any, profile: str, **overrides: Any) -> pd.DataFrame | None:
    """Run ``chapter``'s fast dev run of its ``paper`` profile on its real-layout fixture
    (:func:`dstlib.experiments.scale.fast_dev_on_fixture`, with ``overrides``) and glue what the full paper
    grid costs; returns the cost table (the cell's result). ``profile`` is the notebook's: the ``smoke``
    profile (``make test``'s notebook run) skips it and returns ``None``, since ``make test`` runs every
    chapter's paper fast dev run in ``tests/test_fast_dev_*.py``. It glues:

    * ``paper_cost_table``: :func:`paper_cost_table` (not displayed: it is the cell's result);
    * ``paper_cost_runs``, ``paper_cost_steps``, ``paper_cost_cpu_days``, ``paper_cost_gpu_hours``: the
      grid's totals; ``paper_cost_gpu``: the GPU of the estimate;
    * ``paper_cost_fast_dev_s``: how long the fast dev run took here, in seconds.
    """
    if profile == "smoke":
        print("The smoke profile skips the paper path's fast dev run (tests/test_fast_dev_*.py run it).")
        return None
    start = time.perf_counter()
    _, table = scale.fast_dev_on_fixture(chapter, "paper", **{"workers": 1, **overrides})
    total = table.iloc[-1]
    glue("paper_cost_table", paper_cost_table(table), display=False)
    glue("paper_cost_runs", int(total["runs"]), display=False)
    glue("paper_cost_steps", int(total["steps"]), display=False)
    glue("paper_cost_cpu_days", float(total["cpu_days"]), display=False)
    glue("paper_cost_gpu_hours", float(total["gpu_hours"]), display=False)
    glue("paper_cost_gpu", f"{scale.GPU} at {scale.GPU_UTILISATION:.0%} of peak", display=False)
    glue("paper_cost_fast_dev_s", time.perf_counter() - start, display=False)
    return table
