"""Guarantee 2: pruned weights are exactly zero after every optimizer step, no optimizer state survives at
pruned positions, and regrown weights start at ``grow_init`` with zeroed state, for any optimizer."""

from __future__ import annotations

import pytest
import torch

from .engine_toys import PRESETS, conv_net, train

OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.9, centered=True),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-2, initial_accumulator_value=0.1),
    "nadam": lambda p: torch.optim.NAdam(p, lr=1e-2),
}
PRESET_OPTIONS = {
    "SET": {},
    "RigL": {},
    "MEST": {"grow": "gradient", "memory_bound": 0.2},
    "GraNet": {"init_density": 0.6},
}


def state_tensors(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> list[torch.Tensor]:
    return [v for v in optimizer.state[param].values() if torch.is_tensor(v) and v.shape == param.shape]


def run(optimizer_name: str, preset: str, grow_init: float, steps: int = 16) -> int:
    """Train with checks after every step; returns the number of grown positions that were checked."""
    model = conv_net()
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    options = {
        "density": 0.3,
        "total_steps": 40,
        "update_every": 4,
        "drop_fraction": 0.5,
        "grow_init": grow_init,
    }
    engine = PRESETS[preset](model, optimizer, **options, **PRESET_OPTIONS[preset])
    params = dict(model.named_parameters())
    previous = engine.masks
    grown_checked = 0

    def after(step: int, updated: bool) -> None:
        nonlocal previous, grown_checked
        masks = engine.masks
        for name, mask in masks.items():
            param = params[name]
            assert torch.all(param[~mask] == 0), f"{name}: pruned weight revived at step {step}"
            states = state_tensors(optimizer, param)
            assert states, f"{optimizer_name} keeps no state shaped like {name}"
            for state in states:
                assert torch.all(state[~mask] == 0), f"{name}: optimizer state alive at a pruned position"
            if updated:
                grown = mask & ~previous[name]
                assert torch.all(param[grown] == grow_init)
                for state in states:
                    assert torch.all(state[grown] == 0), f"{name}: regrown weight kept old optimizer state"
                grown_checked += int(grown.sum())
        previous = masks

    updates = train(model, optimizer, engine, range(steps), after_step=after)
    assert updates, "no topology update happened"
    return grown_checked


@pytest.mark.parametrize("preset", list(PRESET_OPTIONS))
@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_masks_and_state_after_every_step(optimizer_name: str, preset: str) -> None:
    assert run(optimizer_name, preset, grow_init=0.25) > 0


def test_default_regrowth_starts_at_zero() -> None:
    assert run("adam", "RigL", grow_init=0.0) > 0


def test_state_that_predates_the_engine_is_masked() -> None:
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, optimizer, engine=type("Dense", (), {"step": lambda self: False})(), steps=range(2))
    engine = PRESETS["Static"](model, optimizer, density=0.2)
    for name, mask in engine.masks.items():
        param = dict(model.named_parameters())[name]
        assert torch.all(param[~mask] == 0)
        assert torch.all(optimizer.state[param]["momentum_buffer"][~mask] == 0)
