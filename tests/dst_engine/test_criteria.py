"""Prune and grow rules (dstlib.sparse.criteria) against brute-force reimplementations."""

from __future__ import annotations

import math

import pytest
import torch

from dstlib.sparse import criteria


def random_case(seed: int, shape=(6, 5, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.rand(shape, generator=generator) < 0.5


def test_drop_count_is_ceil_without_float_noise() -> None:
    assert criteria.drop_count(0.3, 10) == 3  # 0.3 * 10 = 3.0000000000000004 in floating point
    assert criteria.drop_count(0.31, 10) == 4
    assert criteria.drop_count(1.0, 7) == 7 and criteria.drop_count(0.0, 7) == 0


@pytest.mark.parametrize("seed", range(3))
def test_magnitude_prune_drops_the_smallest_active(seed: int) -> None:
    weight, mask = random_case(seed)
    n = 7
    out = criteria.magnitude_prune(weight, mask, n)
    dropped = mask & ~out
    assert int(dropped.sum()) == n and not (out & ~mask).any()
    assert weight[dropped].abs().max() <= weight[out].abs().min()
    assert torch.equal(criteria.magnitude_prune(weight, mask, 10**6), torch.zeros_like(mask))


@pytest.mark.parametrize("seed", range(3))
def test_set_prune_is_sign_aware(seed: int) -> None:
    weight, mask = random_case(seed)
    fraction = 0.3
    out = criteria.set_prune(weight, mask, fraction)
    positive = sorted(w for w in weight[mask].tolist() if w >= 0)
    negative = sorted((w for w in weight[mask].tolist() if w < 0), reverse=True)  # closest to zero first
    expected_dropped = set(positive[: math.ceil(fraction * len(positive))])
    expected_dropped |= set(negative[: math.ceil(fraction * len(negative))])
    assert set(weight[mask & ~out].tolist()) == expected_dropped
    assert not (out & ~mask).any()


def test_growth_only_activates_eligible_positions_exactly() -> None:
    weight, mask = random_case(0)
    allowed = torch.zeros_like(mask)
    allowed[..., :2] = True
    grad = torch.randn(weight.shape, generator=torch.Generator().manual_seed(9))
    grown = criteria.gradient_grow(grad, mask, 5, allowed)
    new = grown & ~mask
    assert int(new.sum()) == 5 and not (new & ~allowed).any() and torch.equal(grown & mask, mask)
    candidates = ~mask & allowed
    assert grad[new].abs().min() >= grad[candidates & ~new].abs().max()
    everything = criteria.gradient_grow(grad, mask, 10**6, allowed)
    assert torch.equal(everything, mask | allowed)  # clipped to the candidates


def test_random_growth_is_reproducible_and_exact() -> None:
    _, mask = random_case(1)
    first = criteria.random_grow(mask, 9, torch.Generator().manual_seed(3))
    again = criteria.random_grow(mask, 9, torch.Generator().manual_seed(3))
    other = criteria.random_grow(mask, 9, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert int((first & ~mask).sum()) == 9 and torch.equal(first & mask, mask)
    scores = torch.rand(mask.shape, generator=torch.Generator().manual_seed(3)).masked_fill(mask, -math.inf)
    assert set(torch.topk(scores.flatten(), 9).indices.tolist()) == set(
        (first & ~mask).flatten().nonzero()[:, 0].tolist()
    )


def test_mest_score_and_prefer() -> None:
    weight, mask = random_case(2)
    grad = torch.randn(weight.shape)
    assert torch.allclose(criteria.mest_score(weight, grad, 0.5), weight.abs() + 0.5 * grad.abs())
    out = criteria.mest_prune(weight, grad, mask, 4, coefficient=0.5)
    dropped = mask & ~out
    score = criteria.mest_score(weight, grad, 0.5)
    assert int(dropped.sum()) == 4 and score[dropped].max() <= score[out].min()
    preferred = torch.rand(weight.shape) < 0.3
    lifted = criteria.prefer(weight, preferred)
    assert lifted[preferred].min() > lifted[~preferred].max()
    assert torch.equal(lifted[preferred].argsort(), weight[preferred].argsort())


def test_global_drop_lowest_exact_and_by_unit_size() -> None:
    scores = [torch.rand(4, 3), torch.rand(5)]
    masks = [torch.rand(4, 3) < 0.7, torch.ones(5, dtype=torch.bool)]
    out = criteria.global_drop_lowest(scores, masks, 6)
    flat_scores = torch.cat([s.flatten() for s in scores])
    flat_masks, flat_out = torch.cat([m.flatten() for m in masks]), torch.cat([o.flatten() for o in out])
    dropped = flat_masks & ~flat_out
    assert int(dropped.sum()) == 6 and flat_scores[dropped].max() <= flat_scores[flat_out].min()
    sized = criteria.global_drop_lowest(scores, masks, 10, unit_sizes=[9, 1])
    weights_dropped = 9 * int((masks[0] & ~sized[0]).sum()) + int((masks[1] & ~sized[1]).sum())
    assert 10 <= weights_dropped < 10 + 9
