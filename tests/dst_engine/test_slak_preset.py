"""SLaK's recipe in one call: SNIP layer ratios with random positions, nearly dense layers kept dense, only
the large kernels on request, magnitude prune with random regrowth, counts read from the masks, masks
enforced under autocast (the released code stops applying them under AMP)."""

import pytest
import torch
import torch.nn.functional as F

from dstlib import sparse
from dstlib.models.large_kernel import SLaKNet


def _model(decompose=True):
    torch.manual_seed(0)
    return SLaKNet(num_classes=3, in_channels=1, depths=(1, 1), dims=(8, 16), kernel_size=(7, 5), small_kernel=3,
                   decompose=decompose)


def _batch(step=0, n=16):
    generator = torch.Generator().manual_seed(100 + step)
    return torch.randn(n, 1, 16, 16, generator=generator), torch.randint(0, 3, (n,), generator=generator)


def _engine(model=None, density=0.6, total_steps=50, **options):
    model = model if model is not None else _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    engine = sparse.SLaK(model, optimizer, density=density, batch=_batch(), total_steps=total_steps, seed=3,
                         **options)
    return model, optimizer, engine


def _train(model, optimizer, engine, steps, autocast=False):
    updates = 0
    for step in range(steps):
        x, y = _batch(step + 1)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        updates += bool(engine.step())
    return updates


def test_layer_counts_are_snips_at_random_positions_and_every_conv_and_linear_is_selected():
    model, _, engine = _engine()
    reference = sparse.snip_ratios(_model(), F.cross_entropy, _batch(), 0.6,
                                   generator=torch.Generator().manual_seed(3))
    assert set(reference) == set(sparse.sparse_parameters(model))
    assert set(engine.masks) | set(engine.dense_layers) == set(reference)
    for name, mask in engine.masks.items():
        assert torch.equal(mask, reference[name])  # same counts and same random positions for one seed
    for name in engine.dense_layers:
        assert reference[name].float().mean() >= 0.99
    assert engine.overall_density == pytest.approx(0.6, abs=0.02)
    assert (engine.prune, engine.grow) == ("magnitude", "random")
    assert (engine.drop_fraction.initial, engine.drop_fraction.minimum, engine.drop_fraction.end) == (0.5, 0.005, 50)
    assert engine.update_every == 2000


@pytest.mark.parametrize("threshold", [0.99, 0.7])
def test_layers_at_or_above_the_threshold_stay_dense_and_leave_the_engine(threshold):
    ratios = sparse.snip_ratios(_model(), F.cross_entropy, _batch(), 0.6, generator=torch.Generator().manual_seed(3))
    expected = [name for name, mask in ratios.items() if mask.float().mean() >= threshold]
    model, _, engine = _engine(dense_threshold=threshold)
    assert engine.dense_layers == expected and len(expected) >= 3  # stem, downsampling and head at least
    params = dict(model.named_parameters())
    for name in expected:
        assert name not in engine.masks
        assert not hasattr(model.get_submodule(name.rsplit(".", 1)[0]), "weight_mask")
        assert bool((params[name] != 0).all())
    kept = sum(int(m.sum()) for m in engine.masks.values()) + sum(params[name].numel() for name in expected)
    total = sum(p.numel() for p in sparse.sparse_parameters(model).values())
    assert engine.overall_density == pytest.approx(kept / total)


@pytest.mark.parametrize(("decompose", "branches"), [(True, {"lora1", "lora2"}), (False, {"full"})])
def test_only_large_kernels(decompose, branches):
    _, _, engine = _engine(_model(decompose), only_large_kernels=True)
    names = set(engine.masks) | set(engine.dense_layers)
    assert len(names) == 2 * len(branches)  # two blocks
    assert {name.split(".")[-3] for name in names} == branches


def test_updates_keep_every_layer_count_and_counts_come_from_the_masks():
    model, optimizer, engine = _engine(update_every=1, drop_fraction=0.5)
    before = {name: int(mask.sum()) for name, mask in engine.masks.items()}
    assert _train(model, optimizer, engine, 3) == 3
    params = dict(model.named_parameters())
    nonzero = 0
    for name, mask in engine.masks.items():
        assert int(mask.sum()) == before[name]
        assert not params[name][~mask].any()
        nonzero += int(params[name].count_nonzero())
    # regrown weights start at 0: counting non-zero weights right after an update undercounts
    assert nonzero < sum(before.values())
    assert engine.density == pytest.approx(sum(before.values()) / sum(m.numel() for m in engine.masks.values()))


def test_masks_stay_exact_under_bf16_autocast():
    model, optimizer, engine = _engine(update_every=2)
    before = {name: int(mask.sum()) for name, mask in engine.masks.items()}
    params = dict(model.named_parameters())
    assert _train(model, optimizer, engine, 6, autocast=True) == 3
    assert engine.steps == 6
    for name, mask in engine.masks.items():
        assert int(mask.sum()) == before[name]
        assert not params[name][~mask].any()
        assert not optimizer.state[params[name]]["exp_avg"][~mask].any()


def test_create_by_name_and_bad_arguments():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = sparse.create("SLaK", model, optimizer, density=0.6, batch=_batch(), total_steps=10)
    assert isinstance(engine, sparse.SLaK)
    engine.remove()
    for bad, message in (({"density": 1.5}, "density=1.5"),
                         ({"only_large_kernels": True, "include": ["head"]}, "include="),
                         ({"masks": {}}, "masks="),
                         ({"prune": "set"}, "prune=")):
        options = {"density": 0.6, "batch": _batch(), "total_steps": 10, **bad}
        with pytest.raises(ValueError, match=message):
            sparse.SLaK(model, optimizer, **options)
