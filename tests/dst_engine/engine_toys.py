"""Tiny models, deterministic batches and a training loop shared by the engine tests and their workers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import dstlib.sparse as sp

PRESETS = {cls.__name__: cls for cls in (sp.SET, sp.RigL, sp.MEST, sp.GraNet, sp.GMP, sp.Static)}
GRANULARITIES = ("element", "kernel", "region")


def conv_net(seed: int = 0) -> nn.Module:
    """Conv2d(3->6, 3x3) -> Conv2d(6->8, 3x3) -> Linear(8->5): 162 + 432 + 40 sparse weights."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


def conv1d_net(seed: int = 0) -> nn.Module:
    """Conv1d(2->6, k=9) -> Conv1d(6->6, k=7) -> Linear(6->5); region granularity uses the two convs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 6, 9, padding=4),
        nn.ReLU(),
        nn.Conv1d(6, 6, 7, padding=3),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )


def setup(granularity: str, seed: int = 0) -> tuple[nn.Module, dict]:
    """A model for ``granularity`` and the engine keywords it needs (region: only the Conv1d weights)."""
    if granularity == "region":
        return conv1d_net(seed), {"granularity": "region", "include": [nn.Conv1d]}
    return conv_net(seed), {"granularity": granularity}


def batch(model: nn.Module, step: int, seed: int = 0, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic batch for ``step`` shaped for ``model``'s first layer."""
    generator = torch.Generator().manual_seed(1000 * seed + step)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d))
    shape = (size, 2, 16) if isinstance(first, nn.Conv1d) else (size, 3, 8, 8)
    return torch.randn(shape, generator=generator), torch.randint(0, 5, (size,), generator=generator)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    engine: sp.SparseEngine,
    steps: range,
    seed: int = 0,
    after_step: Callable[[int, bool], None] | None = None,
) -> list[int]:
    """The standard loop, calling ``after_step(step, updated)`` after each ``engine.step()``.

    Returns the (0-based) steps at which the engine updated the topology."""
    updates = []
    for step in steps:
        x, y = batch(model, step, seed)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        updated = engine.step()
        if updated:
            updates.append(step)
        if after_step is not None:
            after_step(step, updated)
    return updates


# ---- resume cases: (preset, granularity, options, step at which the checkpoint is taken) ----
RESUME_EVERY, RESUME_STEPS = 4, 20
RESUME_CASES = {
    "set-element": ("SET", "element", {}, 8),
    "rigl-kernel-grad3": ("RigL", "kernel", {"grad_steps": 3}, 11),
    "rigl-momentum": ("RigL", "element", {"grow": "momentum", "grad_steps": 3}, 11),
    "mest-region": ("MEST", "region", {"memory_bound": 0.2}, 8),
    "granet-unfired": ("GraNet", "element", {"unfired_first": True, "init_density": 0.6}, 8),
    "gmp-kernel": ("GMP", "kernel", {}, 6),
    "static-masks": ("Static", "element", {}, 5),
}


def resume_case(name: str) -> tuple[nn.Module, torch.optim.Optimizer, sp.SparseEngine, int]:
    """Fresh model, Adam optimizer and engine of a resume case, and its checkpoint step."""
    preset, granularity, options, save_at = RESUME_CASES[name]
    model, extra = setup(granularity, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    if preset == "Static":
        generator = torch.Generator().manual_seed(5)
        masks = {n: torch.rand(p.shape, generator=generator) < 0.4 for n, p in sp.sparse_parameters(model).items()}
        return model, optimizer, sp.Static(model, optimizer, masks=masks), save_at
    options = {"density": 0.3, "total_steps": RESUME_STEPS, "update_every": RESUME_EVERY, **extra, **options}
    return model, optimizer, PRESETS[preset](model, optimizer, seed=11, **options), save_at
