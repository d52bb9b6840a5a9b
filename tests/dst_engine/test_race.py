"""benchmarks/bench_vs_sparseprop.py: the race's table and goal lines on synthetic timings (no timing asserted)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_vs_sparseprop.py"


@pytest.fixture(scope="module")
def race():  # noqa: ANN201 (the script as a module)
    spec = importlib.util.spec_from_file_location("bench_vs_sparseprop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _records(times: dict[tuple[str, str, int, int], dict[str, list[float]]]) -> list[dict]:
    """``{(group, layer, kernel, batch): {variant: seconds per round}}`` at density 0.05 -> timing records."""
    records = []
    for (group, layer, kernel, batch), by_variant in times.items():
        for variant, seconds in by_variant.items():
            for r, value in enumerate(seconds):
                records.append({"group": group, "layer": layer, "kernel": kernel, "density": 0.05, "batch": batch,
                                "round": r, "variant": variant, "seconds": value})
    return records


def test_ratios_are_medians_of_same_round_ratios(race) -> None:  # noqa: ANN001
    times = {
        ("linear", "linear 8->4", 0, 8): {"dense": [1.0, 2.0, 4.0], "dstlib": [0.5, 2.0, 1.0],
                                          "sparseprop": [0.4, 0.4, 0.4]},
        ("book", "conv 3x3", 3, 64): {"dense": [2.0, 2.0, 2.0], "dstlib": [1.0, 1.2, 1.4],
                                      "sparseprop": [1.6, 1.6, 1.6]},
    }
    table = race.race_table(_records(times))
    assert list(table["layer"]) == ["linear 8->4", "conv 3x3"]  # the order the points ran in
    linear, conv = table.iloc[0], table.iloc[1]
    assert linear["dense_ms"] == pytest.approx(2000.0)
    assert linear["dstlib"] == pytest.approx(0.5)  # ratios 0.5, 1.0, 0.25: median 0.5 (not 1.0 / 2.0 of medians)
    assert linear["sparseprop"] == pytest.approx(0.2)
    assert conv["dstlib"] == pytest.approx(0.6) and conv["sparseprop"] == pytest.approx(0.8)
    first, second = race.goal_lines(table, with_sparseprop=True)
    assert "SparseProp" in first and ": not met (1 of 2 rows; worst linear 8->4 batch 8" in first
    assert "dstlib/SparseProp 2.50" in first
    assert ": met (worst conv 3x3: 0.600, speed-up 1.67x)" in second
    assert "\n" in race.format_table(table) and "conv 3x3" in race.format_table(table)


def test_without_sparseprop_the_table_says_so(race) -> None:  # noqa: ANN001
    times = {("book", "conv 3x3", 3, 64): {"dense": [1.0, 1.0], "dstlib": [0.8, 0.7]}}
    table = race.race_table(_records(times))
    assert math.isnan(table.iloc[0]["sparseprop"])
    assert race.format_table(table).splitlines()[1].endswith(" -")
    first, second = race.goal_lines(table, with_sparseprop=False)
    assert "not measured (SparseProp is not installed" in first
    assert ": not met (worst conv 3x3: 0.750" in second
