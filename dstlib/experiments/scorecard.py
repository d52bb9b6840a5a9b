"""The book's scorecard: every claim of every chapter in one table, from the records the chapters wrote.

:func:`scorecard` reads (never trains) each chapter's records for a profile, judges its ``CLAIMS`` the way
the chapter does, and gives one row per claim: the chapter and its paper, the claim, its kind, whether it
is the headline, the estimate with its interval, the effect of interest (or margin) and where it comes
from, the outcome, and the seeds that would give 80% power. A chapter whose grid is not complete in the
records gets one row that says how many points are missing: it is never judged on part of its grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dstlib import experiments, stats
from dstlib.experiments import claims
from dstlib.experiments.common import recorded

COLUMNS = ["chapter", "paper", "claim", "kind", "headline", "estimate", "low", "high", "effect", "effect source",
           "outcome", "seeds for 80% power"]


def _row(title: str, paper: str, verdict: stats.Verdict | stats.MarginVerdict, headline: str | None) -> dict[str, Any]:
    margin = isinstance(verdict, stats.MarginVerdict)
    return {"chapter": title, "paper": paper, "claim": verdict.name,
            "kind": verdict.kind if margin else "superiority", "headline": verdict.name == headline,
            "estimate": verdict.effect.estimate, "low": verdict.low if margin else verdict.effect.low,
            "high": verdict.high if margin else verdict.effect.high,
            "effect": verdict.margin if margin else verdict.paper_effect,
            "effect source": verdict.reference or "the paper", "outcome": verdict.outcome,
            "seeds for 80% power": verdict.seeds_needed if verdict.seeds_needed is not None else np.nan}


def scorecard(profile: str = "tutorial", out_dir: str | None = None) -> pd.DataFrame:
    """One row per claim of every chapter in ``profile`` (see the module docstring)."""
    rows = []
    for name in experiments.names():
        module = experiments.module(name)
        config = module.SPEC.resolve(profile, out_dir=out_dir)
        result, missing = recorded(module, config)
        title, paper = module.SPEC.title, module.SPEC.paper or "the book's"
        if missing:
            rows.append({"chapter": title, "paper": paper, "claim": f"not judged: {len(missing)} of "
                         f"{len(missing) + len(result.records)} runs have no record", "outcome": "not run"})
            continue
        frame = module.judged_frame(result) if hasattr(module, "judged_frame") else result.frame
        judgement = claims.judge(experiments.claims_of(module, profile), frame)
        rows.extend(_row(title, paper, verdict, judgement.headline) for verdict in judgement.judged)
    return pd.DataFrame(rows, columns=COLUMNS)
