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
  f_D)) / (dT + 1)``. This is the paper's accounting of what sparse kernels could save; a masked engine
  runs dense kernels, and its wall-clock time is that of dense training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

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
    ``example_input`` for the engine's method (``3 f_S``, or the RigL average when it scores by dense
    gradients), see :func:`training_flops_per_step`.
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
        engine: a ``dstlib.sparse`` engine (its ``masks`` give the layer densities, its method the
            training cost), or ``None`` to take densities from the weights' zeros and price training
            as static sparse training.
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
    training = training_flops_per_step(sparse, dense, *_dense_gradient_schedule(engine))
    return FlopsReport(dense, sparse, training, layers)


def training_flops_per_step(
    f_sparse: float, f_dense: float, update_every: int | None = None, dense_gradient_steps: int = 1
) -> float:
    """RigL-convention FLOPs of one training step.

    ``update_every=None`` (no dense gradient: static, SET, GMP; dense training when ``f_S = f_D``):
    ``3 f_S``. Otherwise ``dense_gradient_steps = k`` steps per ``dT = update_every`` compute the weight
    gradient densely: ``(3 f_S (dT + 1 - k) + k (2 f_S + f_D)) / (dT + 1)``, which is RigL's
    ``(3 f_S dT + 2 f_S + f_D) / (dT + 1)`` for ``k = 1``.
    """
    if update_every is None:
        return 3 * f_sparse
    for name, value in (("update_every", update_every), ("dense_gradient_steps", dense_gradient_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be an integer >= 1")
    if dense_gradient_steps > update_every + 1:
        raise ValueError(f"dense_gradient_steps={dense_gradient_steps} must be <= update_every + 1")
    dt, k = update_every, dense_gradient_steps
    return (3 * f_sparse * (dt + 1 - k) + k * (2 * f_sparse + f_dense)) / (dt + 1)


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
    if not isinstance(getattr(engine, "masks", None), dict):
        raise ValueError(f"engine={type(engine).__name__} has no dict attribute 'masks'")
    return engine.masks


def _dense_gradient_schedule(engine: Any) -> tuple[int | None, int]:
    """``(update_every, dense-gradient steps per update)`` of an engine that scores by dense gradients
    (``grow`` "gradient"/"momentum" or ``prune`` "mest"), else ``(None, 1)``."""
    uses_gradient = (
        getattr(engine, "grow", None) in ("gradient", "momentum") or getattr(engine, "prune", None) == "mest"
    )
    if not uses_gradient:
        return None, 1
    return engine.update_every, getattr(engine, "grad_steps", 1)
