"""Structured alternatives (dstlib.sparse.structured) and the sparse-speed benchmark (dstlib.sparse.benchmark,
benchmarks/bench_sparse_training.py --quick): they run and keep their promises, no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    table = benchmark.crossover(frame, below=10.0)  # everything "faster": the density measured everywhere
    assert table.index.tolist() == [2] and ("inference", "csr") in table.columns
    assert (table.loc[2, ("train", "truly_sparse")] == 0.1) and benchmark.summary(frame, 0.1)["train_ratios"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    csv = tmp_path / "quick.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--csv", str(csv)],
                          check=True, env=env, capture_output=True, text=True, timeout=120)
    assert "goal at density 0.05" in done.stdout and csv.exists()
