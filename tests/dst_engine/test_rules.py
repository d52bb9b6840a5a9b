"""Rules as objects (dstlib.sparse.rules), the shared Schedule, and the sampled fast path of grow_highest."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

import dstlib.sparse as sp
import dstlib.sparse.truly_sparse as ts
from dstlib.sparse import criteria, rules
from dstlib.sparse.schedules import Schedule

from .engine_toys import conv_net, train

BASE = {"density": 0.3, "total_steps": 24, "update_every": 3, "seed": 7}


def test_the_registries_hold_the_papers_rules() -> None:
    assert list(rules.PRUNE_RULES) == ["magnitude", "set", "mest"]
    assert list(rules.GROW_RULES) == ["random", "gradient", "momentum"]
    assert rules.GROW_RULES["momentum"].grad_steps == 20 and rules.PRUNE_RULES["mest"].needs_grad


@pytest.fixture
def new_rule() -> Iterator[type[rules.PruneRule]]:
    @dataclass
    class Smallest(rules.PruneRule):
        """Magnitude pruning again, as a user would write a new rule: one small class."""

        name: ClassVar[str] = "smallest_for_test"

        def score(self, weight: Tensor, grad: Tensor | None) -> Tensor:
            return weight

    yield Smallest
    del rules.PRUNE_RULES[Smallest.name]


def run(**options: object) -> dict[str, Tensor]:
    model = conv_net(seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    engine = sp.SparseEngine(model, optimizer, **{**BASE, **options})
    train(model, optimizer, engine, range(20))
    return model.state_dict()


def same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_new_rule_is_one_class_usable_by_name_and_as_an_object(new_rule: type[rules.PruneRule]) -> None:
    assert rules.PRUNE_RULES[new_rule.name] is new_rule  # registered when the class was created
    reference = run(prune="magnitude", grow="gradient")
    assert same(run(prune=new_rule.name, grow="gradient"), reference)
    assert same(run(prune=new_rule(), grow=rules.GradientGrow()), reference)


def test_rule_objects_carry_their_parameters() -> None:
    by_keyword = run(prune="mest", grow="random", memory_bound=0.2, grad_coefficient=0.5)
    assert same(run(prune=rules.MESTPrune(grad_coefficient=0.5, memory_bound=0.2), grow="random"), by_keyword)
    assert same(run(prune="magnitude", grow=rules.MomentumGrow(momentum=0.8)),
                run(prune="magnitude", grow="momentum", momentum=0.8))
    model = conv_net()
    with pytest.raises(ValueError, match="memory_bound=0.2: allowed None with a rule object"):
        sp.SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), prune=rules.MESTPrune(), grow="random",
                        memory_bound=0.2, **BASE)
    with pytest.raises(ValueError, match="momentum=0.5: allowed None with grow='gradient'"):
        sp.SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.1), momentum=0.5, **BASE)


def test_engines_share_one_schedule_object() -> None:
    schedule = Schedule.build(update_every=10, total_steps=1000)
    assert schedule.drop_fraction.end == 750 and schedule.fraction(750) == 0.0 and schedule.fraction(0) == 0.3
    assert (schedule.last_update(25), schedule.next_update(25), schedule.next_update(30)) == (20, 30, 30)
    assert Schedule.build(update_every_epochs=0.5, steps_per_epoch=7, regrow=False).update_every == 4
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5))
    engine = sp.RigL(model, torch.optim.SGD(model.parameters(), lr=0.1), density=0.3, distribution="uniform",
                     include=[nn.Linear], total_steps=100, update_every=5)
    sparse = ts.to_truly_sparse(model, engine.masks)
    truly = ts.TrulySparseEngine.from_engine(engine, sparse, torch.optim.SGD(sparse.parameters(), lr=0.1))
    assert truly.schedule is engine.schedule and truly.prune_rule is engine.prune_rule
    with pytest.raises(ValueError, match="total_steps=100: allowed None with a schedule"):
        ts.TrulySparseEngine(sparse, torch.optim.SGD(sparse.parameters(), lr=0.1), schedule=engine.schedule,
                             total_steps=100)


def exact_grow_highest(score: Tensor, mask: Tensor, n: int) -> Tensor:
    """``criteria.grow_highest`` without its sampled fast path: one ``torch.topk`` over every candidate."""
    candidates = score.flatten().masked_fill(mask.flatten(), -math.inf)
    values, picks = torch.topk(candidates, min(n, mask.numel()), sorted=False)
    out = mask.clone()
    out.view(-1)[picks[values != -math.inf]] = True
    return out


@pytest.mark.parametrize("scores", ["continuous", "ties", "sparse"])
def test_the_fast_path_picks_what_one_topk_picks(scores: str) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (1024, criteria.FAST_SELECTION_NUMEL // 1024 + 8)
    score = torch.rand(shape, generator=generator)
    if scores == "ties":
        score = (score * 50).floor()  # 50 values: the n-th is tied with positions left out
    elif scores == "sparse":
        score = score * (torch.rand(shape, generator=generator) < 0.01)  # fewer non-zeros than n
    mask = torch.rand(shape, generator=generator) < 0.05
    for n in (1, 1000, 30_000):
        got = criteria.grow_highest(score, mask, n)
        assert torch.equal(got, exact_grow_highest(score, mask, n)) and int(got.sum()) == int(mask.sum()) + n
    assert ts.grow_highest is criteria.grow_highest  # one implementation
