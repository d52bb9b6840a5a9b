"""What the chapter experiments share: the method grid, the sparsity engine for a method name, and the
result container."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dstlib import results, sparse
from dstlib.config import Config, Knob
from dstlib.train import EngineFactory

# Method name in the chapters -> dstlib.sparse preset.
PRESETS = {"static": sparse.Static, "set": sparse.SET, "rigl": sparse.RigL, "mest": sparse.MEST,
           "granet": sparse.GraNet, "gmp": sparse.GMP}
METHODS = ("dense", *PRESETS)

# Knobs of every chapter that trains with a DST engine.
SPARSITY_KNOBS = {
    "distribution": Knob("layer-wise densities: uniform, ER or ERK", str, choices=("uniform", "er", "erk")),
    "update_every": Knob("optimizer steps between topology updates", int, low=1),
    "drop_fraction": Knob("fraction of active weights dropped (and regrown) at an update, cosine-annealed",
                          float, low=0.0, high=1.0, high_open=True),
}


@dataclass(frozen=True)
class Run:
    """One training run of a chapter's grid: a method at a density with a seed (dense has density 1)."""

    method: str
    density: float
    seed: int

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"method": self.method, "density": self.density, "seed": self.seed, **extra}


def grid(methods: Sequence[str], densities: Sequence[float], seeds: Sequence[int]) -> Iterator[Run]:
    """Every (method, density, seed); the dense baseline runs once per seed at density 1."""
    for seed in seeds:
        for method in methods:
            for density in ([1.0] if method == "dense" else densities):
                yield Run(method, float(density), int(seed))


def engine_factory(method: str, density: float, config: Config, seed: int, **options: Any) -> EngineFactory | None:
    """A ``(model, optimizer, total_steps) -> engine`` builder for :func:`dstlib.train.fit`, or ``None``
    for dense training. Uses the config's ``distribution``, ``update_every`` and ``drop_fraction``."""
    if method == "dense":
        return None
    if method not in PRESETS:
        raise ValueError(f"method={method!r} is not allowed; allowed: {', '.join(METHODS)}")
    preset = PRESETS[method]
    kwargs: dict[str, Any] = {"density": density, "distribution": config.distribution, "seed": seed, **options}
    if method != "static":
        kwargs.update(update_every=config.update_every, drop_fraction=config.drop_fraction)

    def build(model, optimizer, total_steps):
        return preset(model, optimizer, total_steps=total_steps, **kwargs)

    return build


@dataclass
class ChapterResult:
    """What a chapter's ``run(config)`` returns: one record per training run (also written as JSON under
    ``out_dir``), the records as a DataFrame, and in-memory extras (mask snapshots, curves) for figures."""

    config: Config
    records: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        return results.to_frame(self.records)

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and write it atomically under the config's ``out_dir`` (rank 0 only under
        ``torchrun``, where every rank computes the same record)."""
        self.records.append(record)
        if int(os.environ.get("RANK", 0)) == 0:
            results.write_record(record, self.config.out_dir)
