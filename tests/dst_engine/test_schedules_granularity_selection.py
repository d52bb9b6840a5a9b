"""Drop-fraction and cubic schedules, granularities, and which parameters are sparse."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dstlib.sparse import DropFraction, Kernel, RegionGroups, cubic_density, sparse_parameters

from .engine_toys import conv_net


def test_drop_fraction_shapes_and_window() -> None:
    cosine = DropFraction(0.4, "cosine", begin=100, end=300, minimum=0.1)
    assert cosine(100) == pytest.approx(0.4) and cosine(200) == pytest.approx(0.25)
    assert cosine(299) == pytest.approx(0.1, abs=1e-4) and cosine(300) == 0.0 and cosine(99) == 0.0
    linear = DropFraction(0.4, "linear", begin=0, end=100)
    assert linear(25) == pytest.approx(0.3)
    constant = DropFraction(0.3, "constant")
    assert constant(10**9) == 0.3 and constant.active(10**9)
    with pytest.raises(ValueError, match="update_end=None: allowed a step"):
        DropFraction(0.3, "cosine")


def test_cubic_density() -> None:
    values = [cubic_density(t, 0.8, 0.1, 10, 110) for t in range(0, 130, 5)]
    assert values[0] == 0.8 and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert cubic_density(60, 0.8, 0.1, 10, 110) == pytest.approx(0.1 + 0.7 * 0.5**3)


def test_kernel_units_switch_whole_kernels() -> None:
    kernel = Kernel()
    weight = torch.randn(4, 3, 3, 3)
    assert torch.allclose(kernel.to_units(weight.abs()), weight.abs().sum((2, 3)) / 9)
    unit = torch.rand(4, 3) < 0.5
    full = kernel.expand(unit, weight.shape)
    assert full.shape == weight.shape and torch.equal(kernel.unit_mask(full), unit)
    assert kernel.unit_size(weight.shape) == 9 and kernel.unit_size((5, 2)) == 1


def test_region_groups_follow_dsn() -> None:
    region = RegionGroups(groups=3)
    shape = (9, 2, 39)
    assert [region.region_taps(39, g) for g in range(3)] == [13, 26, 39]
    assert region.groups(shape) == [slice(0, 3), slice(3, 6), slice(6, 9)]
    allowed = region.allowed((3, 2, 39), 1, torch.device("cpu"))
    assert allowed[..., :26].all() and not allowed[..., 26:].any()
    assert region.capacity((3, 2, 39), 0) == 3 * 2 * 13
    assert region.groups((10, 2, 7)) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    with pytest.raises(ValueError, match="allowed only on weights"):
        region.check("fc.weight", (5, 8))


def test_region_first_taps_fill_is_dsn_remain_sort() -> None:
    region = RegionGroups(groups=3, fill="first_taps")
    scores = region.init_scores((2, 3, 9), 0, torch.Generator(), torch.device("cpu"))
    order = scores.flatten().argsort(descending=True)
    taps = order % 9
    assert taps[:6].eq(0).all() and taps[6:12].eq(1).all()  # all (out, in) pairs of tap 0, then tap 1


def test_default_selection_and_options() -> None:
    model = conv_net()
    assert list(sparse_parameters(model)) == ["0.weight", "2.weight", "7.weight"]  # no bias, no BatchNorm
    assert list(sparse_parameters(model, dense_first=True, dense_last=True)) == ["2.weight"]
    assert list(sparse_parameters(model, include=[nn.Linear])) == ["7.weight"]
    assert list(sparse_parameters(model, include=[r"^[02]\."])) == ["0.weight", "2.weight"]
    assert list(sparse_parameters(model, exclude=[nn.Conv2d])) == ["7.weight"]
    assert list(sparse_parameters(nn.DataParallel(model))) == ["0.weight", "2.weight", "7.weight"]
    assert all(math.prod(p.shape) > 1 for p in sparse_parameters(model).values())
