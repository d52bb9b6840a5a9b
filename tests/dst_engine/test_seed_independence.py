"""Random masks must not depend on the weights, even when model and engine use the same seed.

A CPU generator seeded with ``seed`` replays the stream that ``torch.manual_seed(seed)`` gave the model's
initialisation (kaiming-uniform draws ``w = bound * (2u - 1)``); taking the top-k of the same ``u`` as
random scores would keep exactly the largest initial weights. The engine salts its seed; this test fails
if it does not.
"""

import pytest
import torch
from torch import nn

from dstlib import sparse


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_static_random_mask_is_uncorrelated_with_init_weights(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    engine = sparse.Static(
        model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.5, distribution="uniform", seed=seed
    )
    engine_masks = engine.masks
    for name, mask in engine_masks.items():
        kept = weights[name][mask]
        # Half of the weights are positive; a mask that keeps "the largest u" keeps almost only positives.
        assert 0.35 < (kept > 0).float().mean().item() < 0.65, name
