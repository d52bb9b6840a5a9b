"""Structured sparsity, the alternatives that dense kernels can use: whole neurons removed (a physically
smaller dense MLP) and NVIDIA's 2:4 semi-structured pattern (two non-zeros in every four weights of a row,
run by sparse tensor cores through ``torch.sparse.to_sparse_semi_structured``; CUDA only).

Neuron-level: :func:`shrink_neurons` keeps the most important hidden neurons of an ``nn.Sequential`` MLP
(``Linear`` layers with parameter-free element-wise modules between them) and returns a smaller dense
copy; :func:`neuron_fraction` gives the fraction of hidden neurons that leaves as many weights as an
unstructured model at a given density.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from dstlib import checks

_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Identity, nn.Dropout)


def _linear_indices(model: nn.Sequential) -> list[int]:
    checks.require(isinstance(model, nn.Sequential), "model", type(model), "an nn.Sequential MLP")
    linear = [i for i, module in enumerate(model) if isinstance(module, nn.Linear)]
    checks.require(len(linear) >= 2, "model", type(model), "an nn.Sequential with at least two nn.Linear layers")
    others = [type(m).__name__ for m in model if not isinstance(m, (nn.Linear, *_ELEMENTWISE))]
    checks.require(not others, "model", type(model),
                   f"nn.Linear layers and parameter-free element-wise modules only; it has {others}")
    return linear


def neuron_fraction(widths: Sequence[int], density: float) -> float:
    """Fraction ``k`` of hidden neurons such that an MLP of ``widths`` (input, hidden..., output) with every
    hidden width scaled by ``k`` has ``density`` times the weights of the full MLP (biases not counted).

    Example: ``neuron_fraction([1024, 4096, 4096, 10], 0.05)`` is about 0.16 (the 4096 x 4096 layer shrinks
    quadratically).
    """
    checks.require(len(widths) >= 3, "widths", widths, "input, at least one hidden and output width")
    checks.number("density", density, low=0, high=1, low_open=True)
    pairs = list(zip(widths[:-1], widths[1:], strict=True))
    last = len(pairs) - 1

    def weights(k: float) -> float:
        return sum(a * b * (k if i > 0 else 1) * (k if i < last else 1) for i, (a, b) in enumerate(pairs))

    low, high = 0.0, 1.0
    target = density * weights(1.0)
    for _ in range(60):  # bisection: weights(k) is increasing in k
        middle = (low + high) / 2
        low, high = (middle, high) if weights(middle) < target else (low, middle)
    return (low + high) / 2


def neuron_importance(model: nn.Sequential, masks: Mapping[str, Tensor] | None = None) -> list[Tensor]:
    """Importance of every hidden neuron: the L1 norm of its incoming row plus its outgoing column of
    weights (with ``masks`` ``{"<index>.weight": bool}`` applied when given). One ``(width,)`` tensor per
    hidden layer."""
    linear = _linear_indices(model)
    masks = masks or {}
    weights = []
    for i in linear:
        weight = model[i].weight.detach()
        mask = masks.get(f"{i}.weight")
        weights.append(weight.abs() if mask is None else weight.abs() * mask.to(weight.device))
    return [w_in.sum(1) + w_out.sum(0) for w_in, w_out in zip(weights[:-1], weights[1:], strict=True)]


def shrink_neurons(
    model: nn.Sequential, keep: float, importance: Sequence[Tensor] | None = None
) -> nn.Sequential:
    """A smaller dense copy of an MLP keeping ``round(keep * width)`` (at least 1) hidden neurons per layer,
    those with the largest ``importance`` (default :func:`neuron_importance`), in their original order.

    Args:
        model: ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free element-wise modules.
        keep: fraction of hidden neurons kept, in ``(0, 1]`` (see :func:`neuron_fraction`).
        importance: one ``(width,)`` score tensor per hidden layer.

    Returns:
        the shrunk ``nn.Sequential``: the function of the kept neurons is unchanged (their weights and
        biases are copied); input and output widths are the model's.
    """
    linear = _linear_indices(model)
    checks.number("keep", keep, low=0, high=1, low_open=True)
    scores = neuron_importance(model) if importance is None else list(importance)
    checks.require(len(scores) == len(linear) - 1, "importance", f"list of {len(scores)}",
                   f"one score tensor per hidden layer ({len(linear) - 1})")
    kept = []
    for score in scores:
        n = max(1, round(keep * score.numel()))
        kept.append(torch.topk(score, n).indices.sort().values)
    shrunk = copy.deepcopy(model)
    for position, i in enumerate(linear):
        old = model[i]
        rows = kept[position] if position < len(kept) else torch.arange(old.out_features)
        cols = kept[position - 1] if position > 0 else torch.arange(old.in_features)
        new = nn.Linear(len(cols), len(rows), bias=old.bias is not None, device=old.weight.device,
                        dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(old.weight[rows][:, cols])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
        shrunk[i] = new
    return shrunk


# ---------------------------------------------------------------------------------------------- 2:4
def semi_structured_mask(weight: Tensor) -> Tensor:
    """2:4 magnitude mask of a ``(out, in)`` weight (``in`` divisible by 4): in every group of four
    consecutive weights of a row the two largest ``|w|`` are kept. Returns bool, same shape."""
    checks.require(weight.ndim == 2 and weight.shape[1] % 4 == 0, "weight.shape", tuple(weight.shape),
                   "(out, in) with in divisible by 4")
    groups = weight.detach().abs().reshape(weight.shape[0], -1, 4)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, torch.topk(groups, 2, dim=2).indices, True)
    return mask.reshape(weight.shape)


def semi_structured_unavailable(device: torch.device | str | None = None) -> str | None:
    """Why 2:4 semi-structured sparsity cannot run on ``device`` (default: the current CUDA device), or
    ``None`` when it can (a CUDA GPU of compute capability 8.0 or newer)."""
    if not torch.cuda.is_available():
        return "2:4 semi-structured sparsity needs a CUDA GPU (sparse tensor cores); this machine has none"
    device = torch.device("cuda" if device is None else device)
    if device.type != "cuda":
        return f"2:4 semi-structured sparsity runs on CUDA tensors only, not on {device}"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"2:4 semi-structured sparsity needs compute capability >= 8.0; this GPU has {major}.{minor}"
    return None


def to_semi_structured(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """A copy of a CUDA ``model`` in ``dtype`` whose ``nn.Linear`` weights (both sides divisible by 64 /
    128 as the kernels require; others stay dense) are 2:4-pruned by magnitude and stored as
    ``torch.sparse.SparseSemiStructuredTensor`` (inference; the product runs on sparse tensor cores).

    Raises:
        RuntimeError: not on a CUDA GPU of compute capability >= 8.0 (:func:`semi_structured_unavailable`).
    """
    device = next(model.parameters()).device
    reason = semi_structured_unavailable(device)
    if reason is not None:
        raise RuntimeError(reason)
    from torch.sparse import to_sparse_semi_structured

    converted = copy.deepcopy(model).to(dtype)
    for module in converted.modules():
        if isinstance(module, nn.Linear) and module.out_features % 64 == 0 and module.in_features % 128 == 0:
            weight = module.weight.detach()
            pruned = weight * semi_structured_mask(weight)
            module.weight = nn.Parameter(to_sparse_semi_structured(pruned), requires_grad=False)
    return converted
