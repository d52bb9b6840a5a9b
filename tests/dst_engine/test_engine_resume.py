"""Guarantee 3: save model, optimizer and engine at step k, load them in a fresh process, go on: weights and
masks are bit-identical to an uninterrupted run. Masks come from the checkpoint, never from zero weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from dstlib.atomic import torch_save

from .engine_toys import RESUME_CASES, RESUME_STEPS, resume_case, train

WORKER = Path(__file__).with_name("resume_worker.py")


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path: Path) -> None:
    uninterrupted, zero_but_active = {}, 0
    for name in RESUME_CASES:
        model, optimizer, engine, save_at = resume_case(name)
        train(model, optimizer, engine, range(save_at))
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "engine": engine.state_dict()}
        torch_save(tmp_path / f"{name}.pt", state)
        params = dict(model.named_parameters())
        zero_but_active += sum(int((m & (params[n] == 0)).sum()) for n, m in engine.masks.items())
        train(model, optimizer, engine, range(save_at, RESUME_STEPS))
        uninterrupted[name] = {"model": model.state_dict(), "masks": engine.masks}
    assert zero_but_active > 0, "no checkpoint holds active zero weights: the zeros test would be vacuous"

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(WORKER), str(tmp_path), str(torch.get_num_threads())], check=True, env=env)
    for name, expected in uninterrupted.items():
        resumed = torch.load(tmp_path / f"{name}.final.pt")
        assert expected["model"].keys() == resumed["model"].keys()
        for key, value in expected["model"].items():
            assert torch.equal(value, resumed["model"][key]), f"{name}: {key} differs after resume"
        for key, mask in expected["masks"].items():
            assert torch.equal(mask, resumed["masks"][key]), f"{name}: mask {key} differs after resume"


def test_masks_come_from_the_checkpoint_not_from_zeros() -> None:
    model, optimizer, engine, _ = resume_case("set-element")
    train(model, optimizer, engine, range(RESUME_CASES["set-element"][3]))  # ends right after an update
    saved = engine.state_dict()
    fresh_model, fresh_optimizer, fresh_engine, _ = resume_case("set-element")
    fresh_model.load_state_dict(model.state_dict())
    fresh_engine.load_state_dict(saved)
    for name, mask in fresh_engine.masks.items():
        assert torch.equal(mask, saved["masks"][name])
        assert torch.equal(fresh_model.get_buffer(f"{name}_mask").bool(), mask)
    params = dict(fresh_model.named_parameters())
    assert any(bool((m & (params[n] == 0)).any()) for n, m in fresh_engine.masks.items())
