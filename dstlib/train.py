"""One training loop for every chapter: :func:`fit`, :func:`evaluate` and their helpers.

What :func:`fit` does for you:

* device auto-selection (cuda > cpu) and bf16 autocast on GPU;
* seeds (python, numpy, torch) and a seeded shuffling generator, so two runs with the same seed
  give the same numbers on the CPU;
* SGD / AdamW, per-step LR schedules (constant, cosine, step), gradient clipping;
* a sparsity engine built by ``sparsity(model, optimizer, total_steps)`` and stepped right after
  every ``optimizer.step()``;
* atomic checkpoints every epoch and exact resume;
* ``DistributedDataParallel`` when launched by ``torchrun`` (each rank takes its share of every
  shuffled epoch; the sparsity engine keeps masks identical across ranks);
* tqdm progress bars (off in tests).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dstlib.atomic import torch_save

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step")

EngineFactory = Callable[[nn.Module, torch.optim.Optimizer, int], Any]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) and make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code draws from the legacy global state
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives cuda when available (the local rank's GPU under torchrun), else cpu."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' is not allowed here: no CUDA device is available; use 'auto' or 'cpu'")
    return device


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size; ``world_size == 1`` means a plain single-process run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(device: torch.device) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else a no-op."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size())


def batches(tensors: Sequence[torch.Tensor], batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield mini-batches of in-memory tensors (all with the same first dimension ``N``).

    Much faster than a ``DataLoader`` over a ``TensorDataset`` for small models: one index per batch
    instead of one per sample. With ``world_size`` > 1 each rank takes every ``world_size``-th sample
    of the (identically shuffled) order.
    """
    n = tensors[0].shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order[rank::world_size]
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield tuple(t[index] for t in tensors)


def _as_tensors(data: Dataset | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, list | tuple) and all(isinstance(t, torch.Tensor) for t in data):
        return tuple(data)
    raise ValueError(f"data={type(data).__name__} is not allowed; expected a TensorDataset or a tuple of tensors")


def make_optimizer(model: nn.Module, name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 5e-4,
                   nesterov: bool = True) -> torch.optim.Optimizer:
    """SGD (momentum, optionally Nesterov) or AdamW over all parameters of ``model``."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not allowed; allowed: {', '.join(OPTIMIZERS)}")


def make_lr_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, *,
                     milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
                     warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LR multiplier: linear warm-up, then constant, cosine to zero, or x``gamma`` at each
    milestone (given as fractions of ``total_steps``)."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={name!r} is not allowed; allowed: {', '.join(LR_SCHEDULES)}")
    steps = [int(m * total_steps) for m in milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "step":
            return gamma ** sum(step >= s for s in steps)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 512,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Model outputs for ``inputs`` (``(N, ...)``) in eval mode, on the CPU: ``(N, num_outputs, ...)``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for (x,) in batches((inputs,), batch_size):
        with autocast:
            outputs.append(model(x.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs)


def evaluate(model: nn.Module, data: Dataset | Sequence[torch.Tensor], *, batch_size: int = 512,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> dict[str, float]:
    """``{"loss", "accuracy"}`` of a classifier on ``data`` (inputs, integer targets)."""
    inputs, targets = _as_tensors(data)[:2]
    logits = predict(model, inputs, batch_size=batch_size)
    return {"loss": float(loss_fn(logits, targets)),
            "accuracy": float((logits.argmax(1) == targets).float().mean())}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (unwrapped), the engine, per-epoch history."""

    model: nn.Module
    engine: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0


def fit(model: nn.Module, train_data: Dataset | Sequence[torch.Tensor], *, epochs: int, batch_size: int,
        lr: float, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
        nesterov: bool = True, lr_schedule: str = "cosine", milestones: Sequence[float] = (0.5, 0.75),
        warmup_epochs: float = 0.0, clip_grad_norm: float | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        sparsity: EngineFactory | None = None, augment: Augment | None = None,
        eval_data: Dataset | Sequence[torch.Tensor] | None = None,
        on_epoch_end: Callable[[int, nn.Module, Any], dict[str, Any] | None] | None = None,
        seed: int = 0, device: str | torch.device = "auto", amp: bool | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = False) -> FitResult:
    """Train ``model`` on ``train_data`` (inputs ``(N, ...)``, targets ``(N, ...)``) for ``epochs``.

    ``sparsity(model, optimizer, total_steps)`` builds a sparsity engine (e.g. ``lambda m, o, t:
    dstlib.sparse.RigL(m, o, density=0.1, total_steps=t)``); the loop calls ``engine.step()`` right
    after each ``optimizer.step()``. ``on_epoch_end(epoch, model, engine)`` may return extra values for
    that epoch's history row. ``amp=None`` turns bf16 autocast on for cuda only. With ``checkpoint``
    the full state (model, optimizer, LR schedule, engine, RNG, history) is saved atomically after
    every epoch; ``resume=True`` continues from it. Returns a :class:`FitResult`.
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs!r} is not allowed; expected an integer >= 1")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed; expected an integer >= 1")
    train_tensors = _as_tensors(train_data)
    device = pick_device(device)
    context = distributed_context(device)
    use_amp = device.type == "cuda" if amp is None else amp
    seed_everything(seed)
    model = model.to(device)
    n_samples = math.ceil(train_tensors[0].shape[0] / context.world_size)
    steps_per_epoch = math.ceil(n_samples / batch_size)
    total_steps = epochs * steps_per_epoch
    opt = make_optimizer(model, optimizer, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    schedule = make_lr_schedule(opt, lr_schedule, total_steps, milestones=milestones,
                                warmup_steps=int(warmup_epochs * steps_per_epoch))
    engine = sparsity(model, opt, total_steps) if sparsity is not None else None
    shuffle = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator().manual_seed(seed + 1)
    result = FitResult(model=model, engine=engine)
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["lr_schedule"])
        if engine is not None:
            engine.load_state_dict(state["engine"])
        shuffle.set_state(state["shuffle_rng"])
        augment_generator.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, result.steps, result.history = state["epoch"], state["steps"], state["history"]
    net = model
    if context.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)
    from tqdm.auto import trange

    started = time.perf_counter()
    for epoch in trange(start_epoch, epochs, desc="epochs", disable=not progress or not context.is_main,
                        leave=False):
        net.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for batch in batches(train_tensors, batch_size, shuffle=True, generator=shuffle, rank=context.rank,
                             world_size=context.world_size):
            x, y = (t.to(device, non_blocking=True) for t in batch[:2])
            if augment is not None:
                x = augment(x, augment_generator)
            with autocast:
                outputs = net(x)
                loss = loss_fn(outputs.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            opt.step()
            if engine is not None:
                engine.step()
            schedule.step()
            result.steps += 1
            loss_sum += loss.detach() * len(y)
            if outputs.dim() == 2 and y.dim() == 1:
                correct += (outputs.detach().argmax(1) == y).sum()
            seen += len(y)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": result.steps, "lr": opt.param_groups[0]["lr"],
                               "train_loss": float(loss_sum) / seen, "train_accuracy": float(correct) / seen}
        if eval_data is not None:
            row.update({f"test_{k}": v for k, v in evaluate(model, eval_data).items()})
        if on_epoch_end is not None:
            row.update(on_epoch_end(epoch + 1, model, engine) or {})
        result.history.append(row)
        if checkpoint is not None and context.is_main:
            torch_save(checkpoint, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "lr_schedule": schedule.state_dict(),
                "engine": engine.state_dict() if engine is not None else None, "epoch": epoch + 1,
                "steps": result.steps, "history": result.history, "shuffle_rng": shuffle.get_state(),
                "augment_rng": augment_generator.get_state(), "torch_rng": torch.get_rng_state()})
    result.wall_time_s = time.perf_counter() - started
    result.model = _unwrap(net)
    return result
