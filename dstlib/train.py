"""One training loop for every chapter: :func:`fit`.

:func:`fit` trains any model on any task. A :class:`~dstlib.tasks.Task` turns a batch of any structure
(tuple, dict, padded sequences with lengths) into model inputs and per-sample losses; the optimisation
settings travel as one :class:`~dstlib.optimisation.Optimisation`; everything else the loop does is a
callback (:mod:`dstlib.callbacks`): the sparsity engine, the epoch sampler, per-sample records,
augmentation, perturbations, validation with model selection, test metrics, checkpoints. Data can be
in-memory tensors (fastest), a map-style ``Dataset`` with a ``collate`` function (variable-length items),
or any iterable of batches such as a ``DataLoader`` (:mod:`dstlib.batches`).

What it does for you:

* device auto-selection (cuda > cpu) and bf16 autocast on GPU;
* seeds: pass a model *factory* and the seed is set before the model is built, so a run's initial
  weights depend on its seed only, not on the runs before it; a seeded shuffling generator;
* atomic checkpoints every epoch and exact resume (``checkpoint=``, ``resume=True``);
* ``DistributedDataParallel`` under ``torchrun``: ``batch_size`` is the *global* batch, each of N
  processes takes its ``batch_size / N`` share of every batch, so one process and N processes run the
  same optimisation (on GPUs BatchNorm is synchronised too; on CPUs, which have no synchronised
  BatchNorm, its statistics are per process);
* a tqdm progress bar over epochs (off by default).

For example, RigL at 90% sparsity with crop-and-flip augmentation, validation and model selection::

    fit(make_model, (x, y), epochs=30, batch_size=128, optim=Optimisation(lr=0.1),
        callbacks=[Sparsity(engine_factory), Augmentation(random_crop_flip),
                   Validation((x_val, y_val), select_by="accuracy")], checkpoint="run.pt", resume=True)
"""

from __future__ import annotations

import itertools
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.batches import Data, IndexedData, is_indexed
from dstlib.callbacks import Callback, Checkpoint, EpochSampling, FitResult, Loop, StepCost
from dstlib.optimisation import Optimisation
from dstlib.sparse.distributed import all_reduce_sum_
from dstlib.tasks import Classification, Task, as_float, move_to


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
        raise ValueError("device='cuda': allowed 'auto' or 'cpu' here, no CUDA device is available")
    return device


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size; ``world_size == 1`` means a plain single-process run."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(device: torch.device | None = None) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else a no-op."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        device = device or pick_device()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size())


def wrap_for_ddp(model: nn.Module, device: torch.device, context: DistributedContext) -> nn.Module:
    """``model`` itself in one process; under torchrun a ``DistributedDataParallel`` of it (with
    synchronised BatchNorm on GPUs: BatchNorm over the global batch, as in one process)."""
    if context.world_size == 1:
        return model
    if device.type == "cuda":  # no CPU kernel exists for synchronised BatchNorm
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class EpochBatches:
    """The training batches of every epoch: a seeded shuffle of the training set (or of the samples an
    :class:`~dstlib.callbacks.EpochSampling` chose), cut into global batches of ``batch_size`` and split
    between the processes; an iterable of batches (a ``DataLoader``) is read as it comes."""

    def __init__(self, data: Data, batch_size: int, *, collate: Callable[[list[Any]], Any] | None,
                 context: DistributedContext, sampling: EpochSampling | None, seed: int, limit: int = 0) -> None:
        checks.integer("batch_size", batch_size, low=1)
        if batch_size % context.world_size:
            raise ValueError(f"batch_size={batch_size}: allowed a multiple of the {context.world_size} processes "
                             "(it is the global batch, split evenly between them)")
        indexed = is_indexed(data)
        if sampling is not None and not indexed:
            raise ValueError(f"sampler={type(sampling.sampler).__name__}: allowed only with tensors or a map-style "
                             f"dataset, not {type(data).__name__}")
        if not indexed and context.world_size > 1:
            raise ValueError(f"train_data={type(data).__name__}: under torchrun pass tensors or a map-style "
                             "dataset, so that fit can split every global batch between the processes")
        self.data, self.batch_size, self.context, self.sampling = data, batch_size, context, sampling
        self.source = IndexedData(data, collate) if indexed else None  # type: ignore[arg-type]
        self.shuffle = torch.Generator().manual_seed(seed)
        if self.source is None:
            self.num_samples = len(getattr(data, "dataset", ()))
            self.steps_per_epoch = len(data)  # type: ignore[arg-type]
        else:
            self.num_samples = len(self.source)
            per_epoch = sampling.num_selected(self.num_samples) if sampling is not None else self.num_samples
            self.steps_per_epoch = math.ceil(per_epoch / batch_size)
        self.limit = limit
        if limit:
            self.steps_per_epoch = min(self.steps_per_epoch, limit)

    def __call__(self, epoch: int) -> Iterator[tuple[Tensor | None, Any, int]]:
        """``(sample index or None, this process's batch, global batch size or 0)`` for ``epoch`` (1-based),
        the first ``limit`` of them when ``limit`` is set."""
        return itertools.islice(self._batches(epoch), self.limit) if self.limit else self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor | None, Any, int]]:
        if self.source is None:
            for raw in self.data:  # type: ignore[union-attr]
                yield (raw.get("index") if isinstance(raw, Mapping) else None), raw, 0
            return
        if self.sampling is None:
            order = torch.randperm(self.num_samples, generator=self.shuffle)
        else:
            chosen = self.sampling.select(epoch, self.shuffle)
            order = chosen[torch.randperm(len(chosen), generator=self.shuffle)]
        for start in range(0, len(order), self.batch_size):
            parts = order[start:start + self.batch_size].tensor_split(self.context.world_size)
            if any(len(p) == 0 for p in parts):
                continue  # fewer samples left than processes: every process skips the same last batch
            mine = parts[self.context.rank]
            yield mine, self.source.fetch(mine), sum(len(p) for p in parts)


def fit(model: nn.Module | Callable[[], nn.Module], train_data: Data, *, epochs: int, batch_size: int,
        optim: Optimisation, task: Task | None = None, callbacks: Sequence[Callback] = (),
        collate: Callable[[list[Any]], Any] | None = None, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, seed: int = 0, device: str | torch.device = "auto", amp: bool | None = None,
        progress: bool = False, limit_batches: int = 0) -> FitResult:
    """Train ``model`` on ``train_data`` for ``epochs`` and return a :class:`~dstlib.callbacks.FitResult`.

    Args:
        model: a module, or a zero-argument factory called after seeding (recommended: the initial
            weights then depend on ``seed`` alone).
        train_data: tensors ``(inputs, targets, ...)`` / a ``TensorDataset``; a map-style ``Dataset``
            (batches made by ``collate``, default ``torch.utils.data.default_collate``); or any iterable
            of batches with a length, such as a ``DataLoader`` (then no :class:`EpochSampling`, and
            per-sample records need an ``"index"`` key in each dict batch).
        batch_size: the global mini-batch size (split over the processes under ``torchrun``).
        optim: the optimizer, LR schedule and gradient clipping.
        task: how a batch becomes inputs and per-sample losses; :class:`~dstlib.tasks.Classification`
            by default.
        callbacks: the rest of the loop (:mod:`dstlib.callbacks`), run in this order.
        checkpoint, resume: a :class:`~dstlib.callbacks.Checkpoint` after the other callbacks.
        amp: bf16 autocast; ``None`` turns it on for cuda only.
        limit_batches: train on at most this many batches per epoch (0: all), the LR schedule and the
            engine planned for that many; a fast dev run, whose history rows then carry what a step costs
            (:class:`~dstlib.callbacks.StepCost`).
    """
    checks.integer("epochs", epochs, low=1)
    task = task or Classification()
    device = pick_device(device)
    context = distributed_context(device)
    checks.integer("limit_batches", limit_batches, low=0)
    callbacks = [*([StepCost()] if limit_batches else []), *callbacks,
                 *([Checkpoint(checkpoint, resume)] if checkpoint is not None else [])]
    sampling = [c for c in callbacks if isinstance(c, EpochSampling)]
    if len(sampling) > 1:
        raise ValueError(f"callbacks: {len(sampling)} EpochSampling given, allowed at most one")
    batches = EpochBatches(train_data, batch_size, collate=collate, context=context,
                           sampling=sampling[0] if sampling else None, seed=seed, limit=limit_batches)
    seed_everything(seed)
    model = (model if isinstance(model, nn.Module) else model()).to(device)
    total_steps = epochs * batches.steps_per_epoch
    optimizer, schedule = optim.build(model, total_steps, batches.steps_per_epoch)
    loop = Loop(model=model, task=task, device=device, optimizer=optimizer, schedule=schedule, callbacks=callbacks,
                epochs=epochs, total_steps=total_steps, num_samples=batches.num_samples, shuffle=batches.shuffle,
                seed=seed, collate=collate, is_main=context.is_main)
    for callback in callbacks:
        callback.setup(loop)
    loop.net = wrap_for_ddp(model, device, context)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" if amp is None else amp)
    from tqdm.auto import trange

    started = time.perf_counter()
    for epoch in trange(loop.epoch, epochs, desc="epochs", disable=not progress or not context.is_main, leave=False):
        loop.epoch = epoch + 1
        for callback in callbacks:
            callback.on_epoch_start(loop)
        row = train_epoch(loop, batches, optim, autocast, context.world_size)
        loop.history.append(row)
        for callback in callbacks:
            callback.on_epoch_end(loop, row)
    result = FitResult(model=model, engine=loop.engine, history=loop.history, best_epoch=epochs, steps=loop.steps,
                       samples_seen=loop.samples_seen, wall_time_s=time.perf_counter() - started)
    for callback in callbacks:
        callback.on_fit_end(loop, result)
    return result


def train_epoch(loop: Loop, batches: EpochBatches, optim: Optimisation, autocast: torch.autocast,
                world_size: int) -> dict[str, Any]:
    """One epoch of optimizer steps; the epoch's history row (epoch, step, lr, mean training loss, samples)."""
    loop.net.train()
    loss_sum, seen = torch.zeros((), device=loop.device), 0
    for index, raw, global_size in batches(loop.epoch):
        batch = move_to(loop.task.as_dict(raw), loop.device)
        for callback in loop.callbacks:
            batch = callback.on_batch(loop, batch)
        with autocast:
            outputs = loop.net(*loop.task.model_inputs(batch))
        outputs = as_float(outputs)
        losses = loop.task.loss(outputs, batch)
        # Sum over this process's share divided by the global batch, times the world size: DDP's gradient
        # average then equals the mean over the global batch.
        loss = losses.sum() * (world_size / global_size) if global_size else losses.mean()
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optim.clip(loop.model)
        loop.optimizer.step()
        for callback in loop.callbacks:
            callback.after_step(loop)
        loop.schedule.step()
        loop.steps += 1
        loss_sum += losses.detach().sum()
        seen += loop.task.size(batch)
        for callback in loop.callbacks:
            callback.on_batch_end(loop, index, outputs, batch, losses)
    totals = torch.stack([loss_sum.double().cpu(), torch.tensor(float(seen), dtype=torch.float64)])
    all_reduce_sum_([totals])
    loop.samples_seen += int(totals[1])
    return {"epoch": loop.epoch, "step": loop.steps, "lr": loop.optimizer.param_groups[0]["lr"],
            "train_loss": float(totals[0] / totals[1].clamp(min=1)), "samples": int(totals[1])}
