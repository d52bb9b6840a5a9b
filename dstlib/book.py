"""What a chapter page shows through myst-nb ``glue``: values, figures and tables glued once, and the verdict
block every chapter ends its experiment with.

:func:`glue` is myst-nb's ``glue`` that closes a glued figure, so a chapter read in Jupyter shows each
figure once (the glue's display) instead of twice (the glue's display and the figure the inline backend
draws again at the end of the cell). :func:`show_verdict` is the one verdict cell of every chapter::

    judgement = experiments.judge(chapter, frame)
    book.show_verdict(judgement)
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dstlib import plotting, stats
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


def show_verdict(judgement: Judgement) -> pd.DataFrame:
    """Glue a chapter's verdict block and return its table (the cell's result):

    * ``fig_forest``: the forest plot of the superiority claims (an empty figure without one);
    * ``verdict``: the generated paragraph (:meth:`~dstlib.stats.Judgement.summary`);
    * ``table_verdicts``: :func:`verdict_table` (not displayed: it is the cell's result);
    * ``n_claims``, ``mde_low``, ``mde_high``: the claims tested and the range of their minimum detectable
      effects; ``effect_of_interest``: the book's smallest effect of interest;
    * ``headline_claim``, ``headline_outcome``, ``headline_estimate``, ``headline_effect``,
      ``headline_mde`` and ``headline_power``: see :func:`headline_glue`.
    """
    verdicts = judgement.verdicts
    glue("fig_forest", plotting.forest(verdicts) if verdicts else plt.figure())
    glue("verdict", judgement.summary(), display=False)
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
