"""Truly sparse training: weights held as values + indices, products sparse x dense.

The masked engine (:class:`~dstlib.sparse.SparseEngine`) only *simulates* sparsity: the pruned weights are
zeros in dense tensors, so a 95%-sparse step costs what a dense one does. Here a sparse ``nn.Linear``
becomes a :class:`SparseLinear` that stores only its active weights (and a sparse ``nn.Conv2d`` a
:class:`~dstlib.sparse.sparse_conv.SparseConv2d`, on the same :class:`~dstlib.sparse.sparse_weight.SparseWeight`
base):

- ``values``: the ``nn.Parameter`` of shape ``(nnz,)``; any ``torch.optim`` optimizer therefore keeps
  state (momentum, Adam moments) for the active weights only;
- ``indices``: a persistent buffer of shape ``(nnz,)``, the flat positions ``row * in_features + col`` in
  increasing order (row-major, so ``values`` is also the CSR value array); its length is fixed, and a
  topology update rewrites values, indices and optimizer state in place.

Products (kernels chosen by measurement on a 2-core x86 CPU with MKL, torch 2.13; ``gather`` /
``index_add`` value gradients were 3-130x slower than the SDDMM):

- forward ``y = x W^T``: ``torch.sparse.mm(W_csr, x^T)^T`` (``torch.mv`` for a single row);
- input gradient ``dL/dx = g W``: ``torch.sparse.mm(W^T_csr, g^T)^T`` with the transposed CSR structure
  (a permutation of ``values``) kept beside the layout;
- value gradient ``dL/dv_k = sum_b g[b, row_k] x[b, col_k]``: the sampled product
  ``torch.sparse.sampled_addmm(W_csr, g^T, x)`` (an SDDMM: only the ``nnz`` entries are computed).

:class:`TrulySparseEngine` does prune-and-grow on this representation with the masked engine's core
(:class:`~dstlib.sparse.core.EngineCore`: the same rule objects, tie-breaking, step counting and
:class:`~dstlib.sparse.schedules.Schedule`): magnitude or SET prune on ``values``; random growth from the
engine's generator, or RigL growth from the dense gradient (``g^T x``; for a convolution
``torch.nn.grad.conv2d_weight``), which a layer computes in its backward pass *only on the step before an
update*. From the same masks, weights, optimizer and data its masks are identical to the masked engine's and
its weights equal up to float rounding, for an MLP and a CNN (``tests/dst_engine/test_truly_sparse.py``).

Usage::

    import dstlib.sparse.truly_sparse as ts
    masks = ts.initial_masks(model, density=0.05, distribution="uniform", seed=0)   # nn.Linear weights
    # (include=[nn.Linear, nn.Conv2d] for convolutions too)
    model = ts.to_truly_sparse(model, masks)           # a copy: nn.Linear -> SparseLinear, nn.Conv2d -> SparseConv2d
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    engine = ts.TrulySparseEngine(model, optimizer, total_steps=10_000, update_every=100, seed=0)
    for x, y in loader:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step(); engine.step()
    dense_model, masks = ts.to_masked(model)           # back to nn.Linear / nn.Conv2d (+ masks for a SparseEngine)

Or from a running masked engine: ``model = to_truly_sparse(masked_model, engine.masks)``, a new optimizer,
then ``TrulySparseEngine.from_engine(engine, model, optimizer)`` (same rules, schedule, step count and
random stream).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse import criteria, rules
from dstlib.sparse.core import EngineCore
from dstlib.sparse.criteria import FAST_SELECTION_NUMEL as FAST_SELECTION_NUMEL  # noqa: F401 (moved there)
from dstlib.sparse.criteria import grow_highest as grow_highest  # noqa: F401 (moved there)
from dstlib.sparse.distributions import Distribution
from dstlib.sparse.engine import SparseEngine
from dstlib.sparse.export import times_transposed
from dstlib.sparse.granularity import Element
from dstlib.sparse.metrics import layer_report, tensor_bytes
from dstlib.sparse.rules import GrowRule, PruneRule
from dstlib.sparse.schedules import Schedule
from dstlib.sparse.selection import Pattern, owner, unwrap
from dstlib.sparse.sparse_conv import SparseConv2d, check_convertible
from dstlib.sparse.sparse_weight import SparseWeight

if TYPE_CHECKING:
    import pandas as pd

PRUNE_RULES = ("magnitude", "set")
"""``prune=`` values of :class:`TrulySparseEngine`: smallest ``|w|`` (RigL) or SET's sign-aware rule."""
GROW_RULES = ("random", "gradient")
"""``grow=`` values of :class:`TrulySparseEngine`: uniform random (SET) or largest dense ``|grad|`` (RigL)."""


class _SparseMatmul(torch.autograd.Function):
    """``(M, in) x values -> (M, out)``: ``x W^T`` with ``W`` given by the layer's layout and ``values``."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, values: Tensor, layer: SparseLinear) -> Tensor:
        ctx.save_for_backward(rows, values)
        ctx.layer = layer
        return times_transposed(layer.csr(values), rows)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        rows, values = ctx.saved_tensors
        layer = ctx.layer
        grad_t = grad.T  # (out, M)
        grad_rows = grad_values = None
        if ctx.needs_input_grad[0]:
            grad_rows = times_transposed(layer.csr_transposed(values), grad)
        if ctx.needs_input_grad[1]:
            pattern = layer.csr(values.detach())
            grad_values = torch.sparse.sampled_addmm(pattern, grad_t.contiguous(), rows, beta=0.0).values()
        if layer.capture_dense_grad:  # RigL: the dense gradient, only on the step before an update
            layer.store_dense_grad(grad.t().mm(rows))  # as nn.Linear's backward computes weight.grad
        return grad_rows, grad_values, None


class SparseLinear(SparseWeight):
    """``y = x W^T + b`` with only the ``nnz`` active entries of ``W`` (out, in) stored:
    ``(*, in_features) -> (*, out_features)``.

    Args:
        in_features, out_features: the dense shape of ``W`` is ``(out_features, in_features)``.
        indices: int64 ``(nnz,)``, flat positions ``row * in_features + col`` of the active weights
            (any order, no repeats; stored sorted).
        values: float ``(nnz,)`` matching ``indices`` (default zeros).
        bias: float ``(out_features,)`` or ``None``.

    Attributes:
        values: ``nn.Parameter`` ``(nnz,)`` in row-major order. indices: buffer ``(nnz,)`` (persistent).
        capture_dense_grad: when True, the backward pass also stores the dense weight gradient
            ``(out, in)`` in ``dense_grad`` (set by :class:`TrulySparseEngine` before an update).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        indices: Tensor,
        values: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> None:
        checks.integer("in_features", in_features, low=1)
        checks.integer("out_features", out_features, low=1)
        self.in_features, self.out_features = in_features, out_features
        shape = (out_features, in_features)
        super().__init__(shape, shape, shape[::-1], indices, values, bias)

    def _coordinates(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rows, cols = indices // self.in_features, indices % self.in_features
        return rows, cols, cols, rows  # W (out, in) and W^T (in, out)

    @classmethod
    def from_linear(cls, linear: nn.Linear, mask: Tensor) -> SparseLinear:
        """The active weights (``mask`` bool ``(out, in)``) of ``linear``, and its bias."""
        checks.require(tuple(mask.shape) == tuple(linear.weight.shape), "mask.shape", tuple(mask.shape),
                       f"the weight's shape {tuple(linear.weight.shape)}")
        indices = mask.reshape(-1).nonzero().squeeze(1)
        values = linear.weight.detach().reshape(-1)[indices]
        return cls(linear.in_features, linear.out_features, indices, values, linear.bias)

    def to_linear(self) -> nn.Linear:
        """A dense ``nn.Linear`` with the same function (inactive weights 0)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.values.device, dtype=self.values.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.dense_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features)
        if torch.is_grad_enabled() and (self.values.requires_grad or rows.requires_grad):
            out = _SparseMatmul.apply(rows, self.values, self)
        else:  # inference: the bare CSR product
            out = times_transposed(self.csr(self.values.detach()), rows)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.nnz}, "
                f"density={self.density:.4f}, bias={self.bias is not None}")


# ---------------------------------------------------------------------------------------------- converters
def initial_masks(
    model: nn.Module,
    density: float,
    *,
    distribution: Distribution = "erk",
    power_scale: float = 1.0,
    include: Sequence[Pattern] | None = None,
    exclude: Sequence[Pattern] | None = None,
    dense_first: bool = False,
    dense_last: bool = False,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The masks a :class:`~dstlib.sparse.SparseEngine` with the same arguments and ``seed`` would start
    from, for the ``nn.Linear`` weights of ``model`` (``include`` defaults to ``[nn.Linear]``; add ``nn.Conv2d``
    for convolutions). ``model`` is not changed.

    Returns:
        ``{"<module>.weight": bool mask of the weight's shape}`` in registration order.

    Raises:
        ValueError: a bad argument, or a selected parameter that is not the weight of an ``nn.Linear`` or of an
            ``nn.Conv2d`` that :class:`~dstlib.sparse.sparse_conv.SparseConv2d` has (see ``check_convertible``).
    """
    scratch = copy.deepcopy(unwrap(model))
    engine = SparseEngine(
        scratch, torch.optim.SGD(scratch.parameters(), lr=0.0), density=density, distribution=distribution,
        power_scale=power_scale, prune=None, grow=None, include=[nn.Linear] if include is None else include,
        exclude=exclude, dense_first=dense_first, dense_last=dense_last, seed=seed,
    )
    masks = engine.masks
    for name in masks:
        _check_weight(scratch, name, "include", include)
    return masks


def _check_weight(model: nn.Module, name: str, argument: str, value: object) -> None:
    """``name`` must be the weight of an ``nn.Linear`` or of a convertible ``nn.Conv2d`` of ``model``."""
    module, attr = owner(model, name)
    checks.require(type(module) in (nn.Linear, nn.Conv2d) and attr == "weight", argument, value,
                   f"names of nn.Linear or nn.Conv2d weights only (the truly sparse path has no {name!r})")
    if type(module) is nn.Conv2d:
        check_convertible(module, name.rpartition(".")[0] or "model")


def to_truly_sparse(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """A deep copy of ``model`` in which every ``nn.Linear`` (``nn.Conv2d``) whose ``"<module>.weight"`` is a key
    of ``masks`` (bool, the weight's shape) is a :class:`SparseLinear` (:class:`SparseConv2d`) holding the weights
    at the mask's active positions (whatever their values) and the bias. ``model`` is not changed.

    Raises:
        ValueError: a key that names no such weight, or a convolution ``SparseConv2d`` does not have (dilation,
            padding modes other than zeros, string padding), before anything is converted.
    """
    checks.require(len(masks) > 0, "masks", masks, "a non-empty {name: bool mask} map")
    converted = copy.deepcopy(unwrap(model))
    for name in masks:
        checks.require(name.rpartition(".")[2] == "weight", "masks", sorted(masks),
                       f"keys naming weights of {type(converted).__name__}; {name!r} is not one")
        _check_weight(converted, name, "masks", sorted(masks))
    for name, mask in masks.items():
        prefix = name.rpartition(".")[0]
        module = converted.get_submodule(prefix) if prefix else converted
        mask = mask.to(module.weight.device).bool()
        if type(module) is nn.Linear:
            sparse: SparseWeight = SparseLinear.from_linear(module, mask)
        else:
            sparse = SparseConv2d.from_conv(module, mask)
        if prefix:
            parent, _, child = prefix.rpartition(".")
            setattr(converted.get_submodule(parent) if parent else converted, child, sparse)
        else:
            return sparse
    return converted


def to_masked(model: nn.Module) -> tuple[nn.Module, dict[str, Tensor]]:
    """The inverse of :func:`to_truly_sparse`: a deep copy with every :class:`SparseLinear` (:class:`SparseConv2d`)
    back as an ``nn.Linear`` (``nn.Conv2d``; inactive weights 0), and the masks ``{"<module>.weight": bool}`` to
    start a :class:`~dstlib.sparse.SparseEngine` from (``SparseEngine(model, optimizer, density=None,
    masks=masks, ...)``)."""
    converted = copy.deepcopy(unwrap(model))
    if isinstance(converted, SparseWeight):
        return _dense(converted), {"weight": converted.mask()}
    masks = {}
    for name, module in list(converted.named_modules()):
        if isinstance(module, SparseWeight):
            masks[f"{name}.weight"] = module.mask()
            parent, _, child = name.rpartition(".")
            setattr(converted.get_submodule(parent) if parent else converted, child, _dense(module))
    return converted, masks


def _dense(layer: SparseWeight) -> nn.Module:
    return layer.to_linear() if isinstance(layer, SparseLinear) else layer.to_conv()


# ---------------------------------------------------------------------------------------------- the engine
class TrulySparseEngine(EngineCore):
    """Dynamic sparse training of the :class:`SparseLinear` and :class:`SparseConv2d` layers of a model, driven by
    ``engine.step()`` after each ``optimizer.step()`` (the masked engine's protocol and step counting).

    Every ``update_every`` optimizer steps ``t`` with ``drop_fraction(t) > 0`` each layer drops
    ``drop_count(f, nnz)`` active weights (``prune``) and grows as many (``grow``); the count of every layer
    never changes. Regrown weights start at ``grow_init`` with zeroed optimizer state; a position dropped
    and regrown in the same update keeps its value and state. Steps skipped by ``GradScaler`` do not count.
    Single process only: unlike the masked engine it does not synchronise topologies across DDP ranks.

    The keywords ``update_every``, ``total_steps``, ``update_begin``, ``update_end``, ``drop_fraction``,
    ``drop_schedule``, ``drop_fraction_min``, ``grow_init`` and ``seed`` mean what they mean for
    :class:`~dstlib.sparse.SparseEngine` (``update_end`` defaults to ``0.75 * total_steps``). The random
    stream of ``seed`` is the masked engine's after it drew the initial masks of these layers, so
    ``initial_masks(..., seed=s)`` and this engine with ``seed=s`` take the same random decisions as a
    masked engine built with ``seed=s``.

    Args:
        model: holds the truly sparse layers (see :func:`to_truly_sparse`).
        optimizer: any ``torch.optim`` optimizer holding every layer's ``values``.
        prune: ``"magnitude"`` or ``"set"`` (:data:`PRUNE_RULES`), or such a rule object.
        grow: ``"random"`` or ``"gradient"`` (:data:`GROW_RULES`), or such a rule object.
        schedule: a :class:`~dstlib.sparse.schedules.Schedule` (a masked engine's ``engine.schedule``) in place
            of ``update_every`` ... ``drop_fraction_min``, which are then ignored; ``total_steps`` must be
            ``None`` with it.

    Raises:
        ValueError: any bad argument, before the model or optimizer is touched.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        prune: str | PruneRule = "magnitude",
        grow: str | GrowRule = "gradient",
        update_every: int = 100,
        total_steps: int | None = None,
        update_begin: int = 0,
        update_end: int | None = None,
        drop_fraction: float = 0.3,
        drop_schedule: str = "cosine",
        drop_fraction_min: float = 0.0,
        schedule: Schedule | None = None,
        grow_init: float = 0.0,
        seed: int = 0,
    ) -> None:
        prune_rule = rules.make("prune", prune, rules.PRUNE_RULES, PRUNE_RULES)
        grow_rule = rules.make("grow", grow, rules.GROW_RULES, GROW_RULES)
        if schedule is None:
            schedule = Schedule.build(
                update_every=update_every, total_steps=total_steps, update_begin=update_begin, update_end=update_end,
                drop_fraction=drop_fraction, drop_schedule=drop_schedule, drop_fraction_min=drop_fraction_min,
            )
        else:
            checks.require(total_steps is None, "total_steps", total_steps, "None with a schedule (it has its own)")
        super().__init__(model, optimizer, prune=prune_rule, grow=grow_rule, schedule=schedule, grow_init=grow_init,
                         seed=seed)
        self._layers = {name: m for name, m in self.model.named_modules() if isinstance(m, SparseWeight)}
        checks.require(len(self._layers) > 0, "model", type(self.model),
                       "a model with SparseLinear or SparseConv2d layers (convert it with to_truly_sparse first)")
        self._check_optimizer_holds({f"{name}.values": layer.values for name, layer in self._layers.items()})
        for layer in self._layers.values():  # replay the masked engine's initial-mask draws
            criteria.random_scores(layer.weight_shape, self._generator, "cpu")
        self._arm_capture()
        self._attach()

    @classmethod
    def from_engine(cls, engine: SparseEngine, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrulySparseEngine:
        """Continue a masked engine's run on the truly sparse path: ``model`` is
        ``to_truly_sparse(engine.model, engine.masks)`` (or any model with those layers), ``optimizer`` a new
        optimizer over it. Rules, schedule, ``grow_init``, step counters and random stream are the engine's.
        (Optimizer state is not carried over: build the sparse model before training, or accept fresh state.)

        Raises:
            ValueError: the engine uses what the truly sparse path does not have (another granularity,
                gradual pruning, MEST, momentum growth, gradients over several steps, unfired-first).
        """
        checks.require(isinstance(engine, SparseEngine), "engine", type(engine), "a dstlib.sparse.SparseEngine")
        checks.one_of("engine.prune", engine.prune, PRUNE_RULES)
        checks.one_of("engine.grow", engine.grow, GROW_RULES)
        checks.require(type(engine.granularity) is Element, "engine.granularity", engine.granularity, "Element()")
        checks.require(engine.init_density is None, "engine.init_density", engine.init_density,
                       "None (no gradual pruning on the truly sparse path)")
        checks.require(engine.grad_steps == 1, "engine.grad_steps", engine.grad_steps, "1")
        checks.require(not engine.unfired_first, "engine.unfired_first", engine.unfired_first, "False")
        new = cls(model, optimizer, prune=engine.prune_rule, grow=engine.grow_rule, schedule=engine.schedule,
                  grow_init=engine.grow_init)
        names = [f"{name}.weight" for name in new._layers]
        checks.require(names == list(engine.masks), "model", names,
                       f"truly sparse layers for exactly the engine's sparse weights {list(engine.masks)}")
        new._load_clock_state(engine._clock_state())
        new._arm_capture()
        return new

    # ------------------------------------------------------------------ per step
    def _arm_capture(self) -> None:
        """Ask the layers for the dense gradient in the backward pass of the next step if an update follows."""
        t = self._optimizer_steps + 1
        capture = self.grow_rule.needs_grad and self.schedule.last_update(t) == t and self.schedule.fraction(t) > 0
        for layer in self._layers.values():
            layer.capture_dense_grad = capture
            if not capture:
                layer.dense_grad = None

    def step(self) -> bool:
        """Call once after each ``optimizer.step()``: the update when one is due (True if the topology changed),
        then the layers are told whether to capture the dense gradient in the next backward pass."""
        updated = super().step()
        self._arm_capture()
        return updated

    # ------------------------------------------------------------------ topology update
    def _update(self, t: int) -> bool:
        fraction = self.schedule.fraction(t)
        if fraction == 0.0:
            return False
        if self.grow_rule.needs_grad:
            missing = [name for name, layer in self._layers.items() if layer.dense_grad is None]
            if missing:
                raise RuntimeError(
                    f"grow={self.grow!r} needs the dense gradient of the step before the update, but layers {missing} "
                    "have none: run forward and backward between optimizer.zero_grad() and optimizer.step(), and "
                    "call engine.step() after every optimizer.step()"
                )
        with torch.no_grad():
            for layer in self._layers.values():
                self._exchange(layer, fraction)
        return True

    def _exchange(self, layer: SparseWeight, fraction: float) -> None:
        """Prune ``layer``'s ``(nnz,)`` values, grow as many positions of its dense ``weight_shape``; active
        positions keep value and optimizer state, new ones start at ``grow_init`` with zeroed state."""
        values = layer.values.detach()
        everything = torch.ones(layer.nnz, dtype=torch.bool, device=values.device)
        weight = values if self.prune_rule.signed else values.abs()
        kept = self.prune_rule.drop(weight, None, everything, layer.nnz, fraction)
        n_grow = layer.nnz - int(kept.sum())
        shape = layer.weight_shape
        pruned = torch.zeros(layer.weight_numel, dtype=torch.bool, device=values.device)
        pruned[layer.indices[kept]] = True
        grad = layer.dense_grad.abs_() if self.grow_rule.needs_grad else None  # the layer's buffer, dropped below
        scores = self.grow_rule.scores(grad, shape, self._generator, values.device)
        new_mask = criteria.grow_highest(scores, pruned.view(shape), n_grow)
        new_indices = new_mask.view(-1).nonzero().squeeze(1)
        position = torch.searchsorted(new_indices, layer.indices).clamp(max=layer.nnz - 1)
        stays = new_indices[position] == layer.indices
        source, target = stays.nonzero().squeeze(1), position[stays]
        for tensor in (values, *self._state_tensors(layer.values)):
            moved = torch.zeros_like(tensor)
            moved[target] = tensor[source]
            tensor.copy_(moved)
        if self.grow_init != 0:
            fresh = torch.ones(layer.nnz, dtype=torch.bool, device=values.device)
            fresh[target] = False
            values.masked_fill_(fresh, self.grow_init)
        layer.set_topology(new_indices, values)
        layer.dense_grad = None

    # ------------------------------------------------------------------ inspection
    @property
    def layers(self) -> dict[str, SparseWeight]:
        """``{module name: SparseLinear or SparseConv2d}`` managed by the engine."""
        return dict(self._layers)

    @property
    def masks(self) -> dict[str, Tensor]:
        """``{"<module>.weight": bool, the weight's shape}`` (dense copies; the masked engine's naming)."""
        return {f"{name}.weight": layer.mask() for name, layer in self._layers.items()}

    def dense_weights(self) -> dict[str, Tensor]:
        """``{"<module>.weight": float, the weight's shape}``: the weights as the masked model holds them (copies)."""
        return {f"{name}.weight": layer.dense_weight() for name, layer in self._layers.items()}

    @property
    def density(self) -> float:
        """Fraction of active weights over all sparse layers (constant)."""
        nnz = sum(layer.nnz for layer in self._layers.values())
        return nnz / sum(layer.weight_numel for layer in self._layers.values())

    def memory_bytes(self) -> int:
        """Bytes of the sparse layers' index structures (values, bias and optimizer state excluded)."""
        return tensor_bytes([tensor for layer in self._layers.values() for tensor in layer.layout_tensors()])

    def report(self) -> pd.DataFrame:
        """Per-layer table ``name, shape, numel, nnz, density`` (``attrs``: ``step``, ``memory_bytes``)."""
        frame = layer_report(self.masks)
        frame.attrs.update(step=self.steps, memory_bytes=self.memory_bytes())
        return frame

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(layers={len(self._layers)}, density={self.density:.4f}, prune={self.prune!r}, "
                f"grow={self.grow!r}, update_every={self.update_every}, steps={self.steps})")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Step counters, RNG state and every layer's indices (also in ``model.state_dict()``)."""
        return {
            **self._clock_state(),
            "indices": {name: layer.indices.clone() for name, layer in self._layers.items()},
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` output (after building model, optimizer and engine as in the original
        run; before or after loading the model's and optimizer's own state).

        Raises:
            ValueError: the checkpoint's layers or sizes differ from this engine's.
        """
        names = list(self._layers)
        checks.require(list(state["indices"]) == names, "list(state['indices'])", list(state["indices"]),
                       f"this engine's sparse layers {names}")
        for name, layer in self._layers.items():
            size = state["indices"][name].numel()
            checks.require(size == layer.nnz, f"state['indices'][{name!r}].numel()", size, f"{layer.nnz} (nnz)")
        with torch.no_grad():
            for name, layer in self._layers.items():
                layer.indices.copy_(state["indices"][name])
                layer._rebuild_layout()
        self._load_clock_state(state)
        self._arm_capture()

    def remove(self) -> None:
        """Detach the engine (remove its optimizer hook); the layers stay sparse."""
        super().remove()
        for layer in self._layers.values():
            layer.capture_dense_grad, layer.dense_grad = False, None
