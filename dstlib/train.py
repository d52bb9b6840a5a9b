"""One training loop for every chapter: :func:`fit`, :func:`evaluate` and their helpers.

:func:`fit` trains any model on any task. A :class:`~dstlib.tasks.Task` turns a batch of any structure
(tuple, dict, padded sequences with lengths) into model inputs and per-sample losses; metrics
(:mod:`dstlib.metrics`) are plug-ins. Data can be in-memory tensors (fastest), a map-style ``Dataset``
with a ``collate`` function (variable-length items), or any iterable of batches such as a ``DataLoader``.

What it does for you:

* device auto-selection (cuda > cpu) and bf16 autocast on GPU;
* seeds: pass a model *factory* and the seed is set before the model is built, so a run's initial
  weights depend on its seed only, not on the runs before it; a seeded shuffling generator;
* SGD / AdamW, per-step LR schedules (constant, cosine, step), gradient clipping;
* a sparsity engine built by ``sparsity(model, optimizer, total_steps)`` and stepped right after
  every ``optimizer.step()``;
* atomic checkpoints every epoch and exact resume;
* ``DistributedDataParallel`` under ``torchrun``: ``batch_size`` is the *global* batch, each of N
  processes takes its ``batch_size / N`` share of every batch, so one process and N processes run the
  same optimisation (on GPUs BatchNorm is synchronised too; on CPUs, which have no synchronised
  BatchNorm, its statistics are per process);
* tqdm progress bars (off in tests).

Hooks, each optional:

* ``record``: per-sample statistics recorded by sample index during each epoch, from the training
  forward pass itself (no extra pass). ``"loss"`` is always available; add any
  ``fn(task, outputs, batch) -> (N,)`` (e.g. correctness for forgetting events). Kept in
  :attr:`FitResult.per_sample` as ``(epochs, N)`` tensors, NaN where a sample was not trained on.
* ``sampler``: an :class:`EpochSampler` that picks the samples of each epoch, seeing the per-sample
  losses of the previous epoch (dynamic data pruning, curricula, hard subsets).
* ``augment(x, generator)``: a seeded transform of the first model input (crop and flip).
* ``perturb(model, batch, task) -> batch``: a perturbation that sees the model and the targets
  (adversarial training, see :mod:`dstlib.adversarial`).
* deep supervision: a :class:`~dstlib.tasks.DeepSupervision` task.
* ``val_data`` + ``select_by``: validation every epoch and model selection: the weights (and masks) of
  the best epoch by that metric are restored at the end.
* ``eval_data``: test metrics every epoch, for learning curves; ``on_epoch_end`` for anything else.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from dstlib import checks
from dstlib.atomic import torch_save
from dstlib.metrics import Metric
from dstlib.sparse.distributed import all_reduce_sum_
from dstlib.tasks import Batch, Classification, Task, as_float, move_to

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step", "poly")
POLY_POWER = 0.9  # nnU-Net's polynomial decay exponent

EngineFactory = Callable[[nn.Module, torch.optim.Optimizer, int], Any]
Augment = Callable[[Tensor, torch.Generator], Tensor]
Perturb = Callable[[nn.Module, Batch, Task], Batch]
PerSampleFn = Callable[[Task, Any, Batch], Tensor]
Data = Dataset | Sequence[Tensor] | Iterable[Any]


class EpochSampler(Protocol):
    """Chooses the training samples of every epoch.

    ``num_selected(n)`` is how many of ``n`` samples an epoch uses (fixed, so the LR schedule and the
    sparsity engine know the number of steps in advance). ``select(epoch, losses, generator)`` returns
    the indices ``(num_selected,)`` for ``epoch`` (1-based); ``losses`` is the ``(n,)`` tensor of each
    sample's most recent training loss, recorded in the training forward pass of the last epoch that
    used it (NaN for a sample never trained on yet: all NaN before the first epoch).
    """

    def num_selected(self, num_samples: int) -> int: ...

    def select(self, epoch: int, losses: Tensor | None, generator: torch.Generator) -> Tensor: ...


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


class IndexedData:
    """Training data addressed by sample index: in-memory tensors, or a map-style dataset + ``collate``.

    ``fetch(index)`` returns the batch of the samples ``index`` ``(B,)``: a tuple of tensors, or
    whatever ``collate`` makes of ``[dataset[i] for i in index]``.
    """

    def __init__(self, data: Dataset | Sequence[Tensor], collate: Callable[[list[Any]], Any] | None = None) -> None:
        self.tensors: tuple[Tensor, ...] | None = None
        if isinstance(data, TensorDataset):
            self.tensors = tuple(data.tensors)
        elif isinstance(data, list | tuple) and data and all(isinstance(t, Tensor) for t in data):
            self.tensors = tuple(data)
        if self.tensors is not None:
            sizes = {t.shape[0] for t in self.tensors}
            if len(sizes) != 1:
                raise ValueError(f"data first dimensions={sorted(sizes)}: allowed tensors of one length N")
            self.size = sizes.pop()
        else:
            self.dataset = data
            self.size = len(data)  # type: ignore[arg-type]
            from torch.utils.data import default_collate

            self.collate = collate or default_collate

    def __len__(self) -> int:
        return self.size

    def fetch(self, index: Tensor) -> Any:
        if self.tensors is not None:
            return tuple(t[index] for t in self.tensors)
        return self.collate([self.dataset[i] for i in index.tolist()])


def is_indexed(data: Any) -> bool:
    """Whether ``data`` can be addressed by index (tensors or a map-style dataset with ``len``)."""
    if isinstance(data, TensorDataset):
        return True
    if isinstance(data, list | tuple):
        return bool(data) and all(isinstance(t, Tensor) for t in data)
    iterable = isinstance(data, torch.utils.data.IterableDataset)
    return isinstance(data, Dataset) and hasattr(data, "__len__") and not iterable


def make_optimizer(model: nn.Module, name: str, lr: float, *, momentum: float = 0.9, weight_decay: float = 5e-4,
                   nesterov: bool = True) -> torch.optim.Optimizer:
    """SGD (momentum, optionally Nesterov) or AdamW over all parameters of ``model``."""
    checks.one_of("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def make_lr_schedule(optimizer: torch.optim.Optimizer, name: str, total_steps: int, *,
                     milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1,
                     warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LR multiplier: linear warm-up, then constant, cosine to zero, x``gamma`` at each
    milestone (given as fractions of ``total_steps``), or nnU-Net's poly decay ``(1 - progress) ** 0.9``."""
    checks.one_of("lr_schedule", name, LR_SCHEDULES)
    steps = [int(m * total_steps) for m in milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "step":
            return gamma ** sum(step >= s for s in steps)
        if name == "poly":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return max(0.0, 1.0 - progress) ** POLY_POWER
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _eval_batches(data: Data, batch_size: int, collate: Callable | None) -> Iterable[Any]:
    if is_indexed(data):
        source = IndexedData(data, collate)  # type: ignore[arg-type]
        return (source.fetch(torch.arange(s, min(s + batch_size, len(source))))
                for s in range(0, len(source), batch_size))
    return data


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, *, task: Task | None = None, metrics: Mapping[str, Metric] | None = None,
             batch_size: int = 512, collate: Callable[[list[Any]], Any] | None = None,
             forward: Callable[[nn.Module, tuple[Any, ...]], Any] | None = None,
             device: str | torch.device | None = None) -> dict[str, float]:
    """``{"loss": mean per-sample loss, <metric>: value, ...}`` of ``model`` on ``data`` in eval mode.

    ``task`` defaults to :class:`~dstlib.tasks.Classification` and ``metrics`` to the task's default
    ones (accuracy for classification). ``forward(model, inputs)`` replaces ``model(*inputs)``, e.g.
    :func:`dstlib.tasks.sliding_window` for volumes larger than the training patches.
    """
    task = task or Classification()
    metrics = dict(task.default_metrics() if metrics is None else metrics)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    for metric in metrics.values():
        metric.reset()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    loss_sum, count = 0.0, 0
    for raw in _eval_batches(data, batch_size, collate):
        batch = move_to(task.as_dict(raw), device)
        inputs = task.model_inputs(batch)
        with autocast:
            outputs = as_float(forward(model, inputs) if forward is not None else model(*inputs))
        loss_sum += float(task.loss(outputs, batch).sum())
        count += task.size(batch)
        for metric in metrics.values():
            metric.update(task, outputs, batch)
    model.train(was_training)
    return {"loss": loss_sum / max(count, 1), **{name: metric.compute() for name, metric in metrics.items()}}


@torch.no_grad()
def predict(model: nn.Module, inputs: Tensor, *, batch_size: int = 512,
            device: str | torch.device | None = None) -> Tensor:
    """Model outputs for ``inputs`` (``(N, ...)``) in eval mode, on the CPU: ``(N, num_outputs, ...)``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for (x,) in _eval_batches((inputs,), batch_size, None):
        with autocast:
            outputs.append(model(x.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs)


class PerSampleRecorder:
    """Per-sample values by sample index, one row per epoch (NaN where a sample was not used)."""

    def __init__(self, num_samples: int, names: Sequence[str]) -> None:
        self.num_samples = num_samples
        self.rows: dict[str, list[Tensor]] = {name: [] for name in names}
        self._sums: dict[str, Tensor] = {}
        self._counts = torch.zeros(num_samples)

    def start_epoch(self) -> None:
        self._sums = {name: torch.zeros(self.num_samples, dtype=torch.float64) for name in self.rows}
        self._counts = torch.zeros(self.num_samples, dtype=torch.float64)

    def add(self, index: Tensor, values: Mapping[str, Tensor]) -> None:
        index = index.cpu()
        self._counts.index_add_(0, index, torch.ones(len(index), dtype=torch.float64))
        for name, value in values.items():
            self._sums[name].index_add_(0, index, value.detach().double().cpu())

    def end_epoch(self) -> None:
        all_reduce_sum_([self._counts, *self._sums.values()])
        for name, total in self._sums.items():
            self.rows[name].append((total / self._counts).float())  # 0 / 0 = NaN for unused samples

    def most_recent(self, name: str) -> Tensor:
        """``(num_samples,)``: each sample's value in the last epoch that recorded it (NaN if none did)."""
        values = torch.full((self.num_samples,), float("nan"))
        for row in self.rows[name]:
            values = torch.where(row.isnan(), values, row)
        return values

    def stacked(self) -> dict[str, Tensor]:
        return {name: torch.stack(rows) if rows else torch.empty(0, self.num_samples)
                for name, rows in self.rows.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = {name: list(rows) for name, rows in state["rows"].items()}


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (unwrapped), the engine, per-epoch history, the
    per-sample records ``{name: (epochs, N)}``, and the epoch kept by model selection (else the last)."""

    model: nn.Module
    engine: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    per_sample: dict[str, Tensor] = field(default_factory=dict)
    best_epoch: int | None = None
    steps: int = 0
    samples_seen: int = 0
    wall_time_s: float = 0.0


def _better(value: float, best: float | None, higher_is_better: bool) -> bool:
    if math.isnan(value):
        return False
    return best is None or (value > best if higher_is_better else value < best)


def fit(model: nn.Module | Callable[[], nn.Module], train_data: Data, *, epochs: int, batch_size: int, lr: float,
        task: Task | None = None, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
        nesterov: bool = True, lr_schedule: str = "cosine", milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1, warmup_epochs: float = 0.0, clip_grad_norm: float | None = None,
        collate: Callable[[list[Any]], Any] | None = None, sparsity: EngineFactory | None = None,
        augment: Augment | None = None, perturb: Perturb | None = None, sampler: EpochSampler | None = None,
        record: Mapping[str, PerSampleFn] | Sequence[str] | None = None,
        eval_data: Data | None = None, val_data: Data | None = None, metrics: Mapping[str, Metric] | None = None,
        select_by: str | None = None,
        on_epoch_end: Callable[[int, nn.Module, Any], dict[str, Any] | None] | None = None,
        seed: int = 0, device: str | torch.device = "auto", amp: bool | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = False) -> FitResult:
    """Train ``model`` on ``train_data`` for ``epochs`` and return a :class:`FitResult`.

    Args:
        model: a module, or a zero-argument factory called after seeding (recommended: the initial
            weights then depend on ``seed`` alone).
        train_data: tensors ``(inputs, targets, ...)`` / a ``TensorDataset``; a map-style ``Dataset``
            (batches made by ``collate``, default ``torch.utils.data.default_collate``); or any iterable
            of batches with a length, such as a ``DataLoader`` (then ``sampler`` is not available and
            per-sample records need an ``"index"`` key in each dict batch).
        batch_size: the global mini-batch size (split over the processes under ``torchrun``).
        task: how a batch becomes inputs and per-sample losses; :class:`~dstlib.tasks.Classification`
            by default.
        sparsity: ``(model, optimizer, total_steps) -> engine``; ``engine.step()`` runs right after every
            ``optimizer.step()``.
        record: names of per-sample values to keep (``"loss"``), or ``{name: fn(task, outputs, batch)}``.
        metrics, eval_data, val_data, select_by: metrics (the task's default when ``None``) computed on
            ``eval_data`` (``test_<name>`` columns) and ``val_data`` (``val_<name>``) after every epoch;
            ``select_by`` names a validation metric (or ``"loss"``) whose best epoch is restored.
        checkpoint, resume: the full state (model, optimizer, LR schedule, engine, RNGs, history,
            records, best weights) is saved atomically after every epoch; ``resume=True`` continues.
        amp: bf16 autocast; ``None`` turns it on for cuda only.
    """
    checks.integer("epochs", epochs, low=1)
    checks.integer("batch_size", batch_size, low=1)
    task = task or Classification()
    device = pick_device(device)
    context = distributed_context(device)
    if batch_size % context.world_size:
        raise ValueError(f"batch_size={batch_size}: allowed a multiple of the {context.world_size} processes "
                         "(it is the global batch, split evenly between them)")
    indexed = is_indexed(train_data)
    if sampler is not None and not indexed:
        raise ValueError(f"sampler={type(sampler).__name__}: allowed only with tensors or a map-style dataset, "
                         f"not {type(train_data).__name__}")
    if not indexed and context.world_size > 1:
        raise ValueError(f"train_data={type(train_data).__name__}: under torchrun pass tensors or a map-style "
                         "dataset, so that fit can split every global batch between the processes")
    eval_metrics = dict(task.default_metrics() if metrics is None else metrics)
    if select_by is not None:
        if val_data is None:
            raise ValueError(f"select_by={select_by!r}: allowed only with val_data")
        checks.one_of("select_by", select_by, ("loss", *eval_metrics))
    recorders = dict(record) if isinstance(record, Mapping) else dict.fromkeys(record or ())
    if sampler is not None:
        recorders.setdefault("loss", None)
    unknown = [name for name, fn in recorders.items() if fn is None and name != "loss"]
    if unknown:
        raise ValueError(f"record={unknown}: allowed 'loss' or a mapping name -> fn(task, outputs, batch)")
    use_amp = device.type == "cuda" if amp is None else amp

    seed_everything(seed)
    model = (model if isinstance(model, nn.Module) else model()).to(device)
    source = IndexedData(train_data, collate) if indexed else None  # type: ignore[arg-type]
    if source is not None:
        per_epoch = sampler.num_selected(len(source)) if sampler is not None else len(source)
        steps_per_epoch = math.ceil(per_epoch / batch_size)
    else:
        steps_per_epoch = len(train_data)  # type: ignore[arg-type]
    total_steps = epochs * steps_per_epoch
    opt = make_optimizer(model, optimizer, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    schedule = make_lr_schedule(opt, lr_schedule, total_steps, milestones=milestones, gamma=gamma,
                                warmup_steps=int(warmup_epochs * steps_per_epoch))
    engine = sparsity(model, opt, total_steps) if sparsity is not None else None
    shuffle = torch.Generator().manual_seed(seed)
    augment_generator = torch.Generator().manual_seed(seed + 1)
    recorder = None
    if recorders:
        num_samples = len(source) if source is not None else len(getattr(train_data, "dataset", ()))
        if num_samples == 0:
            raise ValueError(f"record={list(recorders)}: allowed with tensors, a map-style dataset, or a loader "
                             "with a .dataset whose length gives the number of samples")
        recorder = PerSampleRecorder(num_samples, list(recorders))
    result = FitResult(model=model, engine=engine)
    best: dict[str, Any] = {"score": None, "epoch": None, "state": None}
    higher = eval_metrics[select_by].higher_is_better if select_by not in (None, "loss") else False
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["lr_schedule"])
        if engine is not None:
            engine.load_state_dict(state["engine"])
        if recorder is not None:
            recorder.load_state_dict(state["records"])
        shuffle.set_state(state["shuffle_rng"])
        augment_generator.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, result.steps, result.history = state["epoch"], state["steps"], state["history"]
        result.samples_seen, best = state["samples_seen"], state["best"]
    net = model
    if context.world_size > 1:
        if device.type == "cuda":  # BatchNorm over the global batch, as in one process (no CPU kernel exists)
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)
    from tqdm.auto import trange

    def epoch_batches(epoch: int) -> Iterator[tuple[Tensor | None, Any, int]]:
        """``(sample index or None, this process's batch, global batch size)`` for one epoch."""
        if source is None:
            for raw in train_data:  # type: ignore[union-attr]
                index = raw.get("index") if isinstance(raw, Mapping) else None
                yield index, raw, 0
            return
        if sampler is None:
            order = torch.randperm(len(source), generator=shuffle)
        else:
            chosen = torch.as_tensor(sampler.select(epoch, recorder.most_recent("loss"), shuffle), dtype=torch.long)
            order = chosen[torch.randperm(len(chosen), generator=shuffle)]
        for start in range(0, len(order), batch_size):
            global_index = order[start:start + batch_size]
            parts = global_index.tensor_split(context.world_size)
            if any(len(p) == 0 for p in parts):
                continue  # fewer samples left than processes: every process skips the same last batch
            yield parts[context.rank], source.fetch(parts[context.rank]), len(global_index)

    started = time.perf_counter()
    for epoch in trange(start_epoch, epochs, desc="epochs", disable=not progress or not context.is_main,
                        leave=False):
        net.train()
        if recorder is not None:
            recorder.start_epoch()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for index, raw, global_size in epoch_batches(epoch + 1):
            batch = move_to(task.as_dict(raw), device)
            if augment is not None:
                first = task.input_fields[0]
                batch = task.with_input(batch, augment(batch[first], augment_generator))
            if perturb is not None:
                batch = perturb(net, batch, task)
            n = task.size(batch)
            with autocast:
                outputs = net(*task.model_inputs(batch))
            outputs = as_float(outputs)
            losses = task.loss(outputs, batch)
            # Sum over this process's share divided by the global batch, times the world size: DDP's
            # gradient average then equals the mean over the global batch.
            loss = losses.sum() * (context.world_size / global_size) if global_size else losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            opt.step()
            if engine is not None:
                engine.step()
            schedule.step()
            result.steps += 1
            loss_sum += losses.detach().sum()
            seen += n
            if recorder is not None:
                if index is None:
                    raise ValueError("record/sampler: allowed only when every batch carries sample indices "
                                     "(tensors, a map-style dataset, or dict batches with an 'index' key)")
                recorder.add(index, {name: losses if fn is None else fn(task, outputs, batch)
                                     for name, fn in recorders.items()})
        if recorder is not None:
            recorder.end_epoch()
        totals = torch.stack([loss_sum.double().cpu(), torch.tensor(float(seen), dtype=torch.float64)])
        all_reduce_sum_([totals])
        result.samples_seen += int(totals[1])
        row: dict[str, Any] = {"epoch": epoch + 1, "step": result.steps, "lr": opt.param_groups[0]["lr"],
                               "train_loss": float(totals[0] / totals[1].clamp(min=1)), "samples": int(totals[1])}
        if val_data is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, val_data, task=task, metrics=eval_metrics,
                                                           collate=collate).items()})
            if select_by is not None and _better(row[f"val_{select_by}"], best["score"], higher):
                best = {"score": row[f"val_{select_by}"], "epoch": epoch + 1,
                        "state": copy.deepcopy(model.state_dict())}
        if eval_data is not None:
            row.update({f"test_{k}": v for k, v in evaluate(model, eval_data, task=task, metrics=eval_metrics,
                                                            collate=collate).items()})
        if on_epoch_end is not None:
            row.update(on_epoch_end(epoch + 1, model, engine) or {})
        result.history.append(row)
        if checkpoint is not None and context.is_main:
            torch_save(checkpoint, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "lr_schedule": schedule.state_dict(),
                "engine": engine.state_dict() if engine is not None else None, "epoch": epoch + 1,
                "steps": result.steps, "history": result.history, "shuffle_rng": shuffle.get_state(),
                "augment_rng": augment_generator.get_state(), "torch_rng": torch.get_rng_state(),
                "records": recorder.state_dict() if recorder is not None else None,
                "samples_seen": result.samples_seen, "best": best})
    result.wall_time_s = time.perf_counter() - started
    result.model = _unwrap(net)
    if best["state"] is not None:
        result.model.load_state_dict(best["state"])
    result.best_epoch = best["epoch"] or epochs
    result.per_sample = recorder.stacked() if recorder is not None else {}
    return result
