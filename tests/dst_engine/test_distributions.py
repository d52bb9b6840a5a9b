"""Layer densities (uniform, ER, ERK with capping, power scale, custom) and the integer allocation rule."""

from __future__ import annotations

import math
import random

import pytest

from dstlib.sparse.distributions import allocate, layer_densities

SHAPES = {
    "stem": (16, 3, 3, 3),
    "block": (32, 16, 3, 3),
    "wide": (64, 32, 3, 3),
    "head": (10, 64),
}


def bisection_densities(shapes: dict, density: float, dims=None) -> dict[str, float]:
    """Independent ERK: find eps with sum(min(1, eps * raw) * numel) = density * total by bisection."""
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s[:dims]) / math.prod(s[:dims]) for n, s in shapes.items()}
    budget = density * sum(numel.values())
    low, high = 0.0, 1e9
    for _ in range(200):
        eps = (low + high) / 2
        low, high = (eps, high) if sum(min(1, eps * raw[n]) * numel[n] for n in shapes) < budget else (low, eps)
    return {n: min(1.0, low * raw[n]) for n in shapes}


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize(("distribution", "dims"), [("erk", None), ("er", 2)])
def test_er_and_erk_match_bisection_and_keep_the_budget(distribution: str, dims, density: float) -> None:
    got = layer_densities(SHAPES, density, distribution)
    expected = bisection_densities(SHAPES, density, dims)
    assert got == pytest.approx(expected, rel=1e-7)
    total = sum(math.prod(s) for s in SHAPES.values())
    assert sum(got[n] * math.prod(s) for n, s in SHAPES.items()) == pytest.approx(density * total, rel=1e-12)
    assert all(0 < d <= 1 for d in got.values())


def test_erk_caps_small_layers_at_dense() -> None:
    got = layer_densities(SHAPES, 0.5, "erk")
    assert got["stem"] == 1.0 and got["head"] == 1.0 and got["wide"] < 0.5


def test_power_scale_and_uniform_and_custom() -> None:
    assert layer_densities(SHAPES, 0.3, "erk", power_scale=0.0) == pytest.approx(dict.fromkeys(SHAPES, 0.3))
    assert layer_densities(SHAPES, 0.3, "uniform") == dict.fromkeys(SHAPES, 0.3)
    flatter = layer_densities(SHAPES, 0.1, "erk", power_scale=0.5)
    steeper = layer_densities(SHAPES, 0.1, "erk")
    assert flatter["wide"] > steeper["wide"]  # a smaller exponent spreads density more evenly
    custom = {"stem": 1.0, "block": 0.5, "wide": 0.1, "head": 0.7}
    assert layer_densities(SHAPES, None, custom) == custom
    with pytest.raises(ValueError, match="either a density or a custom"):
        layer_densities(SHAPES, 0.3, custom)


def test_er_ignores_the_kernel_size() -> None:
    got = layer_densities({"k3": (8, 4, 3, 3), "k5": (8, 4, 5, 5)}, 0.3, "er")
    assert got["k3"] == pytest.approx(got["k5"])
    assert layer_densities({"a": (8, 4, 3, 3)}, 1.0, "erk") == {"a": 1.0}


@pytest.mark.parametrize("seed", range(5))
def test_allocate_rounds_each_to_floor_or_ceil_with_an_exact_total(seed: int) -> None:
    rng = random.Random(seed)
    capacities = {i: rng.randint(1, 500) for i in range(12)}
    targets = {i: rng.random() * cap for i, cap in capacities.items()}
    counts = allocate(targets, capacities)
    assert sum(counts.values()) == round(sum(targets.values()))
    for i, n in counts.items():
        assert n in (math.floor(targets[i]), math.ceil(targets[i])) and 0 <= n <= capacities[i]
