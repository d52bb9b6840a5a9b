"""DSN's recipe in one call: only the large kernels, regions from the model's own groups, exact counts."""

import pytest
import torch

from dstlib import models, sparse


def _engine(out_groups=3, in_channels=1, density=0.2, total_steps=50, **options):
    torch.manual_seed(0)
    model = models.build("scnn", num_classes=3, in_channels=in_channels, nf=4, depth=2, kernel_size=39,
                         out_groups=out_groups)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, optimizer, sparse.DSN(model, optimizer, density=density, total_steps=total_steps, **options)


def _group_counts(mask, groups):
    return [int(chunk.sum()) for chunk in mask.tensor_split(groups, dim=0)]


def test_only_large_kernels_are_sparse_with_region_and_layer_densities():
    _, _, engine = _engine(in_channels=3)
    assert sorted(engine.masks) == ["blocks.0.sparse_conv.weight", "blocks.1.sparse_conv.weight"]
    assert engine.region_density == pytest.approx(0.2, abs=0.01)
    assert engine.density == pytest.approx(0.2 * 26 / 39, abs=0.01)
    assert (engine.prune, engine.grow) == ("magnitude", "random")
    assert (engine.drop_fraction.initial, engine.drop_fraction.minimum, engine.drop_fraction.end) == (0.5, 0.001, 40)
    assert repr(engine.granularity) == "RegionGroups(groups=3, fill='first_taps')"


@pytest.mark.parametrize("out_groups", [2, 3])
def test_updates_keep_every_weight_in_its_region_and_the_counts_of_every_group(out_groups):
    model, optimizer, engine = _engine(out_groups=out_groups, update_every=1)
    before = {name: _group_counts(mask, out_groups) for name, mask in engine.masks.items()}
    x, y = torch.randn(8, 1, 60), torch.randint(0, 3, (8,))
    changed = 0
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        changed += bool(engine.step())
    assert changed == 5
    for name, mask in engine.masks.items():
        assert _group_counts(mask, out_groups) == before[name]
        for group, chunk in enumerate(mask.tensor_split(out_groups, dim=0)):
            region = 39 // out_groups * (group + 1)
            assert not chunk[..., region:].any()  # nothing outside the group's leading taps
        weight = dict(model.named_parameters())[name]
        assert not weight[~mask].any()


def test_the_first_taps_fill_starts_from_a_dense_short_kernel():
    _, _, engine = _engine()
    first = engine.masks["blocks.0.sparse_conv.weight"]  # (12, 1, 39): 4 output channels per group
    for chunk in first.tensor_split(3, dim=0):
        taps = chunk.any(dim=(0, 1)).nonzero().flatten().tolist()
        assert taps == list(range(len(taps)))  # a prefix of the taps
