"""SparseConv2d (dstlib.sparse.sparse_conv): the masked nn.Conv2d's function and gradients with only the active
weights stored, for the strides, paddings and groups of the book's CNNs; clear errors for what it lacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dstlib.sparse.truly_sparse as ts
from dstlib.sparse.sparse_conv import SparseConv2d, dense_preferred

from .truly_sparse_toys import cnn

LAYERS = {  # name: nn.Conv2d arguments (in, out, kernel, stride, padding, groups, bias) as in dstlib.models
    "3x3": (3, 8, 3, 1, 1, 1, False),  # cnn.py, resnet.py, vgg.py
    "3x3 stride 2": (4, 8, 3, 2, 1, 1, True),  # resnet.py down-sampling
    "1x1 stride 2": (4, 8, 1, 2, 0, 1, False),  # resnet.py shortcut
    "2x2 stride 2": (4, 6, 2, 2, 0, 1, True),  # large_kernel.py down-sampling (patchify stems alike)
    "depthwise 5x5": (6, 6, 5, 1, 2, 6, False),  # large_kernel.py (small kernel here)
    "grouped, odd sizes": (4, 6, (3, 5), (2, 1), (1, 2), 2, True),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_and_backward_equal_the_masked_conv(name: str) -> None:
    in_channels, out_channels, kernel, stride, padding, groups, bias = LAYERS[name]
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=bias)
    mask = torch.rand(conv.weight.shape) < 0.3
    with torch.no_grad():
        conv.weight.mul_(mask)
    sparse = SparseConv2d.from_conv(conv, mask)
    sparse.capture_dense_grad = True  # read by the forward pass, which then keeps the input for it
    x = torch.randn(3, in_channels, 9, 7, requires_grad=True)
    x_sparse = x.detach().clone().requires_grad_()
    out, out_sparse = conv(x), sparse(x_sparse)
    torch.testing.assert_close(out_sparse, out, rtol=1e-5, atol=1e-5)
    assert out_sparse.is_contiguous()
    upstream = torch.randn_like(out)
    out.backward(upstream)
    out_sparse.backward(upstream)
    torch.testing.assert_close(x_sparse.grad, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.values.grad, conv.weight.grad.flatten()[sparse.indices], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.dense_grad, conv.weight.grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(sparse.bias.grad, conv.bias.grad)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), out, rtol=1e-5, atol=1e-5)
    assert torch.equal(sparse.mask(), mask) and torch.equal(sparse.dense_weight(), conv.weight.detach())
    back = sparse.to_conv()
    assert torch.equal(back.weight, conv.weight) and back.stride == conv.stride and back.groups == conv.groups


def test_converters_round_trip_a_cnn() -> None:
    dense = cnn()
    masks = ts.initial_masks(dense, 0.3, distribution="uniform", include=[nn.Conv2d, nn.Linear], seed=0)
    assert list(masks) == ["0.weight", "2.weight", "4.weight", "8.weight"]
    sparse = ts.to_truly_sparse(dense, masks)
    assert [type(sparse[i]) for i in (0, 2, 4, 8)] == [SparseConv2d, SparseConv2d, SparseConv2d, ts.SparseLinear]
    back, back_masks = ts.to_masked(sparse)
    assert all(type(back[i]) is nn.Conv2d for i in (0, 2, 4))
    x = torch.randn(2, 1, 8, 8)
    for name, mask in masks.items():
        assert torch.equal(back_masks[name], mask)
        assert torch.equal(back.get_parameter(name), dense.get_parameter(name).detach() * mask)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), back(x), rtol=1e-5, atol=1e-6)


def test_dense_preferred_names_strided_pointwise_and_depthwise_convolutions() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 5, padding=2, groups=8),
                          nn.Conv2d(8, 16, 1, 2), nn.Conv2d(16, 16, 1), nn.Flatten(), nn.Linear(16, 2))
    keep = dense_preferred(model)
    assert keep == ["^1\\.weight$", "^2\\.weight$"]
    masks = ts.initial_masks(model, 0.5, include=[nn.Conv2d, nn.Linear], exclude=keep, seed=0)
    assert list(masks) == ["0.weight", "3.weight", "5.weight"]


@pytest.mark.parametrize(
    ("conv", "match", "model_match"),
    [
        (nn.Conv2d(2, 4, 3, dilation=2), "conv.dilation=\\(2, 2\\): allowed \\(1, 1\\)", "1.dilation"),
        (nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), "conv.padding_mode='reflect': allowed 'zeros'",
         "1.padding_mode"),
        (nn.Conv2d(2, 4, 3, padding="same"), "conv.padding='same': allowed integers", "1.padding"),
        (nn.ConvTranspose2d(2, 4, 3), "conv='ConvTranspose2d': allowed an nn.Conv2d",
         "masks=.* allowed names of nn.Linear or nn.Conv2d weights only"),
    ],
)
def test_unsupported_convolutions_are_refused_before_any_work(conv: nn.Module, match: str, model_match: str) -> None:
    model = nn.Sequential(nn.Conv2d(2, 2, 1), conv)
    masks = {"0.weight": torch.ones(2, 2, 1, 1, dtype=torch.bool),
             "1.weight": torch.ones_like(conv.weight, dtype=torch.bool)}
    with pytest.raises(ValueError, match=model_match):
        ts.to_truly_sparse(model, masks)
    with pytest.raises(ValueError, match=match):
        SparseConv2d.from_conv(conv, masks["1.weight"])
    if type(conv) is nn.Conv2d:
        with pytest.raises(ValueError, match=model_match):
            ts.initial_masks(model, 0.5, include=[nn.Conv2d])
    with pytest.raises(ValueError, match="groups=3"):
        SparseConv2d(4, 6, 3, torch.tensor([0]), groups=3)
