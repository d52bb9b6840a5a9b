"""How hard is each training sample? EL2N and GraNd (Paul et al. 2021), forgetting events (Toneva et al.
2019), and the hardest fraction of a training set by a score.

* **EL2N** of a sample is ``|| softmax(f(x)) - onehot(y) ||_2`` early in training: large when the model is
  still far from the label. (The hard-sample paper's code uses the squared norm; the ranking is the same.)
* **GraNd** is the norm of the sample's loss gradient with respect to all parameters.
* **Forgetting events** count the epochs at which a sample goes from classified correctly to incorrectly;
  a sample never classified correctly counts as infinitely forgotten.

EL2N and correctness come from the training forward passes themselves, recorded by a
:class:`~dstlib.callbacks.Record` (:data:`RECORDERS`), so scoring costs no extra pass; :func:`scores_from_training`
trains a few short runs and averages over their seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.callbacks import Record
from dstlib.metrics import correct
from dstlib.tasks import Batch, Task
from dstlib.train import fit


def el2n(logits: Tensor, targets: Tensor) -> Tensor:
    """EL2N scores ``(N,)`` of logits ``(N, C)`` for integer targets ``(N,)``."""
    probabilities = logits.detach().float().softmax(dim=1)
    return (probabilities - F.one_hot(targets, probabilities.shape[1]).float()).norm(dim=1)


def grand(model: nn.Module, inputs: Tensor, targets: Tensor,
          loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> Tensor:
    """GraNd scores ``(N,)``: the L2 norm of each sample's loss gradient over every trainable parameter,
    with the model in eval mode (per-sample gradients by ``torch.func.vmap``)."""
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def sample_loss(parameters: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        output = functional_call(model, (parameters, buffers), (x.unsqueeze(0),))
        return loss(output, y.unsqueeze(0))

    was_training = model.training
    model.eval()
    try:
        grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, inputs, targets)
    finally:
        model.train(was_training)
    return torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))


def forgetting_events(correct: Tensor) -> Tensor:
    """Forgetting events ``(N,)`` from per-epoch correctness ``(epochs, N)`` (1 correct, 0 wrong, NaN when
    the sample was not trained on that epoch): the number of correct-to-wrong transitions between the
    epochs a sample was seen; ``inf`` for a sample never classified correctly."""
    if correct.dim() != 2:
        raise ValueError(f"correct.shape={tuple(correct.shape)}: allowed (epochs, N)")
    events = torch.zeros(correct.shape[1])
    previous = torch.full((correct.shape[1],), float("nan"))
    for row in correct.float():
        seen = ~row.isnan()
        events += (seen & (previous == 1) & (row == 0)).float()
        previous = torch.where(seen, row, previous)
    learned = (correct == 1).any(dim=0)
    return torch.where(learned, events, torch.full_like(events, math.inf))


def hardest(scores: Tensor, fraction: float) -> Tensor:
    """Indices of the ``round(fraction * N)`` highest scores (at least one), hardest first; ties keep
    the lower index first, so the selection is deterministic."""
    checks.number("fraction", fraction, low=0.0, high=1.0, low_open=True)
    count = max(1, round(fraction * len(scores)))
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:count]


def _el2n_record(task: Task, outputs: Any, batch: Batch) -> Tensor:
    return el2n(task.primary(outputs), task.targets(batch))


# Per-sample values recorded in the training forward pass (:class:`dstlib.callbacks.Record`).
RECORDERS = {"el2n": _el2n_record, "correct": correct}


def scores_from_training(build_model: Callable[[], nn.Module], data: Sequence[Tensor], *, seeds: Sequence[int],
                         epochs: int, **fit_options: Any) -> dict[str, Tensor]:
    """Difficulty scores ``{name: (N,)}`` of the samples of ``data`` from short dense runs, one per seed:

    * ``"el2n"``: the EL2N of each sample in the last epoch's training pass, averaged over the seeds
      (Paul et al. score early in training and average over initialisations);
    * ``"forgetting"``: forgetting events over the epochs, averaged over the seeds (``inf`` when a run
      never learned the sample).

    ``fit_options`` go to :func:`dstlib.train.fit` (``batch_size``, ``optim``, ...).
    """
    checks.integer("epochs", epochs, low=1)
    if len(seeds) == 0:
        raise ValueError("seeds=[]: allowed a non-empty list of integers")
    el2n_rows, forgetting_rows = [], []
    for seed in seeds:
        result = fit(build_model, data, epochs=epochs, seed=seed, callbacks=[Record(RECORDERS)], **fit_options)
        el2n_rows.append(result.per_sample["el2n"][-1])
        forgetting_rows.append(forgetting_events(result.per_sample["correct"]))
    return {"el2n": torch.stack(el2n_rows).mean(0), "forgetting": torch.stack(forgetting_rows).mean(0)}
