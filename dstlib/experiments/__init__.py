"""The chapter registry and the two calls every chapter shares: :func:`run` (its grid, records and extras)
and :func:`judge` (its claims' verdicts). A chapter module is a declaration
(:class:`~dstlib.experiments.common.Chapter`): ``SPEC`` (knobs with defaults and profiles, a
:class:`dstlib.config.ChapterSpec`), ``load(config)``, ``points(config)``,
``train_one(config, point, data, checkpoint)`` and ``CLAIMS``; plain functions, no notebook state, so the
notebook, the CLI and ``torchrun`` all run the same code.

Adding a chapter touches its experiment module, its notebook, ``_toc.yml`` and :data:`CHAPTERS` below;
the CLI and the chapter tests iterate over this registry."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pandas as pd

from dstlib.config import ChapterSpec, Config

CHAPTERS = {
    "dst_from_scratch": "dstlib.experiments.dst_from_scratch",
    "corruption_robustness": "dstlib.experiments.corruption_robustness",
    "hard_samples": "dstlib.experiments.hard_samples",
    "dynamic_data_pruning": "dstlib.experiments.dynamic_data_pruning",
    "sparse_feature_fusion": "dstlib.experiments.sparse_feature_fusion",
    "dynamic_sparse_timeseries": "dstlib.experiments.dynamic_sparse_timeseries",
    "large_kernels": "dstlib.experiments.large_kernels",
    "where_is_the_speedup": "dstlib.experiments.where_is_the_speedup",
}


def names() -> list[str]:
    """Chapter names in book order."""
    return list(CHAPTERS)


def module(chapter: str) -> ModuleType:
    """The experiment module of ``chapter``; a ``ValueError`` lists the chapters otherwise."""
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r}: allowed one of {', '.join(CHAPTERS)}")
    return importlib.import_module(CHAPTERS[chapter])


def _chapter(chapter: str | ModuleType) -> ModuleType:
    return module(chapter) if isinstance(chapter, str) else chapter


def run(chapter: str | ModuleType, config: Config, data: Any = None):
    """Run the grid of ``chapter`` (a name or its module) for ``config``: see
    :func:`dstlib.experiments.common.run`."""
    from dstlib.experiments import common

    return common.run(_chapter(chapter), config, data)


def gather(chapter: str | ModuleType, config: Config, shards: int = 1):
    """The records of every slice of ``chapter``'s sharded grid as one run: see
    :func:`dstlib.experiments.common.gathered`."""
    from dstlib.experiments import common

    return common.gathered(_chapter(chapter), config, shards)


def judge(chapter: str | ModuleType, frame: pd.DataFrame, *, alpha: float = 0.05):
    """The verdicts of ``chapter``'s ``CLAIMS`` on the records ``frame``: see
    :func:`dstlib.experiments.claims.judge`; the power lines offer the papermill command that reruns the
    chapter's notebook in the frame's profile with the seeds a claim needs."""
    from dstlib.experiments import claims

    module = _chapter(chapter)
    if "fast_dev_run" in frame and frame["fast_dev_run"].fillna(False).astype(bool).nunique() > 1:
        raise ValueError("frame: mixes fast dev run records (params fast_dev_run=True) with real ones; allowed "
                         "records of one kind (a fast dev run's verdicts say nothing about the paper's claims)")
    profile = frame["profile"].iloc[0] if "profile" in frame and len(frame) else "tutorial"
    rerun = f'papermill {module.SPEC.notebook} rerun.ipynb -p profile {profile} -y "seeds: {{seeds}}"'
    return claims.judge(claims_of(module, profile), frame, alpha=alpha, rerun=rerun)


def claims_of(chapter: str | ModuleType, profile: str) -> list:
    """The claims ``chapter`` judges in ``profile``: ``claims_for(profile)`` where the chapter defines it
    (a paper's effect holds where the profile's metric is the paper's; on the tutorial's stand-in data the
    book's own effect of interest, with the reason), otherwise its ``CLAIMS``."""
    module = _chapter(chapter)
    return list(module.claims_for(profile) if hasattr(module, "claims_for") else module.CLAIMS)


def spec(chapter: str) -> ChapterSpec:
    """The :class:`~dstlib.config.ChapterSpec` of ``chapter``."""
    return module(chapter).SPEC


def resolve(chapter: str, profile: str = "tutorial", **overrides: Any) -> Config:
    """The validated configuration of the chapter named ``chapter`` (see :func:`dstlib.config.resolve`).

    >>> resolve("dst_from_scratch", "smoke", densities=[0.1]).densities
    [0.1]
    """
    return spec(chapter).resolve(profile, **overrides)
