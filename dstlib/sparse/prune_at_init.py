"""Masks chosen once, before (re)training: SNIP, GraSP, SynFlow, SNIP ratios, one-shot magnitude (LTH, OMP).

Every function returns ``dict[name, bool Tensor]`` keyed by parameter name (as in
``model.named_parameters()``), each mask shaped like its parameter. Counts are exact (top-k, never a
threshold): the global criteria keep ``round(density * N)`` of the ``N`` selected weights, the
layer-wise ones ``round(density_l * n_l)`` in each layer. The masks plug into
``dstlib.sparse.Static(model, optimizer, density=..., masks=masks)``.

None of them changes the model. Scores come from ``torch.func.functional_call`` on detached copies of
the weights and of the buffers (so BatchNorm running statistics are untouched), every module's training
flag is restored, ``.grad`` is not touched and no hook is registered.

Which parameters are pruned: ``params`` (name -> parameter of ``model``), by default
``dstlib.sparse.selection.sparse_parameters(model)``: the weights of every convolution (1D/2D/3D,
transposed included) and linear layer; pass ``sparse_parameters(model, exclude=..., dense_first=True)``
for other choices. Biases and normalisation parameters stay dense.

``batch`` is ``(inputs, targets)``; ``loss_fn(outputs, targets)`` returns a scalar, e.g.
``nn.CrossEntropyLoss()``. ``inputs`` is a tensor or a tuple of tensors passed as ``model(*inputs)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dstlib import checks
from dstlib.sparse.distributions import allocate, check_density, layer_densities
from dstlib.sparse.selection import sparse_parameters, unwrap

LossFn = Callable[[Tensor, Tensor], Tensor]
Masks = dict[str, Tensor]


def snip(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple,
    density: float,
    params: dict[str, nn.Parameter] | None = None,
) -> Masks:
    """SNIP (Lee et al., 2019): keep the global top ``density`` fraction of ``|w * dL/dw|`` on one batch.

    ``|w * dL/dw|`` equals SNIP's connection sensitivity ``|dL/dc|`` at ``c = 1`` for a multiplicative
    mask ``c``. The batch is run in training mode (BatchNorm uses batch statistics, as on the first
    training step).
    """
    model, selected = _resolve_params(model, params)
    check_density("density", density)
    return _global_topk(_snip_scores(model, loss_fn, batch, selected), density)


def snip_ratios(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple,
    density: float,
    generator: torch.Generator | None = None,
    params: dict[str, nn.Parameter] | None = None,
) -> Masks:
    """SNIP's per-layer counts with uniformly random positions: what the SLaK, hard-sample and E2ENet code
    calls ``snip``.

    Each layer keeps exactly as many weights as :func:`snip` keeps in it, at positions drawn uniformly
    without replacement (``torch.randperm``) from ``generator`` (the global RNG when ``None``).
    """
    model, selected = _resolve_params(model, params)
    check_density("density", density)
    counts = {name: int(mask.sum()) for name, mask in snip(model, loss_fn, batch, density, selected).items()}
    return {name: _random_mask(p, counts[name], generator) for name, p in selected.items()}


def grasp(
    model: nn.Module,
    loss_fn: LossFn,
    batch: tuple,
    density: float,
    temperature: float = 200.0,
    params: dict[str, nn.Parameter] | None = None,
) -> Masks:
    """GraSP (Wang et al., 2020): score ``S = -w * (H g)``, keep the ``density`` fraction with the LOWEST S.

    Sign convention. With ``g = dL/dw`` and ``H`` the Hessian of the loss, removing weight ``q``
    (``delta = -w_q e_q``) changes the gradient norm by ``||g||^2(w + delta) - ||g||^2(w) ~ 2 delta^T H g
    = 2 S_q``. A large positive ``S_q`` means removing ``q`` would *raise* the gradient flow, a large
    negative one that it would cut it most. GraSP removes the highest scores and keeps the lowest (the
    official code removes the top ``1 - density`` fraction of ``-w * Hg``), and so do we.

    ``H g`` is a Hessian-gradient product by double backpropagation of ``g . stop_grad(g)``; the
    gradient is computed on ``outputs / temperature`` (200 in the official GraSP code, which softens the
    logits; pass 1.0 for the plain loss). Training mode, as in :func:`snip`.
    """
    model, selected = _resolve_params(model, params)
    check_density("density", density)
    checks.number("temperature", temperature, low=0, low_open=True)
    inputs, targets = _split_batch(batch)
    weights = _leaf_copies(selected)
    leaves = list(weights.values())
    with _training_mode(model, True):
        loss = loss_fn(_forward(model, weights, inputs) / temperature, targets)
    grads = torch.autograd.grad(loss, leaves, create_graph=True)
    grad_dot_grad = sum((g * g.detach()).sum() for g in grads)
    hessian_grad = torch.autograd.grad(grad_dot_grad, leaves)
    keep_low = {name: w.detach() * hg for (name, w), hg in zip(weights.items(), hessian_grad, strict=True)}
    return _global_topk(keep_low, density)  # top-k of w * Hg = top-k of -S = the lowest S


def synflow(
    model: nn.Module,
    example_input: Tensor,
    density: float,
    iterations: int = 100,
    params: dict[str, nn.Parameter] | None = None,
) -> Masks:
    """SynFlow (Tanaka et al., 2020): data-free iterative pruning by synaptic flow.

    ``R = 1^T f(1; |theta|)``: the network with every parameter and floating buffer replaced by its
    absolute value, evaluated on one all-ones input shaped like ``example_input[0:1]`` (only its shape
    and device are used, so the masks do not depend on any data). Score
    ``|theta * dR/dtheta|``; after iteration ``k`` of ``iterations`` the global top
    ``density ** (k / iterations)`` is kept (exponential schedule), pruned weights staying pruned. The
    model runs in eval mode (BatchNorm uses its running statistics, as in the official code), in float64
    so that the products of many weights stay in range much longer than in float32. Weights and signs are
    never modified: the absolute values are copies passed through ``functional_call``.

    ``example_input``: a tensor ``(N, ...)`` with a batch dimension first.
    """
    model, selected = _resolve_params(model, params)
    check_density("density", density)
    checks.integer("iterations", iterations, low=1)
    ok = isinstance(example_input, Tensor) and example_input.dim() >= 1
    checks.require(ok, "example_input", type(example_input), "a tensor with a batch dimension")
    absolute = {
        name: t.detach().abs().double()
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if t.is_floating_point()
    }
    ones = torch.ones((1, *example_input.shape[1:]), dtype=torch.float64, device=example_input.device)
    masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in selected.items()}
    with _training_mode(model, False):
        for k in range(1, iterations + 1):
            weights = {name: (absolute[name] * masks[name]).requires_grad_() for name in selected}
            flow = functional_call(model, {**absolute, **weights}, (ones,)).sum()
            grads = torch.autograd.grad(flow, list(weights.values()))
            scores = {
                name: torch.where(masks[name], (w.detach() * g).abs(), -1.0)
                for (name, w), g in zip(weights.items(), grads, strict=True)
            }
            masks = _global_topk(scores, density ** (k / iterations))
    return masks


def magnitude_prune(
    model: nn.Module,
    density: float,
    scope: Literal["global", "layer", "erk"] = "global",
    params: dict[str, nn.Parameter] | None = None,
) -> Masks:
    """One-shot magnitude pruning: keep the largest ``|w|``, over all selected weights or per layer.

    ``scope="global"`` keeps ``round(density * N)`` weights in total (the layers' densities follow from
    the trained magnitudes, as in LTH/OMP of the hard-sample paper) with a floor of one per layer: each
    layer keeps at least its largest ``|w|``, taken from the same total, so no layer is pruned to zero (a
    layer with no weight cuts every path and makes the output constant: layer collapse, Tanaka et al.,
    2020). Where the magnitudes leave every layer some weight (the usual case) the masks are the plain
    global top-k. A ``density`` whose total ``round(density * N)`` is below the number of layers raises
    a ``ValueError``. ``scope="layer"`` keeps
    ``round(density * n_l)`` in every layer; ``scope="erk"`` keeps ``d_l * n_l`` with ``d_l`` the ERK
    density of layer ``l``, rounded as the engine rounds its ERK masks (same counts, same global total):
    the hard-sample paper's OMP_ERK.
    """
    model, selected = _resolve_params(model, params)
    check_density("density", density)
    checks.one_of("scope", scope, ("global", "layer", "erk"))
    scores = {name: p.detach().abs() for name, p in selected.items()}
    if scope == "global":
        checks.require(round(density * sum(s.numel() for s in scores.values())) >= len(scores), "density",
                       density, f"large enough to keep one weight in each of the {len(scores)} layers")
        return _global_topk(scores, density, floor=True)
    if scope == "layer":
        return {name: _global_topk({name: s}, density)[name] for name, s in scores.items()}
    erk = layer_densities({name: tuple(s.shape) for name, s in scores.items()}, density, "erk")
    counts = allocate({name: erk[name] * s.numel() for name, s in scores.items()},
                      {name: s.numel() for name, s in scores.items()})
    return {name: _global_topk({name: s}, counts[name] / s.numel())[name] for name, s in scores.items()}


class LotteryTicket(NamedTuple):
    """``masks``: name -> bool mask; ``state_dict``: the initial state with pruned weights set to 0."""

    masks: Masks
    state_dict: dict[str, Tensor]


def lottery_ticket(
    trained_model: nn.Module,
    init_state_dict: dict[str, Tensor],
    density: float,
    scope: Literal["global", "layer"] = "global",
    params: dict[str, nn.Parameter] | None = None,
) -> LotteryTicket:
    """LTH one-shot (Frankle & Carbin, 2019): magnitude masks of the trained model, weights rewound to init.

    ``init_state_dict`` is ``model.state_dict()`` saved (cloned) before training. Retrain with
    ``model.load_state_dict(ticket.state_dict)`` and ``Static(model, optimizer, density=density,
    masks=ticket.masks)``. OMP is the same masks with the trained weights kept:
    ``magnitude_prune(trained_model, density)``.
    """
    masks = magnitude_prune(trained_model, density, scope, params)
    missing = sorted(set(masks) - set(init_state_dict))
    checks.require(not missing, "set(masks) - set(init_state_dict)", missing,
                   "[] (init_state_dict must hold every pruned parameter)")
    rewound = {key: value.detach().clone() for key, value in init_state_dict.items()}
    for name, mask in masks.items():
        rewound[name].mul_(mask.to(rewound[name].device))
    return LotteryTicket(masks, rewound)


def _snip_scores(
    model: nn.Module, loss_fn: LossFn, batch: tuple, selected: dict[str, nn.Parameter]
) -> dict[str, Tensor]:
    """``|w * dL/dw|`` per selected parameter, each shaped like it."""
    inputs, targets = _split_batch(batch)
    weights = _leaf_copies(selected)
    with _training_mode(model, True):
        loss = loss_fn(_forward(model, weights, inputs), targets)
    grads = torch.autograd.grad(loss, list(weights.values()))
    return {name: (w.detach() * g).abs() for (name, w), g in zip(weights.items(), grads, strict=True)}


def _global_topk(scores: dict[str, Tensor], density: float, floor: bool = False) -> Masks:
    """Masks holding the ``round(density * N)`` highest scores over all tensors (``N`` = total numel);
    with ``floor``, the highest score of each tensor first, the rest of the total from the others."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    total = round(density * flat.numel())
    if floor:
        starts = torch.tensor([0] + [s.numel() for s in scores.values()][:-1], device=flat.device).cumsum(0)
        keep[starts + torch.stack([s.reshape(-1).argmax() for s in scores.values()])] = True
        flat = flat.masked_fill(keep, float("-inf"))
        total -= len(scores)
    keep[torch.topk(flat, total, sorted=False).indices] = True
    pieces = keep.split([s.numel() for s in scores.values()])
    return {name: piece.view(s.shape) for (name, s), piece in zip(scores.items(), pieces, strict=True)}


def _random_mask(param: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """A bool mask shaped like ``param`` with ``count`` uniformly random ``True`` entries."""
    device = generator.device if generator is not None else torch.device("cpu")
    chosen = torch.randperm(param.numel(), generator=generator, device=device)[:count]
    mask = torch.zeros(param.numel(), dtype=torch.bool, device=param.device)
    mask[chosen.to(param.device)] = True
    return mask.view(param.shape)


def _forward(model: nn.Module, weights: dict[str, Tensor], inputs: Tensor | tuple) -> Tensor:
    """``model(*inputs)`` with ``weights`` substituted and buffers replaced by clones (left untouched)."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    return functional_call(model, {**buffers, **weights}, args)


def _leaf_copies(selected: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    return {name: p.detach().clone().requires_grad_() for name, p in selected.items()}


@contextmanager
def _training_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Set every module to ``training``, then restore each module's own flag."""
    flags = {module: module.training for module in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for module, flag in flags.items():
            module.training = flag


def _resolve_params(
    model: nn.Module, params: dict[str, nn.Parameter] | None
) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """The unwrapped model (DDP, ``torch.compile``) and ``params`` checked against it, by default
    :func:`dstlib.sparse.selection.sparse_parameters` (every conv and linear weight)."""
    model = unwrap(model)
    if params is None:
        return model, sparse_parameters(model)
    named = dict(model.named_parameters())
    for name, p in params.items():
        checks.require(named.get(name) is p, "params", sorted(params),
                       f"the model's own parameters by name; params[{name!r}] is not the model's {name!r}")
    checks.require(len(params) > 0, "params", params, "a non-empty {name: parameter} map (or None)")
    return model, dict(params)


def _split_batch(batch: tuple) -> tuple[Tensor | tuple, Tensor]:
    checks.require(isinstance(batch, tuple | list) and len(batch) == 2, "batch", type(batch),
                   "a pair (inputs, targets)")
    return batch[0], batch[1]
