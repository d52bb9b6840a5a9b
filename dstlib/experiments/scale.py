"""What a chapter's paper grid costs, estimated from its fast dev run.

A fast dev run (``fast_dev_run=True``, :data:`dstlib.config.FAST_DEV_COMMON`) trains every point of a
shortened grid for :data:`~dstlib.config.FAST_DEV_STEPS` steps through the profile's real path; each
point's history row holds what one step cost (:class:`dstlib.callbacks.StepCost`: the FLOPs of the
first step, counted, and the mean wall time of the others). With the chapter's ``paper_steps(config,
point) -> (optimizer steps, samples per step[, sample cost])`` of every point of the full grid
(:func:`dstlib.experiments.common.paper_steps_of`), :func:`cost_table` turns them into the grid's steps and
its time (samples are weighted by their cost relative to the fast dev record's: chapter 6 prices series of
every length by one problem's):

* **on this CPU**: steps x the measured time per sample x samples per step (time taken as linear in
  the batch; the first step, which pays for allocations, is left out);
* **on a GPU**: steps x the counted FLOPs per sample x samples per step, divided by :data:`GPU`'s peak
  bf16 throughput times :data:`GPU_UTILISATION` (the share of peak that training reaches on large
  batches; small models and data loading often reach less, so read it as a lower bound on the time).

FLOPs are those the run executes: a masked engine runs dense kernels, so sparse and dense points of the
same model cost the same here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dstlib.config import Config
from dstlib.experiments.common import paper_steps_of

# The GPU of the estimate: NVIDIA H100 SXM, 989 TFLOP/s dense bf16 (NVIDIA's datasheet; the H200 has the same
# compute), at 40% of peak.
GPU = "NVIDIA H100 SXM (989 TFLOP/s bf16 dense)"
GPU_PEAK_FLOPS = 989e12
GPU_UTILISATION = 0.4


def step_cost(record: Mapping[str, Any]) -> tuple[float, float, float]:
    """``(FLOPs per sample, seconds per sample, samples per step)`` of a fast dev run's record, from its
    last history row."""
    row = record["history"][-1]
    per_step = row["samples"] / max(1, row["step"])
    return row["flops_per_step"] / per_step, row["step_time_s"] / per_step, per_step


def matching(fast: pd.DataFrame, point: Mapping[str, Any]) -> pd.DataFrame:
    """The fast dev records that stand for ``point``: those agreeing with it on each parameter the fast
    dev grid varies (the method, the model variant, ...), taken in the grid's order; a value the fast
    dev grid lacks (a density it did not run) leaves that parameter open."""
    rows = fast
    for key in fast.columns:
        if key in point and rows[key].nunique(dropna=False) > 1 and (rows[key] == point[key]).any():
            rows = rows[rows[key] == point[key]]
    return rows


def cost_table(chapter: Any, fast_records: list[dict[str, Any]], paper: Config) -> pd.DataFrame:
    """The full grid of ``paper`` (the profile the fast dev run shortened) priced by the fast dev run's
    ``fast_records``: one row per fast dev point (the grid's points it stands for), then a total row.

    Columns: the ``point`` (the values the fast dev grid varies), ``runs`` of the full grid, their
    optimizer ``steps``, ``samples_per_step`` (its range where the runs differ),
    ``gflops_per_sample`` (forward and backward, counted), ``ms_per_sample_here`` (measured),
    ``cpu_days`` here and ``gpu_hours`` on :data:`GPU`."""
    if not hasattr(chapter, "paper_steps"):
        raise ValueError(f"chapter {paper.chapter!r} declares no paper_steps(config, point): no cost table")
    costs = pd.DataFrame([dict(zip(("flops_per_sample", "s_per_sample", "fast_batch"), step_cost(r), strict=True))
                          for r in fast_records])
    fast = pd.DataFrame([r["params"] for r in fast_records]).drop(columns=["fast_dev_run"], errors="ignore")
    varying = [key for key in fast.columns if fast[key].nunique(dropna=False) > 1 and key != "seed"]
    rows: dict[int, dict[str, Any]] = {}
    for point in chapter.points(paper):
        index = int(matching(fast, point).index[0])
        steps, per_step, sample_cost = paper_steps_of(chapter, paper, point)
        shown = ", ".join(f"{key}={fast.at[index, key]}" for key in varying) or "every point"
        row = rows.setdefault(index, {"point": shown, "runs": 0, "steps": 0, "batches": set(), "samples": 0.0})
        row["runs"] += 1
        row["steps"] += int(steps)
        row["batches"].add(per_step)
        row["samples"] += steps * per_step * sample_cost
    table = []
    for index, row in rows.items():
        samples, batches = row.pop("samples"), sorted(row.pop("batches"))
        row["samples_per_step"] = batches[0] if len(batches) == 1 else f"{batches[0]:g}-{batches[-1]:g}"
        flops, seconds = costs.at[index, "flops_per_sample"], costs.at[index, "s_per_sample"]
        table.append({**row, "gflops_per_sample": flops / 1e9, "ms_per_sample_here": seconds * 1e3,
                      "cpu_days": samples * seconds / 86400,
                      "gpu_hours": samples * flops / (GPU_PEAK_FLOPS * GPU_UTILISATION) / 3600})
    frame = pd.DataFrame(table)
    total = {column: np.nan for column in frame.columns}
    total.update({"point": "all", "runs": frame["runs"].sum(), "steps": frame["steps"].sum(),
                  "cpu_days": frame["cpu_days"].sum(), "gpu_hours": frame["gpu_hours"].sum()})
    return pd.concat([frame, pd.DataFrame([total])], ignore_index=True)


def fast_dev_run(chapter: Any, profile: str = "paper", **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """Run ``chapter``'s fast dev run of ``profile`` (with ``overrides``, such as where the data is) and
    price the profile's full grid by it: ``(ChapterResult, cost table)``. The table is also written
    beside the records, ``<results>/<chapter>/fast_dev_cost_<profile>.csv``."""
    from dstlib import results
    from dstlib.atomic import write_text
    from dstlib.experiments import common

    full = chapter.SPEC.resolve(profile, **overrides)
    config = chapter.SPEC.resolve(profile, **overrides, fast_dev_run=True)
    result = common.run(chapter, config)
    table = cost_table(chapter, result.records, full)
    folder = results.results_root(config.out_dir) / config.chapter
    write_text(folder / f"fast_dev_cost_{config.profile}.csv", table.to_csv(index=False))
    return result, table


@contextlib.contextmanager
def data_at(root: str | os.PathLike) -> Iterator[None]:
    """Read every dataset from ``root`` inside the block (``DSTLIB_DATA``, see
    :func:`dstlib.data.registry.data_root`)."""
    before = os.environ.get("DSTLIB_DATA")
    os.environ["DSTLIB_DATA"] = str(root)
    try:
        yield
    finally:
        if before is None:
            del os.environ["DSTLIB_DATA"]
        else:
            os.environ["DSTLIB_DATA"] = before


def fast_dev_on_fixture(chapter: Any, profile: str = "paper", **overrides: Any) -> tuple[Any, pd.DataFrame]:
    """:func:`fast_dev_run` on a tiny dataset the chapter writes in its real on-disk layout
    (``chapter.fixture(root)``) in a temporary folder, with records there too: the paper path proven and
    priced without the paper's data (the tests, and the chapters' "At paper scale" tables)."""
    with tempfile.TemporaryDirectory(prefix=f"dstlib-fast-dev-{chapter.SPEC.name}-") as folder:
        root = Path(folder)
        chapter.fixture(root / "data")
        with data_at(root / "data"):
            return fast_dev_run(chapter, profile, **{"out_dir": str(root / "results"), "progress": False, **overrides})
