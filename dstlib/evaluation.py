"""Evaluation in eval mode: :func:`evaluate` (loss and metrics over a dataset) and :func:`predict`
(model outputs), batch by batch, bf16 autocast on a GPU."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dstlib.batches import Data, in_order
from dstlib.metrics import Metric
from dstlib.tasks import Classification, Task, as_float, move_to


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
    for raw in in_order(data, batch_size, collate):
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
    for (x,) in in_order((inputs,), batch_size, None):
        with autocast:
            outputs.append(model(x.to(device, non_blocking=True)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs)
