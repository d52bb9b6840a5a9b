"""Prune and grow rules as pure functions on tensors.

Every function takes a boolean ``mask`` (``True`` = active) of any shape, together with same-shaped score
sources (weights, gradients), and returns a new boolean mask of that shape; nothing is modified in place.
Counts are exact: selection is a ``torch.topk``, never a Bernoulli draw.

The exact rules (the book's from-scratch code reproduces them):

- prune by score: ``active = mask.flatten().nonzero().squeeze(1)``, then drop
  ``active[torch.topk(score.flatten()[active], n, largest=False).indices]``;
- grow by score: ``torch.topk(score.flatten().masked_fill(~eligible.flatten(), -inf), n)`` with
  ``eligible = ~mask`` (``& allowed`` with a region), keeping only picks whose score is not ``-inf``;
- random growth: scores ``torch.rand(mask.shape, generator=generator)`` drawn on the CPU generator (an
  engine's is :func:`mask_generator`), then moved to the mask's device; just-pruned positions are eligible;
- the number dropped from ``n_active`` weights at drop fraction ``f`` is :func:`drop_count`.

Ties are broken by ``torch.topk``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def drop_count(fraction: float, n_active: int) -> int:
    """``ceil(fraction * n_active)``, with the product rounded to 6 decimals first (so ``0.3 * 10`` -> 3,
    not 4 from float error), and never more than ``n_active``."""
    return min(n_active, math.ceil(round(fraction * n_active, 6)))


def _count(mask: Tensor) -> int:
    return int(mask.sum().item())


def _as_float(score: Tensor) -> Tensor:
    return score if score.dtype in (torch.float32, torch.float64) else score.float()


def drop_lowest(score: Tensor, mask: Tensor, n: int) -> Tensor:
    """Deactivate the ``n`` active positions with the smallest ``score``.

    Args:
        score: any shape, float. mask: bool, same shape. n: how many to drop (clipped to the active count).

    Returns:
        bool mask, same shape, with ``min(n, mask.sum())`` fewer active positions.
    """
    out = mask.clone(memory_format=torch.contiguous_format)
    active = out.view(-1).nonzero().squeeze(1)
    n = min(n, active.numel())
    if n > 0:
        candidates = _as_float(score).flatten()[active]
        out.view(-1)[active[torch.topk(candidates, n, largest=False, sorted=False).indices]] = False
    return out


FAST_SELECTION_NUMEL = 2**20
"""From this many scores on, :func:`grow_highest` selects through a sampled threshold (same result, faster)."""


def grow_highest(score: Tensor, mask: Tensor, n: int, allowed: Tensor | None = None) -> Tensor:
    """Activate the ``n`` inactive (and ``allowed``) positions with the largest ``score``.

    Args:
        score: any shape, float. mask: bool, same shape. n: how many to add (clipped to the candidates).
        allowed: optional bool, same shape; ``False`` positions are never activated (region constraints).

    Returns:
        bool mask, same shape, with ``min(n, #candidates)`` more active positions.
    """
    blocked = mask if allowed is None else mask | ~allowed
    out = mask.clone(memory_format=torch.contiguous_format)
    n = min(n, mask.numel())
    if n > 0:
        candidates = _as_float(score).flatten().masked_fill(blocked.flatten(), -math.inf)
        picks = _sampled_top(candidates, n)
        if picks is None:
            values, picks = torch.topk(candidates, n, sorted=False)
            picks = picks[values != -math.inf]
        out.view(-1)[picks] = True
    return out


def _sampled_top(candidates: Tensor, n: int) -> Tensor | None:
    """Positions of the ``n`` largest of ``candidates`` (1-D float), or ``None`` where ``torch.topk`` over all
    of them must decide.

    ``torch.topk`` with a large ``n`` over a large layer dominates an update (about 0.3 s for 16.8M scores and
    ``n`` = 250k on one CPU core). From :data:`FAST_SELECTION_NUMEL` scores on (and ``n`` at most an eighth of
    them), a threshold a little below the ``n``-th largest score is read off a systematic sample (every ``s``-th
    score) and only the scores above it go through ``torch.topk``. ``None`` whenever that could change the
    answer: fewer than ``n`` finite candidates above the threshold, or the ``n``-th score tied with one left out
    (``torch.topk`` breaks such ties its own way). So the set returned is always the one ``torch.topk`` picks.
    """
    numel = candidates.numel()
    if numel < FAST_SELECTION_NUMEL or n > numel // 8:
        return None
    sample = candidates[:: max(1, numel // 2**16)]
    rank = min(sample.numel(), int(1.5 * n / numel * sample.numel()) + 32)
    threshold = torch.topk(sample, rank).values[-1]
    picks = (candidates >= threshold).nonzero().squeeze(1)
    if threshold == -math.inf or picks.numel() < n:
        return None
    top = torch.topk(candidates[picks], n, sorted=False)
    kth = top.values.min()
    if kth == -math.inf or int((candidates == kth).sum()) != int((top.values == kth).sum()):
        return None
    return picks[top.indices]


def prefer(score: Tensor, preferred: Tensor) -> Tensor:
    """Lift ``preferred`` positions above all others while keeping the order inside each group:
    ``score + preferred * (max - min + 1)``. Used for ITOP's regrow-unfired-first (``preferred`` = never
    active). Shapes: ``score`` float, ``preferred`` bool, same shape; returns float, same shape."""
    span = (score.max() - score.min() + 1) if score.numel() else 0.0
    return score + preferred.to(score.dtype) * span


def magnitude_prune(weight: Tensor, mask: Tensor, n: int) -> Tensor:
    """RigL / GraNet prune: drop the ``n`` active positions with the smallest ``|weight|``.

    Shapes: ``weight`` float and ``mask`` bool of the same shape; returns a bool mask of that shape.
    """
    return drop_lowest(weight.abs(), mask, n)


def set_prune(weight: Tensor, mask: Tensor, fraction: float) -> Tensor:
    """SET's sign-aware prune (Mocanu et al. 2018): drop the fraction ``fraction`` of the non-negative active
    weights closest to zero and, separately, the fraction ``fraction`` of the negative active weights closest
    to zero (counts :func:`drop_count` of each side). Active weights that are exactly 0 count as non-negative.

    Shapes: ``weight`` float and ``mask`` bool of the same shape; returns a bool mask of that shape.
    """
    positive = mask & (weight >= 0)
    negative = mask & (weight < 0)
    kept_positive = drop_lowest(weight, positive, drop_count(fraction, _count(positive)))
    kept_negative = drop_lowest(-weight, negative, drop_count(fraction, _count(negative)))
    return kept_positive | kept_negative


def mest_score(weight: Tensor, grad: Tensor, coefficient: float) -> Tensor:
    """MEST's removal score ``|w| + coefficient * |g|`` (Yuan et al. 2021). Same shape as ``weight``."""
    return weight.abs() + coefficient * grad.abs()


def mest_prune(weight: Tensor, grad: Tensor, mask: Tensor, n: int, coefficient: float = 1.0) -> Tensor:
    """MEST prune: drop the ``n`` active positions with the smallest :func:`mest_score`.

    Shapes: ``weight``, ``grad`` float and ``mask`` bool, all the same shape; returns a bool mask.
    """
    return drop_lowest(mest_score(weight, grad, coefficient), mask, n)


GENERATOR_SALT = 0x5EED_D57


def mask_generator(seed: int) -> torch.Generator:
    """The CPU generator behind every random mask decision of an engine built with ``seed``: seeded with
    ``seed * 1_000_003 + GENERATOR_SALT``. Salted because a generator seeded with ``seed`` itself replays the
    stream that ``torch.manual_seed(seed)`` gave the model's initialisation (kaiming-uniform draws
    ``bound * (2u - 1)``), and "random" masks would then keep exactly the largest initial weights."""
    return torch.Generator().manual_seed(seed * 1_000_003 + GENERATOR_SALT)


def random_scores(shape: Sequence[int], generator: torch.Generator, device: torch.device | str) -> Tensor:
    """Uniform ``[0, 1)`` scores of ``shape`` drawn from the CPU ``generator`` and moved to ``device``, so the
    draw is identical on every device and every rank."""
    return torch.rand(tuple(shape), generator=generator).to(device)


def random_grow(mask: Tensor, n: int, generator: torch.Generator, allowed: Tensor | None = None) -> Tensor:
    """SET growth: activate ``n`` inactive (and ``allowed``) positions uniformly at random, exactly.

    Shapes: ``mask`` bool (``allowed`` bool, same shape); ``generator`` a CPU ``torch.Generator``.
    """
    return grow_highest(random_scores(mask.shape, generator, mask.device), mask, n, allowed)


def gradient_grow(grad: Tensor, mask: Tensor, n: int, allowed: Tensor | None = None) -> Tensor:
    """RigL growth: activate the ``n`` inactive (and ``allowed``) positions with the largest ``|grad|``.

    Shapes: ``grad`` float and ``mask`` bool of the same shape (``allowed`` too); returns a bool mask.
    """
    return grow_highest(grad.abs(), mask, n, allowed)


def global_drop_lowest(
    scores: Sequence[Tensor], masks: Sequence[Tensor], n: int, unit_sizes: Sequence[int] | None = None
) -> list[Tensor]:
    """Global prune across layers: drop the active positions with the smallest score over all tensors.

    Args:
        scores: one float tensor per layer (comparable across layers, e.g. ``|w|``).
        masks: one bool tensor per layer, shaped like its score.
        n: how many *weights* to drop in total.
        unit_sizes: weights switched by one position of each layer (kernel granularity); default all 1.

    Returns:
        new bool masks, one per layer. With unit size 1 everywhere exactly ``min(n, total active)`` positions
        are dropped (``torch.topk``); otherwise positions are dropped in ascending score order (stable sort)
        until at least ``n`` weights are gone, so the count overshoots by less than one unit.
    """
    device = masks[0].device
    flat_masks = torch.cat([m.flatten().to(device) for m in masks])
    flat_scores = torch.cat([_as_float(s).flatten().to(device) for s in scores])
    if unit_sizes is None or set(unit_sizes) == {1}:
        pruned = drop_lowest(flat_scores, flat_masks, n)
    else:
        sizes = torch.cat(
            [torch.full((m.numel(),), size, device=device) for m, size in zip(masks, unit_sizes, strict=True)]
        )
        order = torch.sort(flat_scores.masked_fill(~flat_masks, math.inf), stable=True).indices
        dropped = torch.cumsum(sizes[order] * flat_masks[order], 0)
        count = min(int(torch.searchsorted(dropped, n).item()) + 1, _count(flat_masks)) if n > 0 else 0
        pruned = flat_masks.clone()
        pruned[order[:count]] = False
    split = pruned.split([m.numel() for m in masks])
    return [p.view_as(m).to(m.device) for p, m in zip(split, masks, strict=True)]
