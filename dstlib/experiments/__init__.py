"""One module per chapter, each with ``SPEC`` (a :class:`dstlib.config.ChapterSpec`) and
``run(config) -> ChapterResult``: plain functions, no notebook state, so the notebook, the CLI and
``torchrun`` all run the same code."""

from __future__ import annotations

import importlib
from types import ModuleType

from dstlib.config import ChapterSpec

CHAPTERS = {
    "dst_from_scratch": "dstlib.experiments.dst_from_scratch",
    "corruption_robustness": "dstlib.experiments.corruption_robustness",
}


def names() -> list[str]:
    """Chapter names in book order."""
    return list(CHAPTERS)


def module(chapter: str) -> ModuleType:
    """The experiment module of ``chapter``; a ``ValueError`` lists the chapters otherwise."""
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r} is not allowed; allowed: {', '.join(CHAPTERS)}")
    return importlib.import_module(CHAPTERS[chapter])


def spec(chapter: str) -> ChapterSpec:
    """The :class:`~dstlib.config.ChapterSpec` of ``chapter``."""
    return module(chapter).SPEC
