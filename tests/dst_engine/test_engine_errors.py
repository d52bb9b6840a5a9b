"""Guarantee 6: bad input raises a clear ValueError at construction, before the model or optimizer changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dstlib.sparse as sp

from .engine_toys import conv1d_net, conv_net

BASE = {"density": 0.3, "total_steps": 100}
BAD = [  # (preset, keyword overrides, words the message must contain)
    ("RigL", {"density": 0.0}, ["density=0.0", "(0, 1]"]),
    ("RigL", {"density": 1.5}, ["density=1.5", "(0, 1]"]),
    ("SET", {"density": -0.1}, ["density=-0.1"]),
    ("SET", {"density": "0.1"}, ["density='0.1'"]),
    ("Static", {"density": True}, ["density=True"]),
    ("RigL", {"distribution": "gaussian"}, ["distribution='gaussian'", "erk"]),
    ("RigL", {"distribution": {"0.weight": 0.5}}, ["missing", "2.weight"]),
    ("RigL", {"grow": "magic"}, ["grow='magic'", "gradient"]),
    ("RigL", {"update_every": 0}, ["update_every=0"]),
    ("RigL", {"update_every": 10, "update_every_epochs": 1, "steps_per_epoch": 5}, ["update_every"]),
    ("RigL", {"drop_schedule": "step"}, ["drop_schedule='step'", "cosine"]),
    ("RigL", {"drop_fraction": 1.2}, ["drop_fraction=1.2"]),
    ("RigL", {"update_begin": 80, "update_end": 50}, ["update_end=50"]),
    ("RigL", {"total_steps": None}, ["total_steps=None"]),
    ("RigL", {"granularity": "block"}, ["granularity='block'", "kernel"]),
    ("RigL", {"granularity": "region"}, ["RegionGroups", "'7.weight'"]),
    ("RigL", {"include": ["^nothing$"]}, ["nothing to sparsify"]),
    ("RigL", {"include": "conv"}, ["include='conv'", "list"]),
    ("RigL", {"exclude": ["("]}, ["exclude", "regular expression"]),
    ("RigL", {"memory_bound": 0.1}, ["memory_bound=0.1", "mest"]),
    ("RigL", {"prune": "set"}, ["prune='set'", "RigL fixes"]),
    ("GraNet", {"init_density": 0.2}, ["init_density=0.2", ">= density"]),
    ("GMP", {"prune_begin": 50, "prune_end": 40}, ["prune_end=40"]),
    ("MEST", {"grad_coefficient": -1.0}, ["grad_coefficient=-1.0"]),
    ("Static", {"masks": {"0.weight": torch.ones(2, 2, dtype=torch.bool)}, "density": None}, ["shape"]),
    ("Static", {"masks": {"missing.weight": torch.ones(1)}, "density": None}, ["'missing.weight'"]),
    ("Static", {"masks": {"0.weight": torch.zeros(6, 3, 3, 3, dtype=torch.bool)}}, ["density=0.3", "match"]),
]


@pytest.mark.parametrize(("preset", "override", "words"), BAD, ids=[f"{p}-{list(o)}" for p, o, _ in BAD])
def test_bad_argument_raises_before_any_change(preset: str, override: dict, words: list[str]) -> None:
    model = conv_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as error:
        getattr(sp, preset)(model, optimizer, **{**BASE, **override})
    for word in words:
        assert word in str(error.value), f"{word!r} not in {error.value}"
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not optimizer._optimizer_step_post_hooks


def test_model_with_nothing_to_sparsify() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    with pytest.raises(ValueError, match="nothing to sparsify"):
        sp.RigL(model, torch.optim.SGD(model.parameters(), lr=0.1), **BASE)


def test_optimizer_without_the_model_parameters() -> None:
    model, other = conv_net(), conv_net()
    with pytest.raises(ValueError, match="allowed an optimizer holding every sparse parameter"):
        sp.SET(model, torch.optim.SGD(other.parameters(), lr=0.1), **BASE)


def test_unknown_method_and_second_engine() -> None:
    model = conv1d_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="method='sparse_momentum'"):
        sp.create("sparse_momentum", model, optimizer, **BASE)
    engine = sp.create("RigL", model, optimizer, **BASE)
    with pytest.raises(ValueError, match="another engine"):
        sp.SET(model, optimizer, **BASE)
    engine.remove()
    assert not any(name.endswith("_mask") for name in model.state_dict())
    sp.SET(model, optimizer, **BASE)  # allowed once the first engine is removed
