"""The truly sparse path (dstlib.sparse.truly_sparse): same function as the masked layer, same run as the
masked engine, exact counts, optimizer state only for active weights, bit-identical resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dstlib.sparse as sp
import dstlib.sparse.truly_sparse as ts
from dstlib.atomic import torch_save

from .truly_sparse_toys import (
    CASES,
    NETS,
    SAVE_AT,
    TOTAL_STEPS,
    UPDATE_EVERY,
    batch,
    mlp,
    optimizer_for,
    train,
    truly_sparse_case,
)

WORKER = Path(__file__).with_name("truly_sparse_worker.py")


@pytest.mark.parametrize(("shape", "bias"), [((9, 30), True), ((2, 5, 30), True), ((4, 30), False), ((1, 30), True)])
def test_forward_and_backward_equal_the_masked_layer(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(30, 20, bias=bias)
    mask = torch.rand(20, 30) < 0.3
    with torch.no_grad():
        linear.weight.mul_(mask)
    sparse = ts.SparseLinear.from_linear(linear, mask)
    x = torch.randn(shape, requires_grad=True)
    x_sparse = x.detach().clone().requires_grad_()
    out, out_sparse = linear(x), sparse(x_sparse)
    torch.testing.assert_close(out_sparse, out, rtol=1e-5, atol=1e-6)
    assert out_sparse.shape == (*shape[:-1], 20) and out_sparse.is_contiguous()
    upstream = torch.randn_like(out)
    out.backward(upstream)
    out_sparse.backward(upstream)
    torch.testing.assert_close(x_sparse.grad, x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse.values.grad, linear.weight.grad.flatten()[sparse.indices], rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(sparse.bias.grad, linear.bias.grad)
    assert torch.equal(sparse.mask(), mask) and torch.equal(sparse.dense_weight(), linear.weight.detach())


def test_converters_round_trip() -> None:
    dense = mlp()
    masks = ts.initial_masks(dense, 0.3, distribution="uniform", seed=0)
    assert list(masks) == ["0.weight", "2.weight", "4.weight"]
    sparse = ts.to_truly_sparse(dense, masks)
    assert type(dense[0]) is nn.Linear and all(isinstance(sparse[i], ts.SparseLinear) for i in (0, 2, 4))
    back, back_masks = ts.to_masked(sparse)
    x = torch.randn(3, 12)
    for name, mask in masks.items():
        assert torch.equal(back_masks[name], mask)
        assert torch.equal(back.get_parameter(name), dense.get_parameter(name).detach() * mask)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), back(x), rtol=1e-5, atol=1e-6)
    static = sp.SparseEngine(back, torch.optim.SGD(back.parameters(), lr=0.1), density=None, masks=back_masks,
                             prune=None, grow=None)
    assert static.masks.keys() == masks.keys()


def _masked_and_sparse(preset: type, kind: str, route: str, net: str) -> tuple:
    build, include = NETS[net][0], [nn.Linear, nn.Conv2d]
    dense = build()
    masked_optimizer = optimizer_for(dense, kind)
    options = {"update_every": UPDATE_EVERY, "total_steps": TOTAL_STEPS, "update_end": TOTAL_STEPS,
               "drop_fraction": 0.3}
    engine = preset(dense, masked_optimizer, density=0.3, distribution="uniform", include=include, seed=0,
                    **options)
    if route == "from_engine":
        model = ts.to_truly_sparse(dense, engine.masks)
        optimizer = optimizer_for(model, kind)
        sparse_engine = ts.TrulySparseEngine.from_engine(engine, model, optimizer)
    else:  # the same seed and arguments, without the masked engine
        fresh = build()
        model = ts.to_truly_sparse(fresh, ts.initial_masks(fresh, 0.3, distribution="uniform", include=include, seed=0))
        optimizer = optimizer_for(model, kind)
        sparse_engine = ts.TrulySparseEngine(model, optimizer, prune=engine.prune, grow=engine.grow, seed=0, **options)
    return (dense, masked_optimizer, engine), (model, optimizer, sparse_engine)


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("route", ["from_engine", "seed"])
@pytest.mark.parametrize(("preset", "kind"), [(sp.RigL, "sgd"), (sp.SET, "adam")])
def test_same_masks_and_weights_as_the_masked_engine(preset: type, kind: str, route: str, net: str) -> None:
    masked, truly = _masked_and_sparse(preset, kind, route, net)
    initial = masked[2].masks
    n_updates = 0
    for step in range(TOTAL_STEPS):
        updated = train(*masked, range(step, step + 1), net)
        assert train(*truly, range(step, step + 1), net) == updated, f"step {step + 1}"
        n_updates += updated[0]
        weights, sparse_weights, sparse_masks = masked[0].state_dict(), truly[2].dense_weights(), truly[2].masks
        for name, mask in masked[2].masks.items():
            assert torch.equal(sparse_masks[name], mask), f"step {step + 1}: mask {name}"
            torch.testing.assert_close(sparse_weights[name], weights[name], rtol=1e-4, atol=1e-5)
    assert n_updates == TOTAL_STEPS // UPDATE_EVERY - 1  # update_end excluded
    assert any(not torch.equal(initial[n], m) for n, m in masked[2].masks.items()), "topology never changed"


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("name", list(CASES))
def test_counts_exact_and_optimizer_state_only_for_active_values(name: str, net: str) -> None:
    model, optimizer, engine = truly_sparse_case(name, net=net)
    counts = {n: layer.nnz for n, layer in engine.layers.items()}
    dense_numel = sum(layer.weight_numel for layer in engine.layers.values())
    n_grown = 0
    for step in range(TOTAL_STEPS):
        before = {n: layer.indices.clone() for n, layer in engine.layers.items()}
        if train(model, optimizer, engine, range(step, step + 1), net)[0]:
            for n, layer in engine.layers.items():
                assert layer.nnz == counts[n] and int(layer.mask().sum()) == counts[n]
                assert bool((layer.indices[1:] > layer.indices[:-1]).all())
                grown = ~torch.isin(layer.indices, before[n])
                n_grown += int(grown.sum())
                assert bool((layer.values[grown] == 0).all())
                for tensor in optimizer.state[layer.values].values():
                    if tensor.shape == layer.values.shape:
                        assert bool((tensor[grown] == 0).all()), "regrown weights must start with zero state"
    assert n_grown > 0
    state_numel = 0
    for layer in engine.layers.values():
        for tensor in optimizer.state[layer.values].values():
            assert tensor.numel() <= 1 or tensor.shape == (layer.nnz,)
            state_numel += tensor.numel() if tensor.numel() > 1 else 0
    per_value = 1 if CASES[name][2] == "sgd" else 2
    assert state_numel == per_value * sum(counts.values()) < dense_numel
    assert engine.density == pytest.approx(sum(counts.values()) / dense_numel)
    assert engine.report()["nnz"].tolist() == list(counts.values())


def test_resume_in_a_fresh_process_is_bit_identical(tmp_path: Path) -> None:
    uninterrupted = {}
    for net in NETS:
        for name in CASES:
            model, optimizer, engine = truly_sparse_case(name, net=net)
            train(model, optimizer, engine, range(SAVE_AT), net)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "engine": engine.state_dict()}
            torch_save(tmp_path / f"{net}-{name}.pt", state)
            train(model, optimizer, engine, range(SAVE_AT, TOTAL_STEPS), net)
            uninterrupted[f"{net}-{name}"] = {"model": model.state_dict(), "masks": engine.masks}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(WORKER), str(tmp_path), str(torch.get_num_threads())], check=True, env=env)
    for name, expected in uninterrupted.items():
        resumed = torch.load(tmp_path / f"{name}.final.pt")
        for key, value in expected["model"].items():
            assert torch.equal(value, resumed["model"][key]), f"{name}: {key} differs after resume"
        for key, mask in expected["masks"].items():
            assert torch.equal(mask, resumed["masks"][key]), f"{name}: mask {key} differs after resume"


@pytest.mark.parametrize("net", list(NETS))
def test_dense_gradient_only_on_the_step_before_an_update(net: str) -> None:
    model, optimizer, engine = truly_sparse_case("rigl-sgd", net=net)
    captured = []
    for step in range(2 * UPDATE_EVERY):
        x, y = batch(step, net=net)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        captured.append(all(layer.dense_grad is not None for layer in engine.layers.values()))
        optimizer.step()
        engine.step()
    assert captured == [(step + 1) % UPDATE_EVERY == 0 for step in range(2 * UPDATE_EVERY)]
    assert all(layer.dense_grad is None for layer in engine.layers.values())


def test_bad_arguments_and_missing_gradient() -> None:
    dense = mlp()
    with pytest.raises(ValueError, match="model"):
        ts.TrulySparseEngine(dense, torch.optim.SGD(dense.parameters(), lr=0.1), total_steps=10)
    sparse = ts.to_truly_sparse(dense, ts.initial_masks(dense, 0.3, seed=0))
    optimizer = torch.optim.SGD(sparse.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="grow='momentum'"):
        ts.TrulySparseEngine(sparse, optimizer, grow="momentum", total_steps=10)
    with pytest.raises(ValueError, match="optimizer"):
        ts.TrulySparseEngine(sparse, torch.optim.SGD(sparse[0].parameters(), lr=0.1), total_steps=10)
    with pytest.raises(ValueError, match="masks"):
        ts.to_truly_sparse(dense, {"0.bias": torch.ones(32, dtype=torch.bool)})
    norm = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match="include"):
        ts.initial_masks(norm, 0.5, include=[nn.LayerNorm])
    other = mlp()
    mest = sp.MEST(other, torch.optim.SGD(other.parameters(), lr=0.1), density=0.3, total_steps=10)
    with pytest.raises(ValueError, match="engine.prune"):
        ts.TrulySparseEngine.from_engine(mest, sparse, optimizer)
    engine = ts.TrulySparseEngine(sparse, optimizer, update_every=1, total_steps=10)
    optimizer.step()  # no backward: no dense gradient for the update at step 1
    with pytest.raises(RuntimeError, match="dense gradient"):
        engine.step()


