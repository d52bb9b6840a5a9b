"""Effective receptive field: the gradient of the central output with respect to the input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dstlib import erf
from dstlib.models.large_kernel import SLaKNet


class OneConv(nn.Module):
    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel, padding=kernel // 2)
        nn.init.constant_(self.conv.weight, 1.0)
        nn.init.constant_(self.conv.bias, 1.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("kernel", [3, 7])
def test_erf_of_one_conv_is_its_kernel_window(kernel):
    model = OneConv(kernel).train()
    images = torch.rand(5, 2, 15, 15)
    field = erf.effective_receptive_field(model, images, batch_size=2)
    assert field.shape == (15, 15)
    expected = torch.zeros(15, 15)
    lo, hi = 7 - kernel // 2, 7 + kernel // 2 + 1
    expected[lo:hi, lo:hi] = 2 * 3  # two input channels, three output channels, unit weights
    torch.testing.assert_close(field, expected)
    assert model.training and model.conv.weight.grad is None
    assert erf.contribution_area(field, 0.99) == pytest.approx(kernel**2 / 225)


def test_contribution_area_grows_from_the_centre():
    delta = torch.zeros(9, 9)
    delta[4, 4] = 1.0
    assert erf.contribution_area(delta, 0.5) == pytest.approx(1 / 81)
    flat = torch.ones(9, 9)
    assert erf.contribution_area(flat, 1.0) == 1.0
    assert erf.contribution_area(flat, 0.1) == pytest.approx(9 / 81)  # the 3x3 square holds 9/81 > 0.1
    assert erf.contribution_area(torch.zeros(4, 4), 0.5) == 0.0
    with pytest.raises(ValueError, match="share=1.5"):
        erf.contribution_area(flat, 1.5)


def test_mean_distance_from_the_centre():
    field = torch.zeros(9, 9)
    field[4, 4] = 1.0
    assert erf.mean_distance(field) == 0.0
    field[4, 7] = 1.0  # 3 pixels right of the centre, same weight
    assert erf.mean_distance(field) == pytest.approx(1.5)
    field[1, 0] = 2.0  # (-3, -4): 5 pixels away, double weight
    assert erf.mean_distance(field) == pytest.approx((0 + 3 + 2 * 5) / 4)
    assert erf.mean_distance(torch.zeros(3, 3)) == 0.0


def test_slak_net_erf_widens_with_the_kernel_when_blocks_are_active():
    images = torch.rand(4, 1, 32, 32)
    areas = {}
    for kernel in (3, 15):
        torch.manual_seed(0)
        model = SLaKNet(num_classes=2, in_channels=1, depths=(1,), dims=(8,), kernel_size=kernel, small_kernel=None,
                        decompose=False, layer_scale_init=1.0)
        field = erf.effective_receptive_field(model, images)
        areas[kernel] = (erf.contribution_area(field, 0.9), erf.mean_distance(field))
    assert areas[15][0] > areas[3][0] and areas[15][1] > areas[3][1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="images"):
        erf.effective_receptive_field(OneConv(3), torch.rand(2, 15, 15))
    with pytest.raises(ValueError, match="features"):
        erf.effective_receptive_field(nn.Conv2d(1, 1, 3), torch.rand(1, 1, 5, 5))
