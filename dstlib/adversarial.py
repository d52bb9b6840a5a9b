"""Projected gradient descent (PGD, Madry et al. 2018) in plain PyTorch: the L-infinity attack, the
perturbation that turns :func:`dstlib.train.fit` into adversarial training, and robust accuracy.

PGD maximises the task loss inside the ball ``||delta||_inf <= eps`` around an input ``x`` in ``[0, 1]``:
start at a uniform random point of the ball (``random_start``) or at ``x``, take ``steps`` signed-gradient
ascent steps of size ``step_size``, and after each project back onto the ball and the valid pixel range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dstlib import checks, metrics
from dstlib.tasks import Batch, Task, as_float


@dataclass(frozen=True)
class PGD:
    """An L-infinity PGD attack; ``PGD(...)(model, batch, task, generator)`` returns the attacked batch.

    As a :class:`~dstlib.callbacks.Perturbation` it is called with ``(model, batch, task)`` and draws
    its random start from the torch default generator (seeded by ``fit``). The model is put in eval
    mode while attacking (BatchNorm statistics are not touched) and restored afterwards; only the
    input receives gradients.
    """

    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    random_start: bool = True
    clip: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        checks.number("eps", self.eps, low=0.0)
        checks.number("step_size", self.step_size, low=0.0)
        checks.integer("steps", self.steps, low=0)

    def __call__(self, model: nn.Module, batch: Batch, task: Task,
                 generator: torch.Generator | None = None) -> Batch:
        x = task.model_inputs(batch)[0].detach()
        low, high = self.clip
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            adversarial = (x + (2 * noise - 1) * self.eps).clamp(low, high)
        else:
            adversarial = x.clone()
        was_training = model.training
        model.eval()
        try:
            for _ in range(self.steps):
                leaf = adversarial.detach().requires_grad_(True)
                # the model reads a non-leaf view of the leaf: module hooks on its input (FlopCounterMode's,
                # in a fast dev run's first step) cannot follow autograd.grad to a leaf
                attacked = task.with_input(batch, leaf.view_as(leaf))
                loss = task.loss(as_float(model(*task.model_inputs(attacked))), attacked).sum()
                (grad,) = torch.autograd.grad(loss, leaf)
                step = adversarial.detach() + self.step_size * grad.sign()
                adversarial = torch.minimum(torch.maximum(step, x - self.eps), x + self.eps).clamp(low, high)
        finally:
            model.train(was_training)
        return task.with_input(batch, adversarial.detach())


def robust_accuracy(model: nn.Module, inputs: Tensor, targets: Tensor, attack: PGD, task: Task, *,
                    batch_size: int = 256, seed: int = 0) -> float:
    """Accuracy of ``model`` on PGD-attacked ``inputs`` (eval mode, a seeded random start)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    hits = 0
    for start in range(0, len(inputs), batch_size):
        chunk = slice(start, start + batch_size)
        batch = task.as_dict((inputs[chunk].to(device), targets[chunk].to(device)))
        attacked = attack(model, batch, task, generator)
        with torch.no_grad():
            model.eval()
            hits += int(metrics.correct(task, model(*task.model_inputs(attacked)), attacked).sum())
    model.train(was_training)
    return hits / max(len(inputs), 1)
