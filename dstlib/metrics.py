"""Metrics that :func:`dstlib.evaluation.evaluate` accumulates over batches: accuracy and top-k, word and
character error rates (jiwer), Dice (MONAI), or the mean of any per-sample function.

A metric has ``reset()``, ``update(task, outputs, batch)`` (``outputs`` as the model returned them,
``batch`` the task's dict view) and ``compute() -> float``, and says whether higher is better (model
selection on a validation set uses it). Each reads what it needs through the task: ``task.primary``
for the main output, ``task.targets`` for the labels, ``task.transcripts`` for text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from dstlib import checks

Batch = Mapping[str, Any]


class TaskView(Protocol):
    """What a metric reads through the task; every :class:`dstlib.tasks.Task` has it (the tasks pick
    their default metrics from this module, so it does not import them)."""

    def primary(self, outputs: Any) -> Tensor:
        """The output the metrics read (the main head when a model has several)."""

    def targets(self, batch: Batch) -> Any:
        """The labels of ``batch``."""

    def transcripts(self, outputs: Tensor, batch: Batch) -> tuple[list[str], list[str]]:
        """Decoded hypotheses and references (speech)."""


class Metric:
    """Base class: a running aggregate over batches."""

    higher_is_better: bool = True

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, task: TaskView, outputs: Any, batch: Batch) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


class Mean(Metric):
    """The mean over samples of ``fn(task, outputs, batch) -> (N,)`` (any per-sample quantity)."""

    def __init__(self, fn: Callable[[TaskView, Any, Batch], Tensor], higher_is_better: bool = True) -> None:
        self.fn = fn
        self.higher_is_better = higher_is_better
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def update(self, task: TaskView, outputs: Any, batch: Batch) -> None:
        values = self.fn(task, outputs, batch).detach().float()
        self.total += float(values.sum())
        self.count += values.numel()

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


class Accuracy(Mean):
    """Top-``k`` accuracy: the target is among the ``k`` largest logits (per sample, or per position for
    dense predictions ``(N, C, *S)``)."""

    def __init__(self, k: int = 1) -> None:
        self.k = checks.integer("k", k, low=1)
        super().__init__(lambda task, outputs, batch: correct(task, outputs, batch, self.k))


def correct(task: TaskView, outputs: Any, batch: Batch, k: int = 1) -> Tensor:
    """Per sample (or position), 1.0 where the target is among the ``k`` largest logits, else 0.0."""
    logits, targets = task.primary(outputs), task.targets(batch)
    if k == 1:
        return (logits.argmax(1) == targets).float()
    top = logits.topk(k, dim=1).indices
    return (top == targets.unsqueeze(1)).any(1).float()


class ErrorRate(Metric):
    """Word (``"word"``) or character (``"char"``) error rate over the whole set, as jiwer computes it:
    edit operations summed over all utterances divided by the reference length summed over them."""

    higher_is_better = False

    def __init__(self, unit: str = "word") -> None:
        self.unit = checks.one_of("unit", unit, ("word", "char"))
        self.reset()

    def reset(self) -> None:
        self.hypotheses: list[str] = []
        self.references: list[str] = []

    def update(self, task: TaskView, outputs: Any, batch: Batch) -> None:
        hypotheses, references = task.transcripts(task.primary(outputs), batch)
        self.hypotheses += hypotheses
        self.references += references

    def compute(self) -> float:
        import jiwer

        if not self.references:
            return float("nan")
        measure = jiwer.wer if self.unit == "word" else jiwer.cer
        return float(measure(self.references, self.hypotheses))


class Dice(Metric):
    """Mean Dice of the arg-max segmentation over samples and classes (MONAI ``DiceMetric``); classes
    absent from both prediction and label are skipped (``ignore_empty``)."""

    def __init__(self, include_background: bool = False) -> None:
        self.include_background = include_background
        self.reset()

    def reset(self) -> None:
        self.scores: list[Tensor] = []

    def update(self, task: TaskView, outputs: Any, batch: Batch) -> None:
        logits = task.primary(outputs)
        classes = logits.shape[1]
        prediction = torch.nn.functional.one_hot(logits.argmax(1), classes).movedim(-1, 1)
        labels = torch.nn.functional.one_hot(task.targets(batch).long(), classes).movedim(-1, 1)
        self.scores.append(self.score(prediction, labels).cpu())

    def score(self, prediction: Tensor, labels: Tensor) -> Tensor:
        """Per-sample, per-class scores ``(N, C')`` of one-hot ``(N, C, *S)`` predictions and labels."""
        from monai.metrics import compute_dice

        return compute_dice(prediction, labels, include_background=self.include_background, ignore_empty=True)

    def compute(self) -> float:
        if not self.scores:
            return float("nan")
        return float(torch.nanmean(torch.cat(self.scores)))


class SurfaceDice(Dice):
    """Mean normalised surface Dice (NSD, Nikolov et al. 2021; MONAI ``compute_surface_dice``): the share
    of predicted and true boundary voxels lying within ``tolerance`` voxels of the other boundary, over
    samples and foreground classes; classes absent from the label are skipped."""

    def __init__(self, tolerance: float = 1.0, include_background: bool = False) -> None:
        self.tolerance = checks.number("tolerance", tolerance, low=0.0)
        super().__init__(include_background)

    def score(self, prediction: Tensor, labels: Tensor) -> Tensor:
        import warnings

        from monai.metrics import compute_surface_dice

        classes = labels.shape[1] - (0 if self.include_background else 1)
        with warnings.catch_warnings():  # MONAI warns about every absent class; they are skipped below
            warnings.filterwarnings("ignore", message=".* is all 0, this may result in nan/inf distance")
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            scores = compute_surface_dice(prediction, labels, [self.tolerance] * classes,
                                          include_background=self.include_background)
        present = labels.flatten(2).any(-1)[:, 0 if self.include_background else 1:]
        return torch.where(present, scores, torch.nan)
