"""SLaK's decomposed large-kernel block: "same"-size output for odd and even inputs, and structural
re-parameterisation (the branches, BatchNorm folded in, are one M x M depthwise kernel)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dstlib.models.large_kernel import DecomposedLargeKernel, SLaKNet

CASES = [(True, 3), (False, 3), (False, None), (True, 5)]


def randomise_batchnorm(module: torch.nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(bn.bias, -1, 1)


@pytest.mark.parametrize(("decompose", "small_kernel"), CASES)
@pytest.mark.parametrize("size", [(7, 7), (8, 8), (9, 12), (16, 15), (4, 5)])
def test_output_shape_equals_input_shape_for_odd_and_even_sizes(decompose, small_kernel, size):
    block = DecomposedLargeKernel(3, kernel_size=9, small_kernel=small_kernel, decompose=decompose)
    x = torch.randn(2, 3, *size)
    assert block(x).shape == x.shape
    assert block.eval()(x).shape == x.shape


@pytest.mark.parametrize(("decompose", "small_kernel"), CASES)
@pytest.mark.parametrize("size", [(11, 11), (10, 13)])
def test_the_sum_of_the_branches_is_one_merged_kernel(decompose, small_kernel, size):
    torch.manual_seed(0)
    block = DecomposedLargeKernel(4, kernel_size=9, small_kernel=small_kernel, decompose=decompose)
    randomise_batchnorm(block)
    block.eval()
    weight, bias = block.merged_kernel()
    assert weight.shape == (4, 1, 9, 9) and bias.shape == (4,)
    x = torch.randn(2, 4, *size)
    merged = F.conv2d(x, weight, bias, padding=4, groups=4)
    torch.testing.assert_close(merged, block(x), rtol=1e-4, atol=1e-5)


def test_merged_kernel_of_a_decomposed_block_is_a_cross_plus_a_square():
    """Outside the central N-wide bands the merged M x M kernel is zero: the decomposition's shape."""
    block = DecomposedLargeKernel(2, kernel_size=9, small_kernel=3).eval()
    weight, _ = block.merged_kernel()
    band = torch.zeros(9, 9, dtype=torch.bool)
    band[3:6, :] = True
    band[:, 3:6] = True
    assert not weight[:, 0][:, ~band].any()
    assert weight[:, 0][:, band].ne(0).all()


def test_features_are_the_map_before_pooling():
    torch.manual_seed(0)
    model = SLaKNet(num_classes=3, in_channels=1, depths=(1, 1), dims=(8, 16), kernel_size=(7, 5)).eval()
    x = torch.randn(2, 1, 32, 32)
    features = model.features(x)
    assert features.shape == (2, 16, 8, 8)
    torch.testing.assert_close(model(x), model.head(model.norm(features.mean(dim=(2, 3)))))
