"""Engine surface: masks as buffers, report and ITOP, memory, epochs, unfired-first, dtype moves, factory."""

from __future__ import annotations

import pytest
import torch

import dstlib.sparse as sp

from .engine_toys import batch, conv_net, train


def make(preset=sp.SET, model=None, **options):
    model = model or conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    options = {"density": 0.3, "total_steps": 40, "update_every": 2, "drop_fraction": 0.5, **options}
    return model, optimizer, preset(model, optimizer, **options)


def test_masks_are_buffers_beside_unchanged_weight_keys() -> None:
    plain_keys = list(conv_net().state_dict())
    model, _, engine = make()
    keys = list(model.state_dict())
    assert [k for k in keys if not k.endswith("_mask")] == plain_keys
    assert {k for k in keys if k.endswith("_mask")} == {f"{n}_mask" for n in engine.masks}
    for name, mask in engine.masks.items():
        buffer = model.get_buffer(f"{name}_mask")
        assert buffer.dtype == model.get_parameter(name).dtype and torch.equal(buffer.bool(), mask)
    assert model._ddp_params_and_buffers_to_ignore == sorted(f"{n}_mask" for n in engine.masks)


def test_report_itop_and_memory() -> None:
    model, optimizer, engine = make()
    start = engine.report()
    assert list(start.columns) == ["name", "shape", "numel", "nnz", "density", "itop"]
    assert start.attrs["itop_rate"] == pytest.approx(start.attrs["density"])
    train(model, optimizer, engine, range(8))
    report = engine.report()
    assert (report["nnz"] == start["nnz"]).all() and report.attrs["step"] == 8
    assert engine.itop_rate > engine.density and report.attrs["itop_rate"] == engine.itop_rate
    assert (report["itop"] >= report["density"]).all()
    numel = sum(m.numel() for m in engine.masks.values())
    assert engine.memory_bytes() == numel * 4 + numel * 1  # float32 masks + bool fired masks


def test_unfired_first_regrows_never_active_positions() -> None:
    model, optimizer, engine = make(unfired_first=True, update_every=1, drop_fraction=0.2, distribution="uniform")
    for step in range(3):
        fired_before, masks_before = engine.fired_masks, engine.masks
        train(model, optimizer, engine, range(step, step + 1))
        for name, mask in engine.masks.items():
            grown = mask & ~masks_before[name]
            assert grown.any() and not (grown & fired_before[name]).any()


def test_epochs_convenience_and_factory() -> None:
    _, _, engine = make(sp.RigL, update_every=None, update_every_epochs=2, steps_per_epoch=3)
    assert engine.update_every == 6
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = sp.create("GraNet", model, optimizer, density=0.2, total_steps=100)
    assert isinstance(engine, sp.GraNet) and engine.init_density == 0.8 and engine.prune_end == 50
    assert set(sp.METHODS) == {"set", "rigl", "mest", "granet", "gmp", "static", "dsn", "dsff", "slak"}


def test_static_with_fixed_masks_and_dtype_moves() -> None:
    model = conv_net()
    masks = {n: torch.rand(p.shape) < 0.25 for n, p in sp.sparse_parameters(model).items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = sp.Static(model, optimizer, masks=masks)
    assert all(torch.equal(engine.masks[n], m) for n, m in masks.items())
    model.double()  # buffers follow the module's dtype, and masking keeps working
    x, y = batch(model, 0)
    torch.nn.functional.cross_entropy(model(x.double()), y).backward()
    optimizer.step()
    for name, mask in masks.items():
        assert model.get_buffer(f"{name}_mask").dtype == torch.float64
        assert torch.all(model.get_parameter(name)[~mask] == 0)


def test_load_state_dict_rejects_another_model() -> None:
    _, _, engine = make()
    _, _, other = make(model=conv_net(), include=[torch.nn.Conv2d])
    with pytest.raises(ValueError, match="allowed this engine's sparse layers"):
        other.load_state_dict(engine.state_dict())


def test_gradient_rule_needs_the_gradient() -> None:
    model, optimizer, engine = make(sp.RigL, update_every=1)
    x, y = batch(model, 0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # too early: RigL cannot see the gradient any more
    with pytest.raises(RuntimeError, match="zero gradients before backward"):
        engine.step()
