"""Guarantee 1: exact counts after init and after every update, for every preset and granularity."""

from __future__ import annotations

import math

import pytest
import torch

import dstlib.sparse as sp

from .engine_toys import GRANULARITIES, PRESETS, setup, train

DENSITY, STEPS, EVERY = 0.3, 30, 3


def groups(mask: torch.Tensor, granularity: str) -> list[tuple[int, int]]:
    """``(active units, capacity)`` per group, computed from the mask alone; checks the structure too."""
    if granularity == "element":
        return [(int(mask.sum()), mask.numel())]
    if granularity == "kernel":
        flat = mask.flatten(2) if mask.ndim > 2 else mask.unsqueeze(-1)
        assert torch.equal(flat.any(-1), flat.all(-1)), "a kernel is partly active"
        return [(int(flat.any(-1).sum()), flat.shape[0] * flat.shape[1])]
    out = []
    for g, rows in enumerate(torch.arange(mask.shape[0]).tensor_split(3)):
        taps = mask.shape[-1] // 3 * (g + 1)
        block = mask[rows]
        assert not block[..., taps:].any(), "active weight outside the group's region"
        out.append((int(block.sum()), block[..., :taps].numel()))
    return out


def unit_size(shape: torch.Size, granularity: str) -> int:
    return math.prod(shape[2:]) if granularity == "kernel" else 1


def check_layerwise(engine: sp.SparseEngine, granularity: str, density: float) -> None:
    """Each group holds floor or ceil of ``d_l * capacity`` units and the total is ``round(sum)``."""
    masks = engine.masks
    densities = sp.layer_densities({n: tuple(m.shape) for n, m in masks.items()}, density, "erk")
    counted = {name: groups(mask, granularity) for name, mask in masks.items()}
    targets = [(densities[name] * cap, n) for name, gs in counted.items() for n, cap in gs]
    for target, n in targets:
        assert n in (math.floor(target), math.ceil(target))
    assert sum(n for _, n in targets) == round(sum(target for target, _ in targets))


def active_weights(engine: sp.SparseEngine, granularity: str) -> tuple[int, int, int]:
    """(active weights, capacity in weights, largest unit size) over all sparse layers."""
    active = capacity = biggest = 0
    for mask in engine.masks.values():
        size = unit_size(mask.shape, granularity)
        for n, cap in groups(mask, granularity):
            active, capacity = active + n * size, capacity + cap * size
        biggest = max(biggest, size)
    return active, capacity, biggest


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("preset", ["SET", "RigL", "MEST", "Static"])
def test_constant_density_presets_keep_exact_counts(preset: str, granularity: str) -> None:
    model, options = setup(granularity)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    engine = PRESETS[preset](
        model, optimizer, density=DENSITY, total_steps=STEPS, update_every=EVERY, drop_fraction=0.5, **options
    )
    check_layerwise(engine, granularity, DENSITY)
    initial = {name: groups(mask, granularity) for name, mask in engine.masks.items()}
    start = engine.masks

    def after(step: int, updated: bool) -> None:
        if updated:
            assert {name: groups(mask, granularity) for name, mask in engine.masks.items()} == initial

    updates = train(model, optimizer, engine, range(STEPS), after_step=after)
    if preset == "Static":
        assert updates == [] and all(torch.equal(start[n], m) for n, m in engine.masks.items())
    else:  # updates at t = 3, 6, ..., < update_end = 22, and the topology really moved
        assert updates == [t - 1 for t in range(EVERY, int(0.75 * STEPS), EVERY)]
        assert any(not torch.equal(start[n], m) for n, m in engine.masks.items())


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("preset", ["GraNet", "GMP"])
def test_gradual_presets_hit_the_cubic_schedule_exactly(preset: str, granularity: str) -> None:
    model, options = setup(granularity)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    options.update(density=DENSITY, total_steps=STEPS, update_every=EVERY)
    engine = PRESETS[preset](model, optimizer, **options)
    init_density, end = (0.8, STEPS // 2) if preset == "GraNet" else (1.0, int(0.75 * STEPS))
    check_layerwise(engine, granularity, init_density)
    seen = []

    def after(step: int, updated: bool) -> None:
        t = step + 1
        active, capacity, biggest = active_weights(engine, granularity)
        target = round(sp.cubic_density(t, init_density, DENSITY, 0, end) * capacity)
        slack = biggest if granularity == "kernel" else 1  # kernels overshoot by less than one kernel
        if updated:
            seen.append(t)
            assert 0 <= target - active < slack
        else:
            assert active > target - slack  # between updates nothing is pruned

    train(model, optimizer, engine, range(STEPS), after_step=after)
    active, capacity, biggest = active_weights(engine, granularity)
    assert abs(active - round(DENSITY * capacity)) < biggest
    assert seen[0] == EVERY  # pruning starts at the first update
