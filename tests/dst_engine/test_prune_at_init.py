"""Prune-at-init criteria: exact counts, by-hand scores, data independence, no side effects on the model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dstlib.sparse.prune_at_init import (
    grasp,
    lottery_ticket,
    magnitude_prune,
    snip,
    snip_ratios,
    synflow,
)

DENSITY = 0.3


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


def small_batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 5, (8,), generator=g)


WEIGHTS = ["0.weight", "3.weight", "8.weight"]
SEEDED = torch.Generator().manual_seed(0)
CRITERIA = {
    "snip": lambda m, b: snip(m, nn.CrossEntropyLoss(), b, DENSITY),
    "snip_ratios": lambda m, b: snip_ratios(m, nn.CrossEntropyLoss(), b, DENSITY, SEEDED),
    "grasp": lambda m, b: grasp(m, nn.CrossEntropyLoss(), b, DENSITY),
    "synflow": lambda m, b: synflow(m, b[0], DENSITY, iterations=10),
    "magnitude": lambda m, b: magnitude_prune(m, DENSITY),
}


def hook_count(model: nn.Module) -> int:
    module_hooks = sum(
        len(d)
        for m in model.modules()
        for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks)
    )
    tensor_hooks = sum(len(getattr(p, "_backward_hooks", None) or {}) for p in model.parameters())
    return module_hooks + tensor_hooks


@pytest.mark.parametrize("name", list(CRITERIA))
def test_exact_global_count_and_shapes(name):
    model = small_cnn()
    masks = CRITERIA[name](model, small_batch())
    assert list(masks) == WEIGHTS
    total = sum(model.get_parameter(n).numel() for n in WEIGHTS)
    assert sum(int(m.sum()) for m in masks.values()) == round(DENSITY * total)
    for n, m in masks.items():
        assert m.dtype == torch.bool and m.shape == model.get_parameter(n).shape


@pytest.mark.parametrize("name", list(CRITERIA))
def test_model_left_untouched(name):
    model = small_cnn()
    model.train()
    model[1].eval()  # a mixed mode must come back exactly
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    CRITERIA[name](model, small_batch())
    assert [m.training for m in model.modules()] == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # weights, signs and BatchNorm running statistics
    assert all(p.grad is None for p in model.parameters())
    assert hook_count(model) == 0


def test_snip_equals_hand_computation():
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    x, y = torch.randn(5, 4), torch.randn(5, 3)
    masks = snip(model, nn.MSELoss(), (x, y), 0.5)
    w = model.weight.detach()
    grad = 2.0 / y.numel() * (x @ w.T - y).T @ x  # d/dW of mean((x W^T - y)^2)
    scores = (w * grad).abs().reshape(-1)
    expected = torch.zeros(12, dtype=torch.bool)
    expected[scores.topk(6).indices] = True
    assert torch.equal(masks["weight"].reshape(-1), expected)


def test_snip_ratios_same_layer_counts_other_positions_reproducible():
    model, batch = small_cnn(), small_batch()
    fixed = snip(model, nn.CrossEntropyLoss(), batch, DENSITY)
    first = snip_ratios(model, nn.CrossEntropyLoss(), batch, DENSITY, torch.Generator().manual_seed(3))
    again = snip_ratios(model, nn.CrossEntropyLoss(), batch, DENSITY, torch.Generator().manual_seed(3))
    for n in WEIGHTS:
        assert int(first[n].sum()) == int(fixed[n].sum())
        assert torch.equal(first[n], again[n])
    assert any(not torch.equal(first[n], fixed[n]) for n in WEIGHTS)


def test_grasp_keeps_lowest_minus_w_times_hessian_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    names = ["0.weight", "2.weight"]
    shapes = [model.get_parameter(n).shape for n in names]
    theta = torch.cat([model.get_parameter(n).detach().reshape(-1) for n in names])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = flat.split([s.numel() for s in shapes])
        weights = {n: p.view(s) for n, p, s in zip(names, pieces, shapes, strict=True)}
        return F.cross_entropy(functional_call(model, weights, (x,)) / 2.0, y)

    g = torch.autograd.functional.jacobian(loss_of, theta)
    hessian = torch.autograd.functional.hessian(loss_of, theta)
    score = -theta * (hessian @ g)
    expected = torch.zeros_like(score, dtype=torch.bool)
    expected[score.topk(10, largest=False).indices] = True
    masks = grasp(model, nn.CrossEntropyLoss(), (x, y), 10 / 24, temperature=2.0)
    assert torch.equal(torch.cat([masks[n].reshape(-1) for n in names]), expected)


def test_synflow_one_iteration_equals_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    w1, w2 = model[0].weight.detach().abs(), model[2].weight.detach().abs()
    # R = 1^T |W2| |W1| 1, so dR/d|W1|_ij = sum_k |W2|_ki and dR/d|W2|_ki = sum_j |W1|_ij
    scores = torch.cat([(w1 * w2.sum(0)[:, None]).reshape(-1), (w2 * w1.sum(1)[None, :]).reshape(-1)])
    expected = torch.zeros_like(scores, dtype=torch.bool)
    expected[scores.topk(14).indices] = True
    masks = synflow(model, torch.randn(2, 4), 14 / 35, iterations=1)
    assert torch.equal(torch.cat([masks["0.weight"].reshape(-1), masks["2.weight"].reshape(-1)]), expected)


def test_synflow_is_data_independent():
    model = small_cnn()
    a = synflow(model, torch.randn(4, 3, 8, 8), 0.1, iterations=5)
    b = synflow(model, 100 * torch.rand(1, 3, 8, 8), 0.1, iterations=5)
    assert all(torch.equal(a[n], b[n]) for n in WEIGHTS)
    magnitude = magnitude_prune(model, 0.1)
    assert any(not torch.equal(a[n], magnitude[n]) for n in WEIGHTS)


def test_magnitude_layer_scope_keeps_largest_per_layer():
    model = small_cnn()
    masks = magnitude_prune(model, DENSITY, scope="layer")
    for n, m in masks.items():
        w = model.get_parameter(n).detach().abs()
        assert int(m.sum()) == round(DENSITY * w.numel())
        assert w[m].min() >= w[~m].max()


def test_lottery_ticket_rewinds_masked_init():
    model = small_cnn()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # stand-in for training
    ticket = lottery_ticket(model, init, DENSITY)
    omp = magnitude_prune(model, DENSITY)
    for n in WEIGHTS:
        assert torch.equal(ticket.masks[n], omp[n])
        assert torch.equal(ticket.state_dict[n], init[n] * omp[n])
    assert torch.equal(ticket.state_dict["1.running_var"], init["1.running_var"])
    with pytest.raises(ValueError, match="init_state_dict"):
        lottery_ticket(model, {}, DENSITY)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: magnitude_prune(m, 0.0), "density"),
        (lambda m: magnitude_prune(m, 1.5), "density"),
        (lambda m: magnitude_prune(m, 0.5, scope="row"), "scope"),
        (lambda m: magnitude_prune(m, 0.5, params={"x": nn.Parameter(torch.ones(2))}), "params"),
        (lambda m: synflow(m, torch.ones(1, 3, 8, 8), 0.5, iterations=0), "iterations"),
        (lambda m: grasp(m, nn.CrossEntropyLoss(), small_batch(), 0.5, temperature=0.0), "temperature"),
        (lambda m: snip(m, nn.CrossEntropyLoss(), torch.ones(3), 0.5), "batch"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(small_cnn())


def test_omp_with_erk_scope_keeps_the_erk_count_of_every_layer():
    import torch
    from torch import nn

    from dstlib import sparse

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.LazyLinear(10))

    trained = net()
    trained(torch.zeros(1, 3, 8, 8))
    masks = sparse.prune_at_init.magnitude_prune(trained, 0.1, scope="erk")
    reference = net()
    reference(torch.zeros(1, 3, 8, 8))
    engine = sparse.Static(reference, torch.optim.SGD(reference.parameters(), lr=0.1), density=0.1, distribution="erk")
    assert {n: int(m.sum()) for n, m in masks.items()} == {n: int(m.sum()) for n, m in engine.masks.items()}
    for name, mask in masks.items():  # within a layer, the largest magnitudes are kept
        weight = dict(trained.named_parameters())[name].detach().abs()
        assert weight[mask].min() >= weight[~mask].max()


def test_magnitude_global_scope_keeps_a_weight_in_every_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 3))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # a layer of small weights: the plain global top-k keeps none of them
    weights = {n: p for n, p in model.named_parameters() if n.endswith("weight")}
    total = sum(p.numel() for p in weights.values())
    masks = magnitude_prune(model, 0.1, params=weights)
    assert all(int(m.sum()) >= 1 for m in masks.values())  # no layer collapse
    assert sum(int(m.sum()) for m in masks.values()) == round(0.1 * total)  # the budget is unchanged
    middle = model[2].weight.detach().abs()
    assert bool(masks["2.weight"][middle.argmax() // 20, middle.argmax() % 20]) and int(masks["2.weight"].sum()) == 1
    others = torch.cat([model.get_parameter(n).detach().abs()[m] for n, m in masks.items() if n != "2.weight"])
    dropped = torch.cat([model.get_parameter(n).detach().abs()[~m] for n, m in masks.items() if n != "2.weight"])
    assert others.min() >= dropped.max()  # elsewhere still the largest magnitudes
    with pytest.raises(ValueError, match="density"):
        magnitude_prune(model, 2 / total, params=weights)  # 2 weights for 3 layers
