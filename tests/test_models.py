"""Contract tests for dstlib.models: registry, shapes, backward, parameter counts and per-paper mechanics."""

import math

import pytest
import torch
import torch.nn.functional as F

from dstlib import models
from dstlib.models.conv1d import SparseKernelConv1d
from dstlib.models.conv3d import DepthShift
from dstlib.models.large_kernel import DecomposedLargeKernel, SLaKNet

# name -> (kwargs, input shape, expected output shape); every registered name must appear here.
FORWARD_CASES = {
    "cnn_small": ({}, (2, 1, 16, 16), (2, 10)),
    "cnn_tiny": ({"num_classes": 4}, (2, 1, 16, 16), (2, 4)),
    "cnn_small_s2": ({"in_channels": 3}, (2, 3, 32, 32), (2, 10)),
    "resnet8": ({"num_classes": 7}, (2, 3, 16, 16), (2, 7)),
    "resnet20": ({}, (2, 3, 16, 16), (2, 10)),
    "resnet32": ({"width": 0.5}, (2, 3, 16, 16), (2, 10)),
    "resnet56": ({"width": 0.25}, (2, 3, 16, 16), (2, 10)),
    "resnet18": ({"in_channels": 1, "width": 0.25}, (2, 1, 16, 16), (2, 10)),
    "resnet34": ({"num_classes": 100, "width": 0.25}, (2, 3, 16, 16), (2, 100)),
    "vgg11": ({"width": 0.25}, (2, 3, 32, 32), (2, 10)),
    "vgg16": ({"width": 0.25}, (2, 3, 16, 16), (2, 10)),
    "wrn22_2": ({"num_classes": 100}, (2, 3, 16, 16), (2, 100)),
    "vgg19": ({"num_classes": 100, "width": 0.125}, (2, 3, 32, 32), (2, 100)),
    "cnn1d": ({"in_channels": 3, "num_classes": 4}, (2, 3, 60), (2, 4)),
    "scnn": ({"num_classes": 5}, (2, 1, 64), (2, 5)),
    "e2enet": ({"num_classes": 3}, (1, 1, 8, 16, 16), (1, 3, 8, 16, 16)),
    "slak_mini": ({}, (2, 3, 32, 32), (2, 10)),
    "convnext_mini": ({}, (2, 3, 32, 32), (2, 10)),
    "slak_tiny": ({"num_classes": 10}, (2, 3, 32, 32), (2, 10)),
    "convnext_tiny": ({"num_classes": 10}, (2, 3, 32, 32), (2, 10)),
    "asr_encoder": ({"num_classes": 12, "n_mels": 20}, (2, 20, 37), (2, 10, 12)),
}

# Parameters that only the deep-supervision outputs use (``E2ENet.forward_all_scales``).
DEEP_SUPERVISION_ONLY = {"e2enet": ("heads.1.weight", "heads.2.weight")}


def test_every_registered_model_has_a_forward_case() -> None:
    assert sorted(FORWARD_CASES) == models.names()


@pytest.mark.parametrize("name", sorted(FORWARD_CASES))
def test_forward_shape_and_backward(name: str) -> None:
    torch.manual_seed(0)
    kwargs, in_shape, out_shape = FORWARD_CASES[name]
    model = models.build(name, **kwargs)
    out = model(torch.randn(in_shape))
    assert out.shape == out_shape
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if n not in DEEP_SUPERVISION_ONLY.get(name, ())}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert sum(g.abs().sum().item() for g in grads.values()) > 0


def test_registry_rejects_unknown_names_and_kwargs() -> None:
    with pytest.raises(ValueError, match="resnet20"):
        models.build("resnet21")
    with pytest.raises(ValueError, match="width"):
        models.build("resnet20", widht=2)
    with pytest.raises(ValueError, match="depth"):  # fixed by the name
        models.build("resnet20", depth=32)
    assert "depth" not in models.allowed_kwargs("vgg16")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet20", {"width": 0}),
        ("resnet18", {"num_classes": 0}),
        ("cnn_small", {"stem_stride": 3}),
        ("slak_mini", {"kernel_size": 14}),
        ("slak_mini", {"kernel_size": (15, 13)}),
        ("slak_mini", {"small_kernel": 17}),
        ("e2enet", {"shift_groups": 4}),
        ("e2enet", {"conv_mode": "4d"}),
        ("scnn", {"out_groups": 0}),
        ("asr_encoder", {"num_heads": 5}),
        ("asr_encoder", {"layer_type": "lstm"}),
    ],
)
def test_bad_constructor_arguments_raise(name: str, kwargs: dict) -> None:
    key = next(iter(kwargs))
    with pytest.raises(ValueError, match=key):
        models.build(name, **kwargs)


# Known parameter counts at 10 classes (ResNets: He et al. 2016 / kuangliu CIFAR ResNet-18/34; VGG-16:
# "~15M" CIFAR VGG-16 with BN; ConvNeXt-T 28.6M at 1000 classes).
KNOWN_COUNTS = [
    ("resnet20", {}, 0.27e6, 0.03),
    ("resnet32", {}, 0.46e6, 0.03),
    ("resnet56", {}, 0.85e6, 0.03),
    ("resnet18", {"width": 1.0}, 11.2e6, 0.02),
    ("resnet34", {"width": 1.0}, 21.3e6, 0.02),
    ("vgg16", {"width": 1.0}, 15.0e6, 0.05),
    ("wrn22_2", {}, 1.1e6, 0.05),  # Zagoruyko & Komodakis 2016: WRN-22-2 ~1.1M parameters
    ("convnext_tiny", {"num_classes": 1000}, 28.6e6, 0.02),
]


@pytest.mark.parametrize(("name", "kwargs", "known", "tolerance"), KNOWN_COUNTS)
def test_parameter_counts_match_known_figures(
    name: str, kwargs: dict, known: float, tolerance: float
) -> None:
    count = sum(p.numel() for p in models.build(name, **kwargs).parameters())
    assert abs(count - known) <= tolerance * known, f"{name}: {count} parameters, expected ~{known:.3g}"


def test_cnn_small_accepts_32x32_with_and_without_stem_stride() -> None:
    x = torch.randn(3, 3, 32, 32)
    for stem_stride in (1, 2):
        assert models.build("cnn_small", in_channels=3, stem_stride=stem_stride)(x).shape == (3, 10)


@pytest.mark.parametrize("name", ["cnn_small", "resnet20", "vgg16", "slak_mini"])
def test_channels_last_gives_the_same_output(name: str) -> None:
    torch.manual_seed(0)
    in_channels = FORWARD_CASES[name][1][1]
    model = models.build(name).eval()
    x = torch.randn(2, in_channels, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    actual = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


# --- E2ENet ----------------------------------------------------------------------------------------------


def reference_depth_shift(x: torch.Tensor, group_sizes: list[int]) -> torch.Tensor:
    """Slice-by-slice reference: channel group g moves by g - G//2 slices along depth, zeros fill."""
    out = torch.zeros_like(x)
    groups = len(group_sizes)
    channel = 0
    for g, size in enumerate(group_sizes):
        shift = g - groups // 2
        for c in range(channel, channel + size):
            for d in range(x.shape[2]):
                if 0 <= d - shift < x.shape[2]:
                    out[:, c, d] = x[:, c, d - shift]
        channel += size
    return out


@pytest.mark.parametrize(
    ("channels", "groups", "group_sizes"),
    [(6, 3, [2, 2, 2]), (7, 3, [3, 2, 2]), (10, 5, [2] * 5), (3, 1, [3])],
)
def test_depth_shift_moves_channel_groups_with_zero_fill(
    channels: int, groups: int, group_sizes: list
) -> None:
    shape = (2, channels, 5, 2, 3)
    x = torch.arange(1, math.prod(shape) + 1, dtype=torch.float32).reshape(shape)
    out = DepthShift(groups)(x)
    torch.testing.assert_close(out, reference_depth_shift(x, group_sizes), rtol=0, atol=0)
    if groups == 3:  # the paper's setting, spelled out: first group looks one slice ahead, last one behind
        first, last = group_sizes[0], channels - group_sizes[-1]
        assert torch.equal(out[:, :first, :-1], x[:, :first, 1:]) and (out[:, :first, -1] == 0).all()
        assert torch.equal(out[:, last:, 1:], x[:, last:, :-1]) and (out[:, last:, 0] == 0).all()


def test_depth_shift_rejects_fewer_channels_than_groups() -> None:
    with pytest.raises(ValueError, match="groups"):
        DepthShift(3)(torch.zeros(1, 2, 4, 4, 4))


def test_e2enet_deep_supervision_shapes_fusion_names_and_input_check() -> None:
    model = models.build("e2enet", num_classes=3, levels=3)
    outputs = model.forward_all_scales(torch.randn(1, 1, 4, 8, 8))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 4, 8, 8), (1, 3, 2, 4, 4)]
    fusion = {n for n, p in model.named_parameters() if n.startswith("fusion.") and p.dim() == 5}
    nodes = {"x0_1", "x1_1", "x0_2"}  # i + j < 3
    expected = {f"fusion.nodes.{k}.conv.weight" for k in nodes} | {f"fusion.ups.{k}.weight" for k in nodes}
    assert fusion == expected
    assert model.fusion.nodes["x1_1"].conv.weight.shape == (16, 16 + 16 + 8, 1, 3, 3)  # forward + up + down
    with pytest.raises(ValueError, match="divisible"):
        model(torch.randn(1, 1, 6, 8, 8))


# --- DSN -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_zero", [False, True])
@pytest.mark.parametrize(("kernel", "length"), [(39, 100), (39, 10), (8, 21), (1, 5)])
def test_dsn_padding_keeps_length(pad_zero: bool, kernel: int, length: int) -> None:
    conv = SparseKernelConv1d(2, 6, kernel, out_groups=3 if kernel >= 3 else 1, pad_zero=pad_zero)
    assert conv(torch.randn(4, 2, length)).shape == (4, 6, length)


def test_dsn_default_padding_looks_right_only() -> None:
    torch.manual_seed(0)
    conv = SparseKernelConv1d(1, 3, 9, out_groups=3)
    x = torch.randn(1, 1, 30)
    bumped = x.clone()
    bumped[..., 15] += 1.0
    diff = (conv(bumped) - conv(x)).abs()[0].sum(0)
    assert (diff[16:] == 0).all() and (diff[7:16] > 0).all() and (diff[:7] == 0).all()
    assert conv.region_lengths() == [3, 6, 9]
    assert SparseKernelConv1d(1, 6, 39, out_groups=3).region_lengths() == [13, 26, 39]


def test_dsn_zero_padding_is_centred() -> None:
    conv = SparseKernelConv1d(1, 1, 5, pad_zero=True)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 8))[0, 0]
    assert out.tolist() == [3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 4.0, 3.0]


def test_scnn_sparse_convs_match_dsn_name_rule() -> None:
    model = models.build("scnn", in_channels=3, depth=2)
    dsn_rule = {n for n, p in model.named_parameters() if "conv" in n and p.dim() == 3 and p.shape[-1] >= 5}
    assert dsn_rule == {"blocks.0.sparse_conv.weight", "blocks.1.sparse_conv.weight"}
    assert model.blocks[0].sparse_conv.weight.shape == (48, 16, 39)


# --- SLaK ------------------------------------------------------------------------------------------------


def randomise_batchnorm(module: torch.nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(bn.bias, -1, 1)


@pytest.mark.parametrize(("decompose", "small_kernel"), [(True, 3), (False, 3), (False, None)])
def test_large_kernel_block_is_the_sum_of_its_branches(decompose: bool, small_kernel: int | None) -> None:
    torch.manual_seed(0)
    block = DecomposedLargeKernel(4, kernel_size=9, small_kernel=small_kernel, decompose=decompose).eval()
    randomise_batchnorm(block)
    x = torch.randn(2, 4, 11, 12)
    branches = block.branches()
    assert len(branches) == (3 if decompose else 1 + (small_kernel is not None))
    torch.testing.assert_close(block(x), sum(b(x) for b in branches))


def test_decomposed_kernels_are_centred_inside_the_large_square() -> None:
    """With identity BN, M x N + N x M + N x N equals one M x M depthwise conv of the centred kernels."""
    torch.manual_seed(0)
    m, n, channels = 9, 3, 4
    block = DecomposedLargeKernel(channels, m, n).eval()
    assert block.lora1.conv.weight.shape == (channels, 1, m, n)
    assert block.lora2.conv.weight.shape == (channels, 1, n, m)
    lo, hi = m // 2 - n // 2, m // 2 + n // 2 + 1
    square = torch.zeros(channels, 1, m, m)
    square[:, :, :, lo:hi] += block.lora1.conv.weight.detach()
    square[:, :, lo:hi, :] += block.lora2.conv.weight.detach()
    square[:, :, lo:hi, lo:hi] += block.small.conv.weight.detach()
    x = torch.randn(2, channels, 10, 13)
    expected = F.conv2d(x, square, padding=m // 2, groups=channels) / math.sqrt(1 + block.lora1.bn.eps)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_slak_large_kernel_names() -> None:
    model = models.build("slak_mini")
    large = [n for n, p in model.named_parameters() if ".large_kernel." in n and p.dim() == 4]
    assert len(large) == 3 * 4  # 4 blocks x (lora1, lora2, small)
    assert "stages.0.0.large_kernel.lora1.conv.weight" in large
    assert model.stages[0][0].large_kernel.lora1.conv.weight.shape == (32, 1, 15, 3)


# --- speech ----------------------------------------------------------------------------------------------


def test_ctc_greedy_decode_collapses_repeats_and_removes_blanks() -> None:
    paths = torch.tensor(
        [[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0], [4, 4, 4, 0, 4, 3, 3, 2, 2]]
    )
    logits = F.one_hot(paths, 5).float()
    assert models.ctc_greedy_decode(logits) == [[1, 1, 2, 3], [], [4, 4, 3, 2]]
    assert models.ctc_greedy_decode(logits, lengths=torch.tensor([4, 9, 6])) == [[1, 1], [], [4, 4, 3]]
    assert models.ctc_greedy_decode(logits, blank=4) == [[1, 0, 1, 2, 0, 3], [0], [0, 3, 2]]


def test_ctc_greedy_decode_reads_the_encoders_output_lengths_and_rejects_input_lengths() -> None:
    torch.manual_seed(0)
    model = models.build("asr_encoder", n_mels=8, d_model=16, num_heads=2).eval()
    lengths = torch.tensor([23, 40])
    logits = model(torch.randn(2, 8, 40), lengths)
    frames = model.output_lengths(lengths)
    assert logits.shape[1] == 10 and frames.tolist() == [6, 10]
    decoded = models.ctc_greedy_decode(logits, frames)
    assert decoded == [models.ctc_greedy_decode(logits[:1, :6])[0], models.ctc_greedy_decode(logits[1:])[0]]
    with pytest.raises(ValueError, match=r"lengths=\[23, 40\]: allowed .*output_lengths"):
        models.ctc_greedy_decode(logits, lengths)


@pytest.mark.parametrize("layer_type", ["conformer", "transformer"])
def test_asr_encoder_lengths_and_padding_invariance(layer_type: str) -> None:
    torch.manual_seed(0)
    model = models.build("asr_encoder", n_mels=8, d_model=16, num_heads=2, layer_type=layer_type).eval()
    for frames in (1, 4, 5, 37, 40):
        out = model(torch.randn(1, 8, frames))
        assert out.shape[1] == model.output_lengths(torch.tensor([frames])).item() == math.ceil(frames / 4)
    short, long = torch.randn(1, 8, 23), torch.randn(1, 8, 40)
    padded = torch.cat([F.pad(short, (0, 17), value=5.0), long])
    out = model(padded, lengths=torch.tensor([23, 40]))
    valid = model.output_lengths(torch.tensor(23)).item()
    torch.testing.assert_close(out[0, :valid], model(short)[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1], model(long)[0], rtol=1e-4, atol=1e-5)


# --- SLaK: merged kernels and shapes (chapter 7) ------------------------------------------------------

SLAK_CASES = [(True, 3), (False, 3), (False, None), (True, 5)]


@pytest.mark.parametrize(("decompose", "small_kernel"), SLAK_CASES)
@pytest.mark.parametrize("size", [(7, 7), (8, 8), (9, 12), (16, 15), (4, 5)])
def test_output_shape_equals_input_shape_for_odd_and_even_sizes(decompose, small_kernel, size):
    block = DecomposedLargeKernel(3, kernel_size=9, small_kernel=small_kernel, decompose=decompose)
    x = torch.randn(2, 3, *size)
    assert block(x).shape == x.shape
    assert block.eval()(x).shape == x.shape


@pytest.mark.parametrize(("decompose", "small_kernel"), SLAK_CASES)
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
