"""FLOPs of dense and sparse networks, for inference and for training, in the RigL convention.

Convention: **1 multiply-add = 2 FLOPs** (Evci et al., 2020 count ResNet-50 at 8.2e9 inference FLOPs,
i.e. 4.1e9 multiply-adds). Only convolutions (1D/2D/3D, grouped, depthwise, transposed) and linear
layers are counted; biases, normalisation, activations and pooling are left out (under 1% of a ResNet).

- A convolution costs ``out.numel() * (C_in / groups) * prod(kernel)`` multiply-adds, a transposed
  convolution ``in.numel() * (C_out / groups) * prod(kernel)`` (every input element meets every weight
  of its group; outputs cropped away by ``padding`` are still counted), a linear layer
  ``out.numel() * in_features``. Counts are for one forward pass on the whole ``example_input``: pass a
  batch of one to get the per-example numbers of the papers.
- Sparse inference FLOPs ``f_S`` scale each layer's dense count by its weight density: from the
  engine's mask when the layer is in ``engine.masks``, otherwise the fraction of non-zero weights (a
  dense layer counts fully). Border effects of zero padding are ignored, as in RigL's counter.
- Training FLOPs per step (RigL paper, appendix): forward ``f_S`` plus backward ``2 f_S`` (gradients of
  the inputs and of the weights), so ``3 f_S`` for static sparse training, SET and GMP, ``3 f_D`` for
  dense training. A method that scores by dense gradients (RigL, MEST, GraNet's regrowth) computes the
  weight gradient densely on the step before each update, ``2 f_S + f_D``, once every
  ``dT = update_every`` steps: ``(3 f_S * dT + 2 f_S + f_D) / (dT + 1)`` on average. With ``k`` such
  steps per update (``grad_steps``, e.g. momentum growth) that is ``(3 f_S (dT + 1 - k) + k (2 f_S +
  f_D)) / (dT + 1)`` (:func:`training_flops_per_step`).
- Over a whole run of ``T`` steps (:func:`average_training_flops`): that dense-gradient cost is paid only
  inside the update window ``update_begin <= t < update_end`` (RigL's ``update_end`` defaults to 75% of
  the run); every other step costs ``3 f_S``. Gradual pruning (GMP, GraNet) changes ``f_S`` during the
  run: step ``t`` is priced with the masks of the engine's density schedule
  (:meth:`~dstlib.sparse.engine.SparseEngine.scheduled_density`), each layer taken to move from its
  initial density to its final one in proportion to the schedule's progress:
  ``f_S(t) = f_S,T + (f_S,0 - f_S,T) * (d(t) - d_T) / (d_0 - d_T)``, exact at both ends (for one layer,
  or layers pruned alike, exact throughout). The final masks are the engine's current ones: pass the
  engine after training.

This is the paper's accounting of what sparse kernels could save; a masked engine runs dense kernels, and
its wall-clock time is that of dense training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.selection import unwrap

FLOPS_PER_MULTIPLY_ADD = 2


@dataclass(frozen=True)
class LayerFlops:
    """One conv/linear module: ``dense`` FLOPs of its calls on the example input, its weight ``density``."""

    kind: str
    dense: int
    density: float

    @property
    def sparse(self) -> float:
        return self.dense * self.density


@dataclass(frozen=True)
class FlopsReport:
    """Forward FLOPs on ``example_input``, dense (``f_D``) and sparse (``f_S``), and training FLOPs per step.

    ``layers``: module name -> :class:`LayerFlops`. ``training_step``: FLOPs of one training step on
    ``example_input`` averaged over the engine's run (:func:`average_training_flops`): ``3 f_S`` for a
    static engine, more for dense-gradient methods while they update, along the density schedule for
    gradual pruning.
    """

    dense_forward: int
    sparse_forward: float
    training_step: float
    layers: dict[str, LayerFlops]

    @property
    def dense_training_step(self) -> int:
        """``3 f_D``: one dense training step."""
        return 3 * self.dense_forward


def flops(model: nn.Module, example_input: Tensor | tuple, engine: Any = None) -> FlopsReport:
    """Count FLOPs of ``model(example_input)`` with forward hooks (removed afterwards), in eval mode.

    Args:
        model: any module; its conv and linear layers are counted.
        example_input: a tensor, or a tuple of tensors passed as ``model(*example_input)``.
        engine: a ``dstlib.sparse`` engine (its ``masks`` give the layer densities, its method and
            schedules the training cost; pass it after training), or ``None`` to take densities from the
            weights' zeros and price training as static sparse training.
    """
    model = unwrap(model)
    masks = _engine_masks(engine)
    calls: dict[str, list[int]] = {}
    with _counting_hooks(model, calls):
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        with torch.no_grad():
            model(*args)
    modules = dict(model.named_modules())
    layers = {}
    for name, counts in calls.items():
        density = _density(modules[name].weight, masks.get(_weight(name)))
        layers[name] = LayerFlops(type(modules[name]).__name__, sum(counts), density)
    dense = sum(layer.dense for layer in layers.values())
    sparse = sum(layer.sparse for layer in layers.values())
    training = average_training_flops(_sparse_forward_per_step(engine, layers), dense, **_training_schedule(engine))
    return FlopsReport(dense, sparse, training, layers)


def training_flops_per_step(
    f_sparse: float, f_dense: float, update_every: int | None = None, dense_gradient_steps: int = 1
) -> float:
    """RigL-convention FLOPs of one training step while topology updates happen.

    ``update_every=None`` (no dense gradient: static, SET, GMP; dense training when ``f_S = f_D``):
    ``3 f_S``. Otherwise ``dense_gradient_steps = k`` steps per ``dT = update_every`` compute the weight
    gradient densely: ``(3 f_S (dT + 1 - k) + k (2 f_S + f_D)) / (dT + 1)``, which is RigL's
    ``(3 f_S dT + 2 f_S + f_D) / (dT + 1)`` for ``k = 1``.
    """
    if update_every is None:
        return 3 * f_sparse
    checks.integer("update_every", update_every, low=1)
    checks.integer("dense_gradient_steps", dense_gradient_steps, low=1, high=update_every + 1)
    dt, k = update_every, dense_gradient_steps
    return (3 * f_sparse * (dt + 1 - k) + k * (2 * f_sparse + f_dense)) / (dt + 1)


def average_training_flops(
    f_sparse: float | Sequence[float],
    f_dense: float,
    total_steps: int,
    update_every: int | None = None,
    dense_gradient_steps: int = 1,
    update_begin: int = 0,
    update_end: int | None = None,
) -> float:
    """RigL-convention FLOPs of a training step, averaged over a run of ``T = total_steps`` steps.

    ``f_sparse``: the forward FLOPs ``f_S`` of the masks in use, one number, or ``T`` numbers ``f_S(t)`` for
    the steps ``t = 0 .. T - 1`` (step ``t`` runs with the masks left after ``t`` steps). A step of the
    update window ``update_begin <= t < update_end`` (``None``: to the end) of a dense-gradient method
    (``update_every`` given) costs :func:`training_flops_per_step` ``c(f_S(t))``, every other step
    ``3 f_S(t)``; the mean over the ``T`` steps. For a constant ``f_S`` and ``W`` steps in the window that is
    ``(W c(f_S) + (T - W) 3 f_S) / T``.
    """
    checks.integer("total_steps", total_steps, low=1)
    per_step = np.asarray(f_sparse, dtype=np.float64)
    checks.require(per_step.ndim == 0 or per_step.shape == (total_steps,), "len(f_sparse)", per_step.size,
                   f"total_steps = {total_steps} (or one number for every step)")
    per_step = np.broadcast_to(per_step, (total_steps,))
    if update_every is None:
        return 3 * float(per_step.mean())
    checks.integer("update_begin", update_begin, low=0)
    if update_end is not None:
        checks.integer("update_end", update_end, low=update_begin)
    window = per_step[update_begin:update_end]
    # training_flops_per_step is affine in f_S: its mean over the window is its value at the window's mean f_S
    updating = training_flops_per_step(float(window.mean()) if window.size else 0.0, f_dense, update_every,
                                       dense_gradient_steps)
    return (window.size * updating + 3 * float(per_step.sum() - window.sum())) / total_steps


def multiply_adds(module: nn.Module, inputs: Tensor, output: Tensor) -> int:
    """Multiply-adds of one call of a conv or linear ``module`` mapping ``inputs`` to ``output``."""
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    kernel = math.prod(module.kernel_size)
    if module.transposed:
        return inputs.numel() * (module.out_channels // module.groups) * kernel
    return output.numel() * (module.in_channels // module.groups) * kernel


@contextmanager
def _counting_hooks(model: nn.Module, calls: dict[str, list[int]]) -> Iterator[None]:
    """Eval mode and one forward hook per conv/linear appending its FLOPs to ``calls[name]``; both undone."""
    modes = {module: module.training for module in model.modules()}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.modules.conv._ConvNd):

            def hook(mod: nn.Module, args: tuple, output: Tensor, name: str = name) -> None:
                flops = FLOPS_PER_MULTIPLY_ADD * multiply_adds(mod, args[0], output)
                calls.setdefault(name, []).append(flops)

            handles.append(module.register_forward_hook(hook))
    model.eval()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in modes.items():
            module.training = flag


def _density(weight: Tensor, mask: Tensor | None) -> float:
    source = mask if mask is not None else weight.detach()
    return float(torch.count_nonzero(source)) / source.numel()


def _weight(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _engine_masks(engine: Any) -> dict[str, Tensor]:
    if engine is None:
        return {}
    checks.require(isinstance(getattr(engine, "masks", None), dict), "engine", type(engine),
                   "a dstlib.sparse engine (with a dict attribute 'masks') or None")
    return engine.masks


def _training_schedule(engine: Any) -> dict[str, int | None]:
    """Keyword arguments of :func:`average_training_flops` for ``engine``'s run: its length and, for a method
    that scores by dense gradients (a rule that ``needs_grad``: ``grow`` "gradient"/"momentum", ``prune``
    "mest"), the update period, the dense-gradient steps per update (all steps when ``grad_steps`` exceeds the
    period) and the update window."""
    total_steps = getattr(engine, "total_steps", None)
    if total_steps is None:
        return {"total_steps": 1}  # static: every step costs 3 f_S
    schedule = {"total_steps": total_steps}
    if engine.needs_grad:
        window = engine.drop_fraction
        schedule.update(update_every=engine.update_every,
                        dense_gradient_steps=min(engine.grad_steps, engine.update_every + 1),
                        update_begin=window.begin, update_end=window.end)
    return schedule


def _sparse_forward_per_step(engine: Any, layers: dict[str, LayerFlops]) -> float | list[float]:
    """``f_S`` of the current masks; for a gradual-pruning engine ``f_S(t)`` at each step ``t = 0 .. T - 1``,
    moving from the initial masks' ``f_S,0`` to the current ``f_S,T`` with the scheduled density ``d(t)``
    (module docstring)."""
    current = sum(layer.sparse for layer in layers.values())
    if getattr(engine, "init_density", None) is None or engine.init_density == engine.final_density:
        return current
    initial_densities = engine.initial_densities
    initial = sum(layer.dense * initial_densities.get(_weight(name), layer.density) for name, layer in layers.items())
    start, final = engine.init_density, engine.final_density
    return [current + (initial - current) * (engine.scheduled_density(t) - final) / (start - final)
            for t in range(engine.total_steps)]
