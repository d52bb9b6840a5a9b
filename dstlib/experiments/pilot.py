"""How a chapter's tutorial regime was chosen: a pilot on seeds disjoint from the tutorial's.

A chapter declares ``PILOT`` (a :class:`Pilot`): the candidate regimes (overrides of its tutorial
profile) and the pilot's seeds. :func:`run_pilot` trains every regime on those seeds, judges the chapter's
claims on each, and writes one row per regime to ``book/pilots/<chapter>.csv`` (atomically): the
headline's estimate and interval, the spread of its per-seed differences, its smallest detectable effect
at 80% power next to its effect of interest, the seeds that would give 80% power, the training time and
the load of the machine while it ran. The chapter shows that table in a folded box; the regime it runs
is the pilot's ``chosen`` one, and a test checks that the tutorial profile is that regime.

    python -m dstlib pilot large_kernels
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dstlib import checks, results
from dstlib.atomic import write_text

PILOTS = results.REPO_ROOT / "book" / "pilots"


@dataclass(frozen=True)
class Pilot:
    """Candidate tutorial regimes of a chapter, each a dict of overrides of its tutorial profile, tried
    on ``seeds`` (disjoint from the tutorial's); ``chosen`` names the regime the tutorial profile is, and
    ``why`` says in one sentence why it was chosen. ``headline_grid`` overrides every regime's grid to
    the runs the headline claim compares (the pilot judges the headline only)."""

    regimes: Mapping[str, Mapping[str, Any]]
    chosen: str
    seeds: Sequence[int]
    why: str
    headline_grid: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks.require(self.chosen in self.regimes, "chosen", self.chosen, f"one of {sorted(self.regimes)}")
        checks.require(len(self.seeds) >= 2 and len(set(self.seeds)) == len(self.seeds), "seeds", self.seeds,
                       "at least two distinct seeds")


def pilot_path(chapter: str) -> Path:
    return PILOTS / f"{chapter}.csv"


def regime_config(chapter: str, regime: str, **overrides: Any):
    """The configuration of one pilot regime: the tutorial profile, the regime's overrides, the pilot's
    seeds."""
    from dstlib import experiments

    pilot: Pilot = experiments.module(chapter).PILOT
    checks.require(regime in pilot.regimes, "regime", regime, f"one of {sorted(pilot.regimes)}")
    return experiments.resolve(chapter, "tutorial", **{**pilot.regimes[regime], **pilot.headline_grid,
                                                       "seeds": list(pilot.seeds), **overrides})


def headline_row(chapter: str, regime: str, frame: pd.DataFrame, seconds: float, load: float) -> dict[str, Any]:
    """One row of the pilot table: the headline claim judged on one regime's records."""
    from dstlib import experiments

    judgement = experiments.judge(chapter, frame)
    verdict = judgement.headline_verdict
    checks.require(verdict is not None, "chapter", chapter, "a chapter whose CLAIMS mark a headline")
    effect = verdict.effect
    interest = getattr(verdict, "margin", None)
    interest = verdict.paper_effect if interest is None else interest
    return {"regime": regime, "claim": verdict.name, "kind": getattr(verdict, "kind", "superiority"),
            "seeds": effect.n_a, "estimate": effect.estimate, "sd": effect.se * effect.n_a ** 0.5,
            "mde": verdict.mde, "effect_of_interest": interest, "decides": bool(verdict.mde <= interest),
            "outcome": verdict.outcome, "seeds_for_80pct": verdict.seeds_needed,
            "train_minutes": seconds / 60, "load_average": load}


def run_pilot(chapter: str, *, out_dir: str | None = None, say=print) -> pd.DataFrame:
    """Train every regime of ``chapter``'s ``PILOT`` on its seeds and write the pilot table."""
    from dstlib import experiments

    pilot: Pilot = experiments.module(chapter).PILOT
    rows = []
    for regime in pilot.regimes:
        load = os.getloadavg()[0]
        config = regime_config(chapter, regime, **({} if out_dir is None else {"out_dir": out_dir}))
        result = experiments.run(chapter, config)
        seconds = sum(record["wall_time_s"] for record in result.records)
        rows.append(headline_row(chapter, regime, result.frame, seconds, load))
        say(f"{regime}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in rows[-1].items() if k not in ("regime", "claim")))
    table = pd.DataFrame(rows)
    write_text(pilot_path(chapter), table.to_csv(index=False))
    return table


def pilot_table(chapter: str) -> pd.DataFrame:
    """The recorded pilot of ``chapter`` as the book shows it (one row per regime, the chosen one marked)."""
    from dstlib import experiments

    pilot: Pilot = experiments.module(chapter).PILOT
    table = pd.read_csv(pilot_path(chapter))
    table["regime"] = [f"{name} (chosen)" if name == pilot.chosen else name for name in table["regime"]]
    shown = table[["regime", "seeds", "estimate", "sd", "mde", "effect_of_interest", "outcome",
                   "seeds_for_80pct", "train_minutes"]]
    return shown.rename(columns={"mde": "smallest detectable", "effect_of_interest": "effect of interest",
                                 "seeds_for_80pct": "seeds for 80% power", "train_minutes": "minutes"}).round(2)
