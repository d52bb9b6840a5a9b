"""FLOPs counting: hand-computed counts per layer type, densities from zeros or masks, RigL training cost."""

import pytest
import torch
from torch import nn

from dstlib.sparse import RigL
from dstlib.sparse.flops import FLOPS_PER_MULTIPLY_ADD, flops, training_flops_per_step


def conv_linear() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 10 * 10, 10))


def test_conv_plus_linear_by_hand():
    report = flops(conv_linear(), torch.randn(1, 3, 10, 10))
    conv = 8 * 10 * 10 * (3 * 3 * 3)  # outputs x multiply-adds per output
    linear = 10 * 800
    assert FLOPS_PER_MULTIPLY_ADD == 2
    assert report.layers["0"].dense == 2 * conv and report.layers["3"].dense == 2 * linear
    assert report.dense_forward == 2 * (conv + linear) == 59_200
    assert report.sparse_forward == pytest.approx(report.dense_forward)  # no zero weights
    assert report.training_step == pytest.approx(3 * report.dense_forward)


@pytest.mark.parametrize(
    "layer, shape, multiply_adds",
    [
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), (1, 8, 6, 6), 8 * 36 * 9),  # depthwise
        (nn.Conv2d(4, 6, 1, groups=2), (1, 4, 5, 5), 6 * 25 * 2),  # grouped
        (nn.Conv1d(4, 6, 5), (2, 4, 20), 2 * 6 * 16 * 4 * 5),
        (nn.Conv3d(2, 3, 3), (1, 2, 5, 5, 5), 3 * 27 * 2 * 27),
        (nn.ConvTranspose2d(4, 2, 3, stride=2), (1, 4, 5, 5), 4 * 25 * 2 * 9),  # inputs x C_out x kernel
        (nn.Linear(5, 7), (2, 3, 5), 2 * 3 * 7 * 5),
    ],
)
def test_layer_types_by_hand(layer, shape, multiply_adds):
    assert flops(layer, torch.randn(shape)).dense_forward == 2 * multiply_adds


def test_density_from_zero_weights_scales_only_that_layer():
    model = conv_linear()
    with torch.no_grad():
        flat = model[0].weight.view(-1)
        flat[torch.randperm(flat.numel())[: flat.numel() * 3 // 4]] = 0  # 54 of 216 weights left
    report = flops(model, torch.randn(1, 3, 10, 10))
    assert report.layers["0"].density == pytest.approx(0.25)
    assert report.sparse_forward == pytest.approx(43_200 * 0.25 + 16_000)
    assert report.training_step == pytest.approx(3 * report.sparse_forward)


def test_hooks_removed_mode_restored_shared_module_counted_per_call():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Dropout(0.5), shared).train()
    report = flops(model, torch.randn(1, 4))
    assert report.layers["0"].dense == 2 * 2 * 16
    assert model.training and all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_rigl_training_formula():
    assert training_flops_per_step(10.0, 100.0) == 30.0
    assert training_flops_per_step(10.0, 100.0, update_every=4) == pytest.approx((120 + 20 + 100) / 5)
    two_dense_steps = (3 * 10 * 3 + 2 * (2 * 10 + 100)) / 5
    assert training_flops_per_step(10.0, 100.0, 4, dense_gradient_steps=2) == pytest.approx(two_dense_steps)
    assert training_flops_per_step(100.0, 100.0, update_every=7) == pytest.approx(300.0)
    with pytest.raises(ValueError, match="update_every"):
        training_flops_per_step(10.0, 100.0, update_every=0)
    with pytest.raises(ValueError, match="dense_gradient_steps"):
        training_flops_per_step(10.0, 100.0, update_every=4, dense_gradient_steps=6)


def test_engine_masks_give_density_and_rigl_training_cost():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = RigL(model, optimizer, density=0.1, distribution="uniform", update_every=50, total_steps=1000)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # no zero weight left: the densities below can only come from the engine's masks
    report = flops(model, x, engine)
    for layer in report.layers.values():
        assert layer.density == pytest.approx(0.1, abs=0.005)
    assert report.sparse_forward == pytest.approx(0.1 * report.dense_forward, rel=0.05)
    f_s, f_d = report.sparse_forward, report.dense_forward
    assert report.training_step == pytest.approx((3 * f_s * 50 + 2 * f_s + f_d) / 51)
    assert flops(model, x).sparse_forward == pytest.approx(f_d)  # without the engine: from the weights
