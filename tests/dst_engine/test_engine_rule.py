"""The documented element-wise rule, written from scratch in plain torch, reproduces the engine's masks
(init, one SET update, one RigL update): the book's from-scratch code relies on this."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dstlib.sparse as sp

SEED, DENSITY, FRACTION = 4, 0.3, 0.5


def scratch_init(shapes: list[torch.Size], generator: torch.Generator) -> list[torch.Tensor]:
    masks = []
    for shape in shapes:  # uniform density: every layer keeps round(DENSITY * numel) (exact here)
        scores = torch.rand(shape, generator=generator).flatten()
        mask = torch.zeros(math.prod(shape), dtype=torch.bool)
        mask[torch.topk(scores, round(DENSITY * math.prod(shape))).indices] = True
        masks.append(mask.view(shape))
    return masks


def scratch_drop(score: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    active = mask.flatten().nonzero().squeeze(1)
    out = mask.clone().flatten()
    out[active[torch.topk(score.flatten()[active], n, largest=False).indices]] = False
    return out.view_as(mask)


def scratch_grow(score: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    out = mask.clone().flatten()
    out[torch.topk(score.flatten().masked_fill(mask.flatten(), -math.inf), n).indices] = True
    return out.view_as(mask)


def scratch_update(rule: str, weight: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor, generator):
    if rule == "SET":  # per sign: ceil(f * count) of the non-negatives and of the negatives closest to zero
        positive, negative = mask & (weight >= 0), mask & (weight < 0)
        kept = scratch_drop(weight, positive, math.ceil(FRACTION * int(positive.sum())))
        kept |= scratch_drop(-weight, negative, math.ceil(FRACTION * int(negative.sum())))
        return scratch_grow(torch.rand(mask.shape, generator=generator), kept, int(mask.sum() - kept.sum()))
    n = math.ceil(FRACTION * int(mask.sum()))
    return scratch_grow(grad.abs(), scratch_drop(weight.abs(), mask, n), n)


@pytest.mark.parametrize("rule", ["SET", "RigL"])
def test_scratch_rule_matches_engine(rule: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 10), nn.Tanh(), nn.Linear(10, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = getattr(sp, rule)(
        model, optimizer, density=DENSITY, distribution="uniform", total_steps=10, update_every=1,
        drop_fraction=FRACTION, drop_schedule="constant", seed=SEED,
    )  # fmt: skip
    weights = [model[0].weight, model[2].weight]
    generator = torch.Generator().manual_seed(SEED * 1_000_003 + 0x5EED_D57)
    masks = scratch_init([w.shape for w in weights], generator)
    assert all(torch.equal(a, b) for a, b in zip(masks, engine.masks.values(), strict=True))

    x, y = torch.randn(8, 20), torch.randint(0, 5, (8,))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()  # the engine's hook zeroes the pruned weights: do the same by hand
    expected = [scratch_update(rule, w.detach() * m, w.grad, m, generator) for w, m in zip(weights, masks, strict=True)]
    assert engine.step()
    assert all(torch.equal(a, b) for a, b in zip(expected, engine.masks.values(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(expected, masks, strict=True))
