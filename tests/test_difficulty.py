"""Difficulty scores on cases computed by hand, and on a training set with flipped labels."""

import math

import pytest
import torch
from torch import nn

from dstlib.optimisation import Optimisation
from dstlib.selection import difficulty


def test_el2n_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    scores = difficulty.el2n(logits, torch.tensor([0, 0]))
    # softmax [0.5, 0.5] - [1, 0] -> norm sqrt(0.5); softmax [0.75, 0.25] - [1, 0] -> norm sqrt(0.125)
    assert scores.tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(0.125)])


def test_grand_by_hand():
    # A zero linear layer: the gradient is (p - y) x^T for the weight and (p - y) for the bias, with
    # p = [0.5, 0.5], so the norm is |p - y| * sqrt(|x|^2 + 1) = sqrt(0.5) * sqrt(26) for x = [3, 4].
    layer = nn.Linear(2, 2)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    scores = difficulty.grand(layer, torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([0, 1]))
    assert scores.tolist() == pytest.approx([math.sqrt(0.5) * math.sqrt(26.0), math.sqrt(0.5)])
    assert layer.training


def test_forgetting_events_by_hand():
    nan = float("nan")
    correct = torch.tensor([[1, 0, 0, 1],
                            [0, 1, 0, nan],
                            [1, 1, 0, 0],
                            [0, 1, 0, 1]], dtype=torch.float32)
    events = difficulty.forgetting_events(correct)
    # sample 0: 1,0,1,0 -> 2; sample 1: 0,1,1,1 -> 0; sample 2: never correct -> inf; sample 3: 1,-,0,1 -> 1
    assert events.tolist() == [2.0, 0.0, math.inf, 1.0]


def test_hardest_takes_the_top_fraction_deterministically():
    scores = torch.tensor([0.1, 0.5, 0.5, 0.2, 0.9])
    assert difficulty.hardest(scores, 0.4).tolist() == [4, 1]
    assert difficulty.hardest(scores, 0.01).tolist() == [4]
    assert difficulty.hardest(scores, 1.0).tolist() == [4, 1, 2, 3, 0]
    with pytest.raises(ValueError, match="fraction=0.0: allowed"):
        difficulty.hardest(scores, 0.0)


def test_flipped_labels_score_as_hard():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 4, 4, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    flipped = torch.arange(0, 200, 10)
    y[flipped] = 1 - y[flipped]
    scores = difficulty.scores_from_training(lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 2)), (x, y),
                                             seeds=[0, 1], epochs=5, batch_size=20,
                                             optim=Optimisation(lr=0.1), device="cpu")
    assert scores["el2n"].shape == (200,) and scores["forgetting"].shape == (200,)
    clean = torch.ones(200, dtype=torch.bool)
    clean[flipped] = False
    assert scores["el2n"][flipped].mean() > 2 * scores["el2n"][clean].mean()
    hard = set(difficulty.hardest(scores["el2n"], 0.1).tolist())
    assert len(hard & set(flipped.tolist())) >= 15  # most of the 20 flipped labels are in the hardest 10%
