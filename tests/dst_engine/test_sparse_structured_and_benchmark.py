"""Structured alternatives (dstlib.sparse.structured) and the sparse-speed benchmark (dstlib.sparse.benchmark,
benchmarks/bench_sparse_training.py --quick): they run and keep their promises, no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from dstlib.sparse import benchmark, structured

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_sparse_training.py"


def test_neuron_fraction_matches_the_weight_budget() -> None:
    widths = [1024, 4096, 4096, 10]
    for density in (0.5, 0.05, 0.01):
        k = structured.neuron_fraction(widths, density)
        kept = 1024 * 4096 * k + 4096 * 4096 * k * k + 4096 * k * 10
        assert kept == pytest.approx(density * (1024 * 4096 + 4096 * 4096 + 4096 * 10), rel=1e-6)
    with pytest.raises(ValueError, match="density"):
        structured.neuron_fraction(widths, 0.0)


def test_shrunk_mlp_computes_what_the_kept_neurons_compute() -> None:
    model = benchmark.mlp((12, 20, 16, 3))
    shrunk = structured.shrink_neurons(model, 0.5)
    assert [m.out_features for m in shrunk if isinstance(m, nn.Linear)] == [10, 8, 3]
    kept = [torch.topk(s, n).indices for s, n in zip(structured.neuron_importance(model), (10, 8), strict=True)]
    reference = benchmark.mlp((12, 20, 16, 3))
    with torch.no_grad():  # silence the dropped neurons of the original: same function
        for index, keep in zip((0, 2), kept, strict=True):
            dropped = torch.ones(reference[index].out_features, dtype=torch.bool)
            dropped[keep] = False
            reference[index].weight[dropped] = 0
            reference[index].bias[dropped] = 0
        x = torch.randn(5, 12)
        torch.testing.assert_close(shrunk(x), reference(x))
    with pytest.raises(ValueError, match="model"):
        structured.shrink_neurons(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), 0.5)


def test_two_of_four_mask_and_cuda_guard() -> None:
    weight = torch.randn(8, 16)
    mask = structured.semi_structured_mask(weight)
    assert mask.reshape(8, 4, 4).sum(-1).eq(2).all()
    dropped_max = (weight.abs() * ~mask).reshape(8, 4, 4).amax(-1)
    kept_min = (weight.abs() + (~mask) * 1e9).reshape(8, 4, 4).amin(-1)
    assert bool((dropped_max <= kept_min).all())
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the CPU guard does not apply")
    assert "CUDA" in structured.semi_structured_unavailable()
    with pytest.raises(RuntimeError, match="CUDA"):
        structured.to_semi_structured(nn.Sequential(nn.Linear(128, 64)))


def test_benchmark_frame_and_quick_script(tmp_path: Path) -> None:
    frame = benchmark.benchmark((16, 64, 64, 4), (0.1,), (2,), repeats=1, calls=1)
    assert list(frame.columns) == list(benchmark.COLUMNS)
    assert set(frame["variant"]) >= {"dense", "masked", "truly_sparse", "truly_sparse+update", "csr", "neurons"}
    assert (frame.loc[frame["variant"] == "dense", "ratio"] == 1.0).all()
    assert (frame["peak_bytes"] >= frame["state_bytes"]).all()
    state = frame[frame["mode"] == "train"].set_index("variant")["state_bytes"]
    assert state["truly_sparse"] < state["dense"] < state["masked"]
    assert (frame["ms"] > 0).all() and (frame["ratio"] > 0).all()  # measured: structure only, no timing asserted
    assert (frame["of_ideal"] == frame["ideal"] / frame["ratio"]).all()
    table = benchmark.crossover(frame, below=float("inf"))  # every variant counts: the table's shape only
    assert table.index.tolist() == [2] and ("inference", "csr") in table.columns
    assert ("train", "dense") not in table.columns and list(benchmark.summary(frame, 0.1)["train_ratios"]) == [2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    csv = tmp_path / "quick.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--csv", str(csv)],
                          check=True, env=env, capture_output=True, text=True, timeout=120)
    assert "goal at density 0.05" in done.stdout and csv.exists()


def test_timing_columns_take_medians_per_round() -> None:
    times = {"dense": [1.0, 2.0, 4.0], "masked": [0.5, 3.0, 2.0], "dense_fp16": [1.0, 1.0, 1.0],
             "semi_structured": [0.25, 0.5, 2.0]}
    columns = benchmark.timing_columns(times)
    assert columns["dense"] == {"ms": 2000.0, "ratio": 1.0}
    assert columns["masked"] == {"ms": 2000.0, "ratio": 0.5}  # median of 0.5, 1.5, 0.5 (per round, not of medians)
    assert columns["semi_structured"]["ratio"] == 0.5  # against dense_fp16


def _synthetic_frame(ratios: dict[tuple[str, str, float, int], float]) -> pd.DataFrame:
    """A benchmark frame with the given ratios (no timing): dense rows at ratio 1 for each point."""
    rows = []
    points = {(mode, density, batch) for mode, _, density, batch in ratios}
    for mode, density, batch in sorted(points):
        rows.append({"mode": mode, "variant": "dense", "density": density, "batch": batch, "ratio": 1.0, "ideal": 1.0})
    for (mode, variant, density, batch), ratio in ratios.items():
        rows.append({"mode": mode, "variant": variant, "density": density, "batch": batch, "ratio": ratio,
                     "ideal": density})
    frame = pd.DataFrame(rows).reindex(columns=list(benchmark.COLUMNS))
    frame["of_ideal"] = frame["ideal"] / frame["ratio"]
    frame["ms"] = frame["ratio"]
    return frame


def test_crossover_and_summary_arithmetic_on_synthetic_timings() -> None:
    frame = _synthetic_frame({
        ("train", "truly_sparse", 0.1, 8): 1.5, ("train", "truly_sparse", 0.05, 8): 0.8,
        ("train", "truly_sparse", 0.1, 64): 0.95, ("train", "truly_sparse", 0.05, 64): 0.5,
        ("inference", "csr", 0.1, 8): 2.0, ("inference", "csr", 0.05, 8): 1.2,
        ("inference", "csr", 0.1, 64): 0.3, ("inference", "csr", 0.05, 64): 0.1,
    })
    table = benchmark.crossover(frame)
    assert table.index.tolist() == [8, 64]
    assert table.loc[8, ("train", "truly_sparse")] == 0.05 and table.loc[64, ("train", "truly_sparse")] == 0.1
    assert pd.isna(table.loc[8, ("inference", "csr")]) and table.loc[64, ("inference", "csr")] == 0.1
    strict = benchmark.crossover(frame, below=0.9)  # 0.95 is noise at this threshold
    assert strict.loc[64, ("train", "truly_sparse")] == 0.05
    goal = benchmark.summary(frame, density=0.05, max_batch=64)
    assert goal["train_ratios"] == {8: 0.8, 64: 0.5} and goal["train_beats_dense"]
    assert goal["csr_of_ideal"] == pytest.approx({8: 0.05 / 1.2, 64: 0.5}) and not goal["csr_reaches_third"]
    assert benchmark.summary(frame, density=0.05, max_batch=8)["train_ratios"] == {8: 0.8}
    assert not benchmark.summary(frame, density=0.1)["train_beats_dense"]
    assert not benchmark.summary(frame, density=0.5)["train_beats_dense"]  # no rows: not a success
