"""What :func:`dstlib.train.fit` does besides the gradient step, one callback each.

The loop (:func:`dstlib.train.fit`) builds the model, the optimizer and the LR schedule, then for every
batch: moves it to the device, lets the callbacks change it (:meth:`Callback.on_batch`), runs the forward
pass, the backward pass and the optimizer step, and tells the callbacks (:meth:`Callback.after_step`,
:meth:`Callback.on_batch_end`). After every epoch each callback adds to the epoch's history row.
Callbacks run in the order given; each sees the run through one :class:`Loop`.

* :class:`Sparsity`: builds the sparsity engine and steps it right after every optimizer step.
* :class:`EpochSampling`: chooses the samples of every epoch from their most recent training losses.
* :class:`Record`: per-sample values by sample index, from the training forward pass itself.
* :class:`Augmentation`: a seeded transform of the first model input (crop and flip).
* :class:`Perturbation`: a change of the batch that sees the model (adversarial training).
* :class:`Validation`: validation metrics every epoch and model selection (the best epoch is restored).
* :class:`Evaluation`: test metrics every epoch, for learning curves.
* :class:`EpochEndHook`: anything else at the end of an epoch.
* :class:`Checkpoint`: the whole state saved atomically after every epoch; exact resume.

A callback keeps its own state for checkpoints (:meth:`Callback.state_dict`); a new one is a subclass that
overrides the hooks it needs.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.atomic import torch_save
from dstlib.batches import Data
from dstlib.evaluation import evaluate
from dstlib.metrics import Metric
from dstlib.sparse.distributed import all_reduce_sum_
from dstlib.tasks import Batch, Task

EngineFactory = Callable[[nn.Module, torch.optim.Optimizer, int], Any]
PerSampleFn = Callable[[Task, Any, Batch], Tensor]


@dataclass
class FitResult:
    """What :func:`dstlib.train.fit` returns: the trained model (unwrapped), the engine, per-epoch history,
    the per-sample records ``{name: (epochs, N)}``, and the epoch kept by model selection (else the last)."""

    model: nn.Module
    engine: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    per_sample: dict[str, Tensor] = field(default_factory=dict)
    best_epoch: int | None = None
    steps: int = 0
    samples_seen: int = 0
    wall_time_s: float = 0.0


@dataclass
class Loop:
    """The run as the callbacks see it: its fixed parts, set before the first epoch, and its counters.

    ``model`` is the module being trained (``net`` is the same one wrapped for
    ``DistributedDataParallel`` under torchrun); ``epoch`` is the current epoch (1-based), ``steps`` the
    optimizer steps taken so far, ``num_samples`` the size of the training set (0 for a loader without a
    ``.dataset``), ``shuffle`` the generator that orders every epoch.
    """

    model: nn.Module
    task: Task
    device: torch.device
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    callbacks: Sequence[Callback]
    epochs: int
    total_steps: int
    num_samples: int
    shuffle: torch.Generator
    seed: int = 0
    collate: Callable[[list[Any]], Any] | None = None
    is_main: bool = True
    net: nn.Module | None = None
    engine: Any = None
    epoch: int = 0
    steps: int = 0
    samples_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue bit for bit (callbacks included)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.schedule.state_dict(), "epoch": self.epoch, "steps": self.steps,
                "samples_seen": self.samples_seen, "history": self.history, "shuffle_rng": self.shuffle.get_state(),
                "torch_rng": torch.get_rng_state(), "callbacks": [type(c).__name__ for c in self.callbacks],
                "callback_states": [c.state_dict() for c in self.callbacks]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = [type(c).__name__ for c in self.callbacks]
        if state.get("callbacks") != names:
            raise ValueError(f"checkpoint callbacks={state.get('callbacks')}: allowed only the callbacks of this "
                             f"run, {names} (resume with the settings that wrote the checkpoint, or delete it)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["lr_schedule"])
        for callback, callback_state in zip(self.callbacks, state["callback_states"], strict=True):
            callback.load_state_dict(callback_state)
        self.shuffle.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.steps, self.history = state["epoch"], state["steps"], state["history"]
        self.samples_seen = state["samples_seen"]


class Callback:
    """A part of the training loop; every hook does nothing unless overridden."""

    def setup(self, loop: Loop) -> None:
        """Before the first epoch, after the model, optimizer and schedule exist (in the callbacks' order)."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before the first batch of epoch ``loop.epoch``."""

    def on_batch(self, loop: Loop, batch: Batch) -> Batch:
        """The batch the forward pass sees, on the device (the callbacks' changes in their order)."""
        return batch

    def after_step(self, loop: Loop) -> None:
        """Right after every ``optimizer.step()``, before the LR schedule steps."""

    def on_batch_end(self, loop: Loop, index: Tensor | None, outputs: Any, batch: Batch, losses: Tensor) -> None:
        """After the step, with the samples' indices (``None`` when the data carries none), the model's
        outputs and the per-sample losses of the batch."""

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        """After the last batch; add columns to the epoch's history ``row`` (already in ``loop.history``)."""

    def on_fit_end(self, loop: Loop, result: FitResult) -> None:
        """After the last epoch: fill in ``result``."""

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None:
        """Restore what :meth:`state_dict` returned."""


class Sparsity(Callback):
    """The sparsity engine, built by ``factory(model, optimizer, total_steps)`` and stepped right after
    every ``optimizer.step()``; it is ``loop.engine`` and :attr:`FitResult.engine`."""

    def __init__(self, factory: EngineFactory) -> None:
        self.factory = factory
        self.engine: Any = None

    def setup(self, loop: Loop) -> None:
        self.engine = loop.engine = self.factory(loop.model, loop.optimizer, loop.total_steps)

    def after_step(self, loop: Loop) -> None:
        self.engine.step()

    def state_dict(self) -> Any:
        return self.engine.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.engine.load_state_dict(state)


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


class Record(Callback):
    """Per-sample values recorded by sample index during each epoch, from the training forward pass itself
    (no extra pass): ``"loss"``, or any ``{name: fn(task, outputs, batch) -> (N,)}`` (e.g. correctness for
    forgetting events). Kept in :attr:`FitResult.per_sample` as ``(epochs, N)`` tensors, NaN where a
    sample was not trained on. The data must carry sample indices: tensors, a map-style dataset, or a
    loader of dict batches with an ``"index"`` key and a ``.dataset`` that gives the number of samples."""

    def __init__(self, values: Mapping[str, PerSampleFn | None] | Sequence[str]) -> None:
        self.values = dict(values) if isinstance(values, Mapping) else dict.fromkeys(values)
        unknown = [name for name, fn in self.values.items() if fn is None and name != "loss"]
        if unknown or not self.values:
            raise ValueError(f"record={unknown or list(self.values)}: allowed 'loss' or a mapping "
                             "name -> fn(task, outputs, batch)")
        self.recorder: PerSampleRecorder | None = None

    def setup(self, loop: Loop) -> None:
        if loop.num_samples == 0:
            raise ValueError(f"record={list(self.values)}: allowed with tensors, a map-style dataset, or a loader "
                             "with a .dataset whose length gives the number of samples")
        self.recorder = PerSampleRecorder(loop.num_samples, list(self.values))

    def on_epoch_start(self, loop: Loop) -> None:
        self.recorder.start_epoch()

    def on_batch_end(self, loop: Loop, index: Tensor | None, outputs: Any, batch: Batch, losses: Tensor) -> None:
        if index is None:
            raise ValueError("record/sampler: allowed only when every batch carries sample indices "
                             "(tensors, a map-style dataset, or dict batches with an 'index' key)")
        self.recorder.add(index, {name: losses if fn is None else fn(loop.task, outputs, batch)
                                  for name, fn in self.values.items()})

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        self.recorder.end_epoch()

    def on_fit_end(self, loop: Loop, result: FitResult) -> None:
        result.per_sample = {**result.per_sample, **self.recorder.stacked()}

    def state_dict(self) -> Any:
        return {"rows": self.recorder.rows}

    def load_state_dict(self, state: Any) -> None:
        self.recorder.rows = {name: list(rows) for name, rows in state["rows"].items()}


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


class EpochSampling(Record):
    """Every epoch trains on the samples ``sampler`` chooses (dynamic data pruning, curricula, hard
    subsets), seeing each sample's most recent training loss, which this callback records (it is also in
    :attr:`FitResult.per_sample` as ``"loss"``). Needs tensors or a map-style dataset."""

    def __init__(self, sampler: EpochSampler) -> None:
        super().__init__(["loss"])
        self.sampler = sampler

    def num_selected(self, num_samples: int) -> int:
        return self.sampler.num_selected(num_samples)

    def select(self, epoch: int, generator: torch.Generator) -> Tensor:
        """The indices epoch ``epoch`` trains on, in the sampler's order."""
        chosen = self.sampler.select(epoch, self.recorder.most_recent("loss"), generator)
        return torch.as_tensor(chosen, dtype=torch.long)


class Augmentation(Callback):
    """``transform(x, generator)`` applied to the first model input of every training batch, with a
    generator seeded from the run's seed (``seed + 1``) and saved in checkpoints."""

    def __init__(self, transform: Callable[[Tensor, torch.Generator], Tensor]) -> None:
        self.transform = transform
        self.generator = torch.Generator()

    def setup(self, loop: Loop) -> None:
        self.generator.manual_seed(loop.seed + 1)

    def on_batch(self, loop: Loop, batch: Batch) -> Batch:
        first = loop.task.input_fields[0]
        return loop.task.with_input(batch, self.transform(batch[first], self.generator))

    def state_dict(self) -> Any:
        return self.generator.get_state()

    def load_state_dict(self, state: Any) -> None:
        self.generator.set_state(state)


class Perturbation(Callback):
    """``perturb(model, batch, task) -> batch``: a change of every training batch that sees the model and
    the targets (adversarial training, see :mod:`dstlib.adversarial`; time dropping, see
    :class:`dstlib.selection.pruning.TimeDropping`)."""

    def __init__(self, perturb: Callable[[nn.Module, Batch, Task], Batch]) -> None:
        self.perturb = perturb

    def on_batch(self, loop: Loop, batch: Batch) -> Batch:
        return self.perturb(loop.net, batch, loop.task)


class Evaluation(Callback):
    """Metrics of ``data`` after every epoch, as ``<prefix>_<name>`` columns (``test_`` by default); the
    task's default metrics when ``metrics`` is ``None``."""

    prefix = "test"

    def __init__(self, data: Data, metrics: Mapping[str, Metric] | None = None) -> None:
        self.data = data
        self.metrics = metrics

    def setup(self, loop: Loop) -> None:
        self.metrics = dict(loop.task.default_metrics() if self.metrics is None else self.metrics)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        scores = evaluate(loop.model, self.data, task=loop.task, metrics=self.metrics, collate=loop.collate)
        row.update({f"{self.prefix}_{name}": value for name, value in scores.items()})


class Validation(Evaluation):
    """:class:`Evaluation` on validation data (``val_`` columns) with model selection: when ``select_by``
    names a metric (or ``"loss"``), the weights of its best epoch are restored at the end and that epoch
    is :attr:`FitResult.best_epoch`."""

    prefix = "val"

    def __init__(self, data: Data, select_by: str | None = None, metrics: Mapping[str, Metric] | None = None) -> None:
        super().__init__(data, metrics)
        self.select_by = select_by
        self.best: dict[str, Any] = {"score": None, "epoch": None, "state": None}

    def setup(self, loop: Loop) -> None:
        super().setup(loop)
        if self.select_by is not None:
            checks.one_of("select_by", self.select_by, ("loss", *self.metrics))

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        super().on_epoch_end(loop, row)
        if self.select_by is None:
            return
        higher = self.select_by != "loss" and self.metrics[self.select_by].higher_is_better
        score = row[f"val_{self.select_by}"]
        if not math.isnan(score) and (self.best["score"] is None
                                      or (score > self.best["score"] if higher else score < self.best["score"])):
            self.best = {"score": score, "epoch": loop.epoch, "state": copy.deepcopy(loop.model.state_dict())}

    def on_fit_end(self, loop: Loop, result: FitResult) -> None:
        if self.best["state"] is not None:
            result.model.load_state_dict(self.best["state"])
            result.best_epoch = self.best["epoch"]

    def state_dict(self) -> Any:
        return self.best

    def load_state_dict(self, state: Any) -> None:
        self.best = state


class EpochEndHook(Callback):
    """``fn(epoch, model, engine) -> dict | None`` after every epoch; what it returns joins the history row."""

    def __init__(self, fn: Callable[[int, nn.Module, Any], dict[str, Any] | None]) -> None:
        self.fn = fn

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        row.update(self.fn(loop.epoch, loop.model, loop.engine) or {})


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape, **_: Any) -> int:
    """The FLOPs of a convolution's backward pass: its input gradient and its weight gradient, each as many
    multiply-adds as the forward. torch's own formula (2.13) counts the weight gradient as an ungrouped
    convolution, ``groups`` times too many for a grouped one (96x a depthwise forward at 96 channels)."""
    from torch.utils.flop_counter import conv_flop_count

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return flops


class StepCost(Callback):
    """What one training step costs, for a fast dev run's estimate of a whole paper run: the FLOPs of the
    first step (forward and backward, counted by :class:`torch.utils.flop_counter.FlopCounterMode`, 2 per
    multiply-add, dense kernels as run; a convolution's backward by :func:`conv_backward_flops`) and the
    mean wall time of the steps after it (the first one pays for allocations and the counter), as
    ``flops_per_step`` and ``step_time_s`` in the history row."""

    def __init__(self) -> None:
        self.counter: Any = None
        self.flops = 0
        self.times: list[float] = []
        self.started = 0.0

    def on_batch(self, loop: Loop, batch: Batch) -> Batch:
        import time

        from torch.utils.flop_counter import FlopCounterMode

        if loop.steps == 0:
            self.counter = FlopCounterMode(display=False, custom_mapping={
                torch.ops.aten.convolution_backward: conv_backward_flops})
            self.counter.__enter__()
        self.started = time.perf_counter()
        return batch

    def after_step(self, loop: Loop) -> None:
        import time

        if self.counter is not None:
            self.counter.__exit__(None, None, None)
            self.flops, self.counter = self.counter.get_total_flops(), None
        else:
            if loop.device.type == "cuda":
                torch.cuda.synchronize(loop.device)
            self.times.append(time.perf_counter() - self.started)

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        row["flops_per_step"] = self.flops
        row["step_time_s"] = sum(self.times) / len(self.times) if self.times else float("nan")


class Checkpoint(Callback):
    """The full state of the run (:meth:`Loop.state_dict`: model, optimizer, LR schedule, RNGs, history and
    every callback's state) saved atomically to ``path`` after every epoch by the main process; with
    ``resume`` an existing file is loaded before the first epoch and the run continues bit for bit.
    :func:`dstlib.train.fit` puts it after the other callbacks (``checkpoint=``, ``resume=``)."""

    def __init__(self, path: str | os.PathLike, resume: bool = False) -> None:
        self.path = Path(path)
        self.resume = resume

    def setup(self, loop: Loop) -> None:
        if self.resume and self.path.exists():
            loop.load_state_dict(torch.load(self.path, map_location=loop.device, weights_only=False))

    def on_epoch_end(self, loop: Loop, row: dict[str, Any]) -> None:
        if loop.is_main:
            torch_save(self.path, loop.state_dict())
