"""The optimisation settings of a run, as one object: optimizer, learning-rate schedule, clipping.

:class:`Optimisation` is what :func:`dstlib.train.fit` takes; it checks its values when it is made, so a
bad setting fails before any work, and :meth:`Optimisation.build` gives the optimizer and the per-step
LR schedule for a model and a number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dstlib import checks

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("constant", "cosine", "step", "poly")
POLY_POWER = 0.9  # nnU-Net's polynomial decay exponent


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


@dataclass(frozen=True)
class Optimisation:
    """How the weights are updated: ``optimizer`` (SGD with ``momentum``/``nesterov``, or AdamW) at peak
    learning rate ``lr`` with ``weight_decay``; the ``lr_schedule`` (``milestones`` and ``gamma`` for
    ``"step"``) after ``warmup_epochs`` of linear warm-up; gradients clipped to ``clip_grad_norm``."""

    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    lr_schedule: str = "cosine"
    milestones: Sequence[float] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        checks.number("lr", self.lr, low=0.0, low_open=True)
        checks.one_of("optimizer", self.optimizer, OPTIMIZERS)
        checks.one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        checks.number("warmup_epochs", self.warmup_epochs, low=0.0)
        if self.clip_grad_norm is not None:
            checks.number("clip_grad_norm", self.clip_grad_norm, low=0.0, low_open=True)

    def build(self, model: nn.Module, total_steps: int, steps_per_epoch: int
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """The optimizer over ``model``'s parameters and its schedule over ``total_steps`` steps."""
        optimizer = make_optimizer(model, self.optimizer, self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay, nesterov=self.nesterov)
        schedule = make_lr_schedule(optimizer, self.lr_schedule, total_steps, milestones=self.milestones,
                                    gamma=self.gamma, warmup_steps=int(self.warmup_epochs * steps_per_epoch))
        return optimizer, schedule

    def clip(self, model: nn.Module) -> None:
        """Clip the gradients of ``model`` to ``clip_grad_norm`` (nothing when it is ``None``)."""
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad_norm)
