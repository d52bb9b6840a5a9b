"""Guarantee 5: a step that GradScaler skipped never counts and never triggers a topology update; masks stay
enforced under autocast."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import dstlib.sparse as sp

from .engine_toys import batch, conv_net


def test_skipped_steps_never_update_and_masks_hold_under_autocast() -> None:
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = sp.RigL(model, optimizer, density=0.3, total_steps=40, update_every=2, drop_fraction=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    params = dict(model.named_parameters())
    poisoned_steps, real_steps, updated_at = {1, 4, 5}, 0, []
    for step in range(10):
        x, y = batch(model, step)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if step in poisoned_steps:
            params["2.weight"].grad[0, 0, 0, 0] = math.inf
        masks_before, steps_before = engine.masks, engine.steps
        scaler.step(optimizer)
        scaler.update()
        updated = engine.step()
        if step in poisoned_steps:
            assert not updated and engine.steps == steps_before
            assert all(torch.equal(masks_before[n], m) for n, m in engine.masks.items())
        else:
            real_steps += 1
            assert engine.steps == real_steps
            if updated:
                updated_at.append(real_steps)
        for name, mask in engine.masks.items():
            assert torch.all(params[name][~mask] == 0)
    assert updated_at == [2, 4, 6]  # every second *real* step (step 1 was skipped: the update moved to 2)


def test_step_without_optimizer_step_does_nothing() -> None:
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    engine = sp.SET(model, optimizer, density=0.3, total_steps=40, update_every=1)
    assert engine.step() is False and engine.steps == 0
    x, y = batch(model, 0)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert engine.step() is True
    assert engine.step() is False  # a second call for the same optimizer step
