"""FLOPs counting: hand-computed counts per layer type, densities from zeros or masks, training cost over a run
(RigL's dense gradients inside the update window only, GMP along its density schedule)."""

import pytest
import torch
from torch import nn

from dstlib.sparse import GMP, GraNet, RigL, SparseEngine
from dstlib.sparse.flops import FLOPS_PER_MULTIPLY_ADD, average_training_flops, flops, training_flops_per_step


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
    updating = (3 * f_s * 50 + 2 * f_s + f_d) / 51  # updates until update_end = 0.75 * total_steps
    assert report.training_step == pytest.approx(0.75 * updating + 0.25 * 3 * f_s)
    assert flops(model, x).sparse_forward == pytest.approx(f_d)  # without the engine: from the weights


def test_average_over_the_run_pays_dense_gradients_only_in_the_update_window():
    # f_S = 10, f_D = 100, dT = 4: 48 FLOPs per step while updating, 30 after; updates in steps 0..499 of 1000
    assert training_flops_per_step(10.0, 100.0, update_every=4) == pytest.approx(48.0)
    assert average_training_flops(10.0, 100.0, 1000, update_every=4, update_end=500) == pytest.approx(39.0)
    assert average_training_flops(10.0, 100.0, 1000, update_every=4, update_begin=250, update_end=500) == (
        pytest.approx(0.25 * 48 + 0.75 * 30))
    assert average_training_flops(10.0, 100.0, 1000, update_every=4) == pytest.approx(48.0)  # updates throughout
    assert average_training_flops(10.0, 100.0, 1000) == pytest.approx(30.0)  # no dense gradient
    assert average_training_flops([10.0, 20.0, 30.0, 40.0], 100.0, 4) == pytest.approx(3 * 25.0)
    with pytest.raises(ValueError, match="len"):
        average_training_flops([10.0, 20.0], 100.0, 4)


def test_rigl_with_update_end_at_half_the_run():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = RigL(model, optimizer, density=0.25, distribution="uniform", update_every=50, total_steps=1000,
                  update_end=500)
    report = flops(model, torch.randn(1, 3, 4, 4), engine)
    f_d = 2 * (48 * 32 + 32 * 10)
    f_s = 0.25 * f_d
    assert report.dense_forward == f_d and report.sparse_forward == pytest.approx(f_s)
    # steps 0..499: (3 f_S * 50 + 2 f_S + f_D) / 51; steps 500..999: 3 f_S
    assert report.training_step == pytest.approx(0.5 * (3 * f_s * 50 + 2 * f_s + f_d) / 51 + 0.5 * 3 * f_s)


def test_gmp_training_is_priced_along_its_cubic_schedule():
    torch.manual_seed(0)
    model = nn.Linear(10, 10, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    engine = GMP(model, optimizer, density=0.2, distribution="uniform", total_steps=100, update_every=10,
                 prune_end=50)
    # d(t) = 0.2 + 0.8 (1 - u / 50)^3 at the last update u = 10 * (t // 10): 1, 0.6096, 0.3728, 0.2512, 0.2064,
    # then 0.2 from step 50 on
    expected = [1.0, 0.6096, 0.3728, 0.2512, 0.2064] + [0.2] * 5
    assert [engine.scheduled_density(t) for t in range(0, 100, 10)] == pytest.approx(expected)
    assert engine.scheduled_density(19) == engine.scheduled_density(10)
    x = torch.randn(64, 10)
    for t in range(1, 101):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        engine.step()
        assert engine.density == pytest.approx(engine.scheduled_density(t), abs=0.01)  # 100 weights: rounding
    report = flops(model, torch.randn(1, 10), engine)
    assert report.dense_forward == 200 and report.sparse_forward == pytest.approx(0.2 * 200)
    # one layer pruned from dense: f_S(t) = d(t) f_D; mean d over the 100 steps = (10 * 2.44 + 50 * 0.2) / 100
    assert report.training_step == pytest.approx(3 * 200 * 0.344)
    assert report.training_step > 3 * report.sparse_forward  # the final masks alone would say 120


def test_granet_is_priced_between_its_initial_and_final_masks_with_dense_gradients_while_updating():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    engine = GraNet(model, optimizer, density=0.1, distribution="uniform", total_steps=100, update_every=10)
    assert engine.initial_densities == pytest.approx({"0.weight": 0.8, "2.weight": 0.8})
    assert engine.scheduled_density(0) == 0.8 and engine.scheduled_density(99) == pytest.approx(0.1)
    x = torch.randn(32, 10)
    for _ in range(100):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        engine.step()
    report = flops(model, torch.randn(1, 10), engine)
    f_d = report.dense_forward
    assert report.sparse_forward == pytest.approx(0.1 * f_d, abs=2)
    window = {"update_every": 10, "update_end": 75}  # dense gradients until update_end = 0.75 * total_steps
    low = average_training_flops(report.sparse_forward, f_d, 100, **window)
    high = average_training_flops(0.8 * f_d, f_d, 100, **window)
    assert low < report.training_step < high


def test_momentum_growth_with_more_gradient_steps_than_the_period_prices_every_step_dense():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 10))
    engine = SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.5, distribution="uniform",
                          grow="momentum", update_every=10, total_steps=100, update_end=100)  # grad_steps 20
    report = flops(model, torch.randn(1, 3, 4, 4), engine)
    assert report.training_step == pytest.approx(2 * report.sparse_forward + report.dense_forward)
