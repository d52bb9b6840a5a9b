"""Overhead of the DST engine: dstlib RigL vs dense training, and vs rigl-torch / sparsimony when importable.

Setting (the engine issue): ResNet-20 on 32x32 inputs, 10 classes, SGD (lr 0.1, momentum 0.9), CPU,
RigL at density 0.1 with a topology update every 100 steps, ``--steps`` timed steps per library per
round, ``--rounds`` rounds. Each round builds a fresh model/optimizer/engine per library (same seed), takes
``--warmup`` untimed steps, then interleaves the libraries step by step (step i of each, in an order
rotating with i), so a change in the machine's load hits all of them alike; the timed steps hold the
updates at steps 100, 200, 300. Inputs are a pool of four random batches (data loading is not timed).

Printed per batch size:
- mean step time (updates included), and its ratio to the dense step of the same round: median over
  rounds [min, max];
- topology-update cost: the time of an update step minus the median time of that round's other steps;
- engine memory: bytes of the tensors reachable from the engine object (masks, score and gradient
  buffers, module buffers it registered) that the dense run does not hold: parameters, the model's own
  buffers and the optimizer state are excluded. Measured after the last timed step.
Then an Adam-moment check: Adam (lr 1e-3), batch 8, updates every 10 steps, 40 steps; count of
pruned positions (mask 0) whose ``exp_avg`` or ``exp_avg_sq`` is non-zero.

Peers are optional (``pip install --no-deps rigl-torch==0.5.2 sparsimony==0.1.0`` in a separate venv
that also sees dstlib); an absent one is skipped with a note. rigl-torch 0.5.2 imports ``torchvision`` at
module level only to test ``isinstance(m, torchvision.models.resnet.BasicBlock/Bottleneck)``; when
torchvision is not installed we put a stub module with two empty classes in ``sys.modules`` (both tests
are then False, and rigl-torch recurses into those blocks anyway), so torchvision is not needed.

    OMP_NUM_THREADS=2 python benchmarks/bench_engine.py            # issue setting: ~15 min idle, ~50 min shared
    python benchmarks/bench_engine.py --steps 100 --rounds 2 --batches 8   # quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import dstlib.sparse
from dstlib.models import build

DENSITY = 0.1
TOTAL_STEPS = 10_000  # schedule length: the drop fraction stays near its initial value during the benchmark
DROP_FRACTION = 0.3

Pairs = list[tuple[Tensor, Tensor]]  # (parameter, bool mask) for every sparse parameter


@dataclass
class Runner:
    """One library on one model: ``step(x, y)`` is a full training step, ``masks()`` its sparse params."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[Tensor, Tensor], None]
    masks: Callable[[], Pairs] = list
    engine: Any = None
    baseline: dict[int, torch.UntypedStorage] = field(default_factory=dict)  # held: no address reuse


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x), y)


def dense(model: nn.Module, optimizer: torch.optim.Optimizer, update_every: int) -> Runner:
    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        optimizer.step()

    return Runner(model, optimizer, step)


def dstlib_rigl(model: nn.Module, optimizer: torch.optim.Optimizer, update_every: int) -> Runner:
    engine = dstlib.sparse.RigL(
        model, optimizer, density=DENSITY, update_every=update_every, total_steps=TOTAL_STEPS, seed=0
    )

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        optimizer.step()
        engine.step()

    def masks() -> Pairs:
        return [(model.get_parameter(name), mask) for name, mask in engine.masks.items()]

    return Runner(model, optimizer, step, masks, engine)


def rigl_torch(model: nn.Module, optimizer: torch.optim.Optimizer, update_every: int) -> Runner:
    from rigl_torch.RigL import RigLScheduler

    pruner = RigLScheduler(
        model, optimizer, dense_allocation=DENSITY, T_end=TOTAL_STEPS, delta=update_every, alpha=DROP_FRACTION
    )

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        if pruner():  # rigl-torch skips the optimizer step on a topology step
            optimizer.step()

    def masks() -> Pairs:
        return [(w, m) for w, m in zip(pruner.W, pruner.backward_masks, strict=True) if m is not None]

    return Runner(model, optimizer, step, masks, pruner)


def sparsimony_rigl(model: nn.Module, optimizer: torch.optim.Optimizer, update_every: int) -> Runner:
    from sparsimony.distributions.base import ERKDistribution
    from sparsimony.dst.rigl import RigL
    from sparsimony.schedulers.base import CosineDecayScheduler

    sparsifier = RigL(
        scheduler=CosineDecayScheduler(DROP_FRACTION, TOTAL_STEPS, update_every),
        distribution=ERKDistribution(),
        optimizer=optimizer,
        sparsity=1 - DENSITY,
        init_method=None,  # keep the model's initialisation, as the other libraries do
    )
    weights = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d | nn.Linear)]
    sparsifier.prepare(model, [{"tensor_fqn": f"{name}.weight"} for name in weights])

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        optimizer.step()
        sparsifier.step()

    def masks() -> Pairs:
        pairs = []
        for config in sparsifier.groups:
            parametrization = config["module"].parametrizations.weight
            pairs.append((parametrization.original, parametrization[0].mask.bool()))
        return pairs

    return Runner(model, optimizer, step, masks, sparsifier)


def _stub_torchvision() -> None:
    """rigl-torch imports torchvision only for two isinstance tests: give it two empty classes."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    stub = types.ModuleType("torchvision")
    stub.models = types.ModuleType("torchvision.models")
    stub.models.resnet = types.ModuleType("torchvision.models.resnet")
    stub.models.resnet.BasicBlock = type("BasicBlock", (), {})
    stub.models.resnet.Bottleneck = type("Bottleneck", (), {})
    sys.modules.update(
        {
            "torchvision": stub,
            "torchvision.models": stub.models,
            "torchvision.models.resnet": stub.models.resnet,
        }
    )


def available_libraries() -> dict[str, Callable[..., Runner]]:
    libraries: dict[str, Callable[..., Runner]] = {"dense": dense, "dstlib": dstlib_rigl}
    if importlib.util.find_spec("rigl_torch") is not None:
        _stub_torchvision()
        libraries["rigl-torch"] = rigl_torch
    else:
        print("note: rigl-torch is not installed, skipped")
    if importlib.util.find_spec("sparsimony") is not None:
        logging.getLogger("sparsimony").setLevel(logging.ERROR)
        libraries["sparsimony"] = sparsimony_rigl
    else:
        print("note: sparsimony is not installed, skipped")
    return libraries


def make_runner(
    factory: Callable[..., Runner], optimizer_name: str, update_every: int, seed: int = 0
) -> Runner:
    torch.manual_seed(seed)
    model = build("resnet20", num_classes=10)
    if optimizer_name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    baseline = {ptr: t.untyped_storage() for ptr, t in _tensors([model, optimizer]).items()}
    runner = factory(model, optimizer, update_every)
    runner.baseline = baseline
    return runner


def batches(batch_size: int, pool: int = 4) -> Iterator[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(batch_size)
    data = [
        (torch.randn(batch_size, 3, 32, 32, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
        for _ in range(pool)
    ]
    while True:
        yield from data


def timed_round(runners: dict[str, Runner], batch_size: int, warmup: int, steps: int) -> dict[str, list[float]]:
    """Seconds of each library's steps, interleaved step by step (rotating order) after ``warmup``
    untimed steps each; element ``i`` of a list is step ``warmup + i + 1`` of that library's count."""
    names = list(runners)
    stream = batches(batch_size)
    for _ in range(warmup):
        x, y = next(stream)
        for runner in runners.values():
            runner.step(x, y)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(steps):
        x, y = next(stream)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            runners[name].step(x, y)
            times[name].append(time.perf_counter() - start)
    return times


def _tensors(roots: list[Any], limit: int = 200_000) -> dict[int, Tensor]:
    """``{storage data_ptr: tensor}`` for every tensor reachable from ``roots`` through attributes,
    dicts, lists, tuples and sets (loggers, types, functions and modules are not entered)."""
    found: dict[int, Tensor] = {}
    seen: set[int] = set()
    stack = list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            if obj.layout == torch.strided and obj.device.type != "meta":
                found[obj.untyped_storage().data_ptr()] = obj
            continue
        if isinstance(obj, type | types.FunctionType | types.ModuleType | logging.Logger | str | bytes):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return found


def engine_bytes(runner: Runner) -> int:
    """Bytes reachable from the engine and the model that are neither parameters (now or before the
    engine) nor the model's earlier buffers nor optimizer state."""
    if runner.engine is None:
        return 0
    excluded = runner.baseline.keys() | _tensors([runner.optimizer.state, list(runner.model.parameters())])
    reachable = _tensors([runner.engine, runner.model])
    return sum(t.untyped_storage().nbytes() for ptr, t in reachable.items() if ptr not in excluded)


def benchmark(libraries: dict[str, Callable[..., Runner]], args: argparse.Namespace, batch_size: int) -> None:
    names = list(libraries)
    means: dict[str, list[float]] = {n: [] for n in names}
    update_costs: dict[str, list[float]] = {n: [] for n in names}
    memory: dict[str, int] = {}
    # process warm-up for this batch size (kernels, allocator, thread pool), then the timed rounds
    timed_round({n: make_runner(f, "sgd", args.update_every) for n, f in libraries.items()}, batch_size, 0, 10)
    for _ in range(args.rounds):
        runners = {name: make_runner(factory, "sgd", args.update_every) for name, factory in libraries.items()}
        times = timed_round(runners, batch_size, args.warmup, args.steps)
        is_update = [(args.warmup + i + 1) % args.update_every == 0 for i in range(args.steps)]
        for name, runner in runners.items():
            regular = statistics.median(t for t, u in zip(times[name], is_update, strict=True) if not u)
            means[name].append(statistics.fmean(times[name]))
            update_costs[name] += [t - regular for t, u in zip(times[name], is_update, strict=True) if u]
            memory[name] = engine_bytes(runner)
    print(
        f"\nbatch {batch_size}: ResNet-20, 32x32, SGD, density {DENSITY}, update every {args.update_every}, "
        f"{args.steps} steps x {args.rounds} rounds, {torch.get_num_threads()} threads"
    )
    header = ("library", "step ms", "ratio to dense [min, max]", "update ms", "engine memory")
    print("{:<11} {:>8} {:>27} {:>10} {:>14}".format(*header))
    for name in names:
        ratios = [m / d for m, d in zip(means[name], means["dense"], strict=True)]
        costs = update_costs[name] if name != "dense" else []  # none when --steps < --update-every
        update = f"{statistics.fmean(costs) * 1e3:10.1f}" if costs else f"{'-':>10}"
        print(
            f"{name:<11} {statistics.fmean(means[name]) * 1e3:8.2f} "
            f"{statistics.median(ratios):12.3f}x [{min(ratios):.3f}, {max(ratios):.3f}] "
            f"{update} {memory[name] / 2**10:11.1f} KiB"
        )


def adam_moment_check(
    libraries: dict[str, Callable[..., Runner]], steps: int = 40, update_every: int = 10
) -> None:
    print(
        f"\nAdam moments at pruned positions (Adam lr 1e-3, batch 8, update every {update_every}, "
        f"{steps} steps): entries with mask 0 and exp_avg != 0 or exp_avg_sq != 0"
    )
    for name, factory in libraries.items():
        if name == "dense":
            continue
        runner = make_runner(factory, "adam", update_every)
        stream = batches(8)
        for _ in range(steps):
            runner.step(*next(stream))
        live, pruned = 0, 0
        for param, mask in runner.masks():
            state = runner.optimizer.state[param]
            moving = (state["exp_avg"] != 0) | (state["exp_avg_sq"] != 0)
            live += int((moving & ~mask).sum())
            pruned += int((~mask).sum())
        print(f"{name:<11} {live:>8} of {pruned} pruned entries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 128], help="batch sizes")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per library per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--update-every", type=int, default=100, help="steps between topology updates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    libraries = available_libraries()
    print(
        f"torch {torch.__version__}, python {sys.version.split()[0]}, load average at start "
        f"{os.getloadavg()[0]:.2f}, libraries: {', '.join(libraries)}"
    )
    for batch_size in args.batches:
        benchmark(libraries, args, batch_size)
    adam_moment_check(libraries)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
