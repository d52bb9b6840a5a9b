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
from dstlib.experiments.claims import BOOK_EFFECT, Judgement


def glue(name: str, value: Any, display: bool = True) -> None:
    """``myst_nb.glue(name, value, display)``; a matplotlib figure is closed once glued (see the module)."""
    from myst_nb import glue as myst_glue

    myst_glue(name, value, display=display)
    if isinstance(value, plt.Figure):
        plt.close(value)


def verdict_table(judgement: Judgement) -> pd.DataFrame:
    """One row per claim (superiority claims, then equivalences): estimate, interval, the effect of interest
    or margin, the minimum detectable effect (superiority) and the outcome, rounded for the page."""
    rows = stats.verdict_table(judgement.verdicts).assign(kind="superiority")
    matches = pd.DataFrame([{"claim": m.name, "estimate": m.effect.estimate, "low": m.low, "high": m.high,
                             "paper_effect": m.margin, "outcome": m.outcome, "kind": "equivalence"}
                            for m in judgement.equivalences])
    table = pd.concat([frame for frame in (rows, matches) if not frame.empty]) if judgement else rows
    return table.rename(columns={"paper_effect": "effect / margin"}).set_index("claim").round(2)


def show_verdict(judgement: Judgement) -> pd.DataFrame:
    """Glue a chapter's verdict block and return its table (the cell's result):

    * ``fig_forest``: the forest plot of the superiority claims (an empty figure without one);
    * ``verdict``: the generated paragraph (:meth:`Judgement.summary`);
    * ``table_verdicts``: :func:`verdict_table` (not displayed: it is the cell's result);
    * ``n_claims``, ``mde_low``, ``mde_high``: the claims tested and the range of their minimum detectable
      effects; ``effect_of_interest``: the book's smallest effect of interest.
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
    return table
