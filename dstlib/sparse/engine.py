"""The sparsity engine: masks kept as module buffers, enforced after every optimizer step, updated on
schedule.

Usage with any training loop and any ``torch.optim`` optimizer::

    engine = dstlib.sparse.RigL(model, optimizer, density=0.1, total_steps=10_000)
    for x, y in loader:
        optimizer.zero_grad()            # before backward, as usual: the dense gradient must survive
        loss_fn(model(x), y).backward()  # until engine.step() (RigL grows where |grad| is largest)
        optimizer.step()                 # a post-hook zeroes pruned weights and their optimizer state
        engine.step()                    # topology update when one is due; True if it happened

How ``engine.step()`` knows an optimizer step happened: the engine registers an optimizer *step post-hook*
that counts real optimizer steps and re-applies the masks. ``GradScaler.step`` does not call
``optimizer.step()`` when gradients are non-finite, so a skipped step neither counts nor triggers an update;
``engine.step()`` does nothing when no optimizer step happened since its last call.

Masks are persistent buffers named ``<param>_mask`` on the owning module (``conv1.weight_mask`` beside the
unchanged ``conv1.weight``), in the weight's dtype (so the per-step masking is one ``torch._foreach_mul_``
over all sparse weights and their optimizer state). They follow ``.to(device)`` and land in
``model.state_dict()``. Gradients are not masked: after ``optimizer.step()`` the weights are zeroed in place.

Regrowth: positions inactive before an update and active after it start at ``grow_init`` (default 0) with
zeroed optimizer state; a position dropped and regrown in the same update is simply kept.

Distributed: random draws come from a CPU generator seeded identically on every rank (rank 0's seed is
broadcast at construction); gradient scores are averaged over ranks (one all-reduce per update) and the new
masks are broadcast from rank 0 (one broadcast per update). The mask buffers are listed in the model's
``_ddp_params_and_buffers_to_ignore``, so a DDP wrapper built after the engine does not re-broadcast them at
every forward.

Checkpoints: build model, optimizer and engine as in the original run, then load the three state dicts
(the masks are in both ``model.state_dict()`` and ``engine.state_dict()``).

Counting: ``t`` is the number of optimizer steps taken. A topology update happens at every ``t`` that is a
multiple of ``update_every``; its prune-and-regrow part only while ``update_begin <= t < update_end``, its
gradual-pruning part (GraNet, GMP) from ``prune_begin`` on until the final density is reached.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse import criteria, distributed, rules
from dstlib.sparse.core import EngineCore
from dstlib.sparse.distributions import (
    Distribution,
    allocate,
    check_density,
    check_distribution,
    layer_densities,
)
from dstlib.sparse.granularity import Element, make_granularity
from dstlib.sparse.metrics import itop_rate, layer_report, tensor_bytes
from dstlib.sparse.rules import GrowRule, PruneRule
from dstlib.sparse.schedules import Schedule, cubic_density, stop_step
from dstlib.sparse.selection import Pattern, owner, sparse_parameters

MASK_SUFFIX = "_mask"

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class _Layer:
    """One sparse parameter: where it lives and the active-unit count of each of its groups."""

    name: str
    module: nn.Module
    attr: str
    groups: list[slice]
    counts: list[int]

    @property
    def weight(self) -> nn.Parameter:
        return self.module._parameters[self.attr]

    @property
    def mask(self) -> Tensor:
        return self.module._buffers[self.attr + MASK_SUFFIX]


class SparseEngine(EngineCore):
    """Dynamic (or static) sparse training of a model's weights, driven by ``engine.step()``.

    Presets (:class:`~dstlib.sparse.SET`, :class:`~dstlib.sparse.RigL`, ...) fix ``prune``, ``grow`` and
    the schedules; use this class directly for other combinations.

    Args:
        model: the network; a DDP / ``torch.compile`` wrapper is unwrapped (names are the inner module's).
        optimizer: any ``torch.optim.Optimizer`` holding every sparse parameter.
        density: fraction of weights kept in the sparse layers, in ``(0, 1]`` (the *final* density with
            gradual pruning); ``None`` only with a custom ``distribution`` map or fixed ``masks``.
        distribution: ``"uniform"``, ``"er"``, ``"erk"`` or ``{name: density}``
            (see :mod:`dstlib.sparse.distributions`).
        power_scale: ER/ERK exponent (1 = the papers').
        prune: ``"magnitude"``, ``"set"``, ``"mest"``, another name of
            :data:`~dstlib.sparse.rules.PRUNE_RULES`, a rule object, or ``None`` (no prune-and-regrow).
        grow: ``"random"``, ``"gradient"``, ``"momentum"``, another name of
            :data:`~dstlib.sparse.rules.GROW_RULES`, a rule object, or ``None`` (with ``prune=None``).
        granularity: ``"element"``, ``"kernel"``, ``"region"`` or a granularity object
            (:mod:`dstlib.sparse.granularity`).
        update_every: optimizer steps between topology updates (default 100).
        update_every_epochs, steps_per_epoch: alternative to ``update_every`` (``round(E * S)`` steps).
        total_steps: optimizer steps of the whole run; required unless the engine is static.
        update_begin, update_end: prune-and-regrow window ``[begin, end)`` in steps; ``update_end`` defaults
            to ``0.75 * total_steps`` (RigL); no prune-and-regrow at or after it.
        drop_fraction: fraction of a group's active units replaced per update (at ``update_begin``).
        drop_schedule: ``"constant"``, ``"cosine"`` or ``"linear"`` decay to ``drop_fraction_min`` at
            ``update_end`` (:class:`~dstlib.sparse.schedules.DropFraction`).
        drop_fraction_min: floor of the decay (the forks' ``eta_min``, 0.005 or 0.001; RigL 0).
        grow_init: value of regrown weights (their optimizer state is zeroed); default 0.
        unfired_first: ITOP's regrow-unfired-first: never-active positions are grown before others.
        grad_steps: optimizer steps whose dense gradients feed the gradient scores of an update (mean, or EMA
            for ``grow="momentum"``); default 1 (the current mini-batch), 20 for ``"momentum"``.
        momentum: EMA coefficient of ``grow="momentum"``: ``m <- momentum * m + (1 - momentum) * g``
            (default 0.9; :class:`~dstlib.sparse.rules.MomentumGrow`).
        grad_coefficient: MEST's ``lambda`` in ``|w| + lambda * |g|`` (default 1;
            :class:`~dstlib.sparse.rules.MESTPrune`).
        memory_bound: MEST's soft memory bound ``b``: each update first grows ``round(b * n)`` extra units
            (``n`` = active units of the group), then prunes ``drop_count + round(b * n)`` by the MEST score
            (freshly grown units included), then grows back to ``n``. 0 (default) = prune first (plain MEST).
            ``momentum``, ``grad_coefficient`` and ``memory_bound`` build the rule named by a string; ``None``
            (the rule's default) with other rules and with rule objects.
        init_density: gradual pruning (GraNet, GMP): start at this density (distributed as ``distribution``)
            and prune globally by magnitude, on the cubic schedule, to ``density``. ``None`` = no gradual
            pruning.
        prune_begin, prune_end: cubic schedule window in steps; ``prune_end`` defaults to
            ``0.75 * total_steps``.
        masks: fixed initial masks ``{name: bool tensor shaped like the weight}``; their keys define the
            sparse parameters (``include`` and friends are then not allowed). A ``density`` given with them
            must match their global density to within one weight per layer.
        include, exclude, dense_first, dense_last: which parameters are sparse
            (:func:`~dstlib.sparse.selection.sparse_parameters`).
        seed: integer in ``[0, 2**40)`` seeding the engine's CPU generator for random draws, identical on
            every rank (rank 0's seed is broadcast): :func:`~dstlib.sparse.criteria.mask_generator`.

    Raises:
        ValueError: any bad argument, before the model or optimizer is touched.

    Attributes:
        model: the (unwrapped) model. optimizer: the optimizer. granularity: the granularity object.
        schedule: the :class:`~dstlib.sparse.schedules.Schedule` (``update_every``, ``total_steps`` and
        ``drop_fraction``, the ``DropFraction`` or ``None``, are also attributes).
        prune_rule, grow_rule: the rule objects (``prune`` and ``grow``: their names).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        density: float | None,
        distribution: Distribution = "erk",
        power_scale: float = 1.0,
        prune: str | PruneRule | None = "magnitude",
        grow: str | GrowRule | None = "gradient",
        granularity: str | Element = "element",
        update_every: int | None = None,
        update_every_epochs: float | None = None,
        steps_per_epoch: int | None = None,
        total_steps: int | None = None,
        update_begin: int = 0,
        update_end: int | None = None,
        drop_fraction: float = 0.3,
        drop_schedule: str = "cosine",
        drop_fraction_min: float = 0.0,
        grow_init: float = 0.0,
        unfired_first: bool = False,
        grad_steps: int | None = None,
        momentum: float | None = None,
        grad_coefficient: float | None = None,
        memory_bound: float | None = None,
        init_density: float | None = None,
        prune_begin: int = 0,
        prune_end: int | None = None,
        masks: Mapping[str, Tensor] | None = None,
        include: Sequence[Pattern] | None = None,
        exclude: Sequence[Pattern] | None = None,
        dense_first: bool = False,
        dense_last: bool = False,
        seed: int = 0,
    ) -> None:
        # ---- validate everything before touching the model ----
        self._check_selection(density, distribution, masks, include, exclude, dense_first, dense_last)
        checks.number("power_scale", power_scale, low=0)
        prune_rule = rules.make("prune", prune, rules.PRUNE_RULES, grad_coefficient=grad_coefficient,
                                memory_bound=memory_bound)
        grow_rule = rules.make("grow", grow, rules.GROW_RULES, momentum=momentum)
        checks.require((prune is None) == (grow is None), "grow", grow,
                       f"{'None' if prune is None else 'a rule'} with prune={prune!r}: prune-and-regrow needs both "
                       "rules (or neither)")
        self.granularity = make_granularity(granularity)
        schedule = Schedule.build(
            update_every=update_every, update_every_epochs=update_every_epochs, steps_per_epoch=steps_per_epoch,
            total_steps=total_steps, regrow=prune is not None, update_begin=update_begin,
            update_end=update_end, drop_fraction=drop_fraction, drop_schedule=drop_schedule,
            drop_fraction_min=drop_fraction_min,
        )
        if grad_steps is None:
            grad_steps = 1 if grow_rule is None else grow_rule.grad_steps
        self.grad_steps = checks.integer("grad_steps", grad_steps, low=1)
        self.final_density = density
        self.init_density = None
        if init_density is not None:
            checks.require(density is not None, "density", density,
                           "a final density in (0, 1] with gradual pruning (init_density)")
            checks.integer("total_steps", total_steps, low=1)
            self.init_density = check_density("init_density", init_density)
            checks.require(self.init_density >= density, "init_density", init_density,
                           f"a density >= density={density!r}")
            self.prune_begin = checks.integer("prune_begin", prune_begin, low=0)
            self.prune_end = stop_step(total_steps, prune_end)
            checks.require(checks.is_number(self.prune_end, low=prune_begin, low_open=True, integer=True), "prune_end",
                           self.prune_end, f"an integer > prune_begin={prune_begin}")
        self.unfired_first = bool(unfired_first)
        super().__init__(model, optimizer, prune=prune_rule, grow=grow_rule, schedule=schedule, grow_init=grow_init,
                         seed=seed)

        # ---- which parameters, and whether the optimizer holds them ----
        if masks is not None:
            params = self._params_for_masks(masks)
        else:
            params = sparse_parameters(
                self.model, include=include, exclude=exclude, dense_first=dense_first, dense_last=dense_last
            )
        self._check_optimizer_holds(params)
        for name, param in params.items():
            self.granularity.check(name, param.shape)
            module, attr = owner(self.model, name)
            checks.require(not hasattr(module, attr + MASK_SUFFIX), "model", type(self.model),
                           f"a model without masks, but {name!r} already has a {attr + MASK_SUFFIX!r} attribute: "
                           "is another engine managing this model? Call its remove() first")
        if masks is None:
            check_distribution(distribution, list(params))

        # ---- initial masks ----
        self._layers = [
            _Layer(name, *owner(self.model, name), self.granularity.groups(self._unit_shape(p)), [])
            for name, p in params.items()
        ]
        if masks is not None:
            initial = [masks[layer.name].to(layer.weight.device).bool() for layer in self._layers]
            self._check_masks_density(initial, density)
        else:
            start = density if self.init_density is None else self.init_density
            initial = self._initial_masks(distribution, start, power_scale)
        distributed.broadcast_(initial)
        for layer, mask in zip(self._layers, initial, strict=True):
            weight = layer.weight
            dtype = weight.dtype if weight.is_floating_point() else torch.float32
            layer.module.register_buffer(layer.attr + MASK_SUFFIX, mask.to(dtype), persistent=True)
        self._recount()
        self._unit_sizes = [self.granularity.unit_size(layer.weight.shape) for layer in self._layers]
        self._capacity = sum(cap * self._unit_sizes[i] for (i, _), cap in self._capacities().items())
        self._fired = [mask.clone() for mask in initial]
        self._initial_densities = {
            layer.name: float(mask.float().mean()) for layer, mask in zip(self._layers, initial, strict=True)
        }
        self._accumulators: list[Tensor] | None = None
        self._accumulated = 0
        if self.needs_grad and self.grad_steps > 1:
            self._accumulators = [torch.zeros_like(layer.weight) for layer in self._layers]
        self._ignore_in_ddp(True)
        self.apply_masks()
        self._attach()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_selection(
        density: float | None,
        distribution: Distribution,
        masks: Mapping[str, Tensor] | None,
        include: Sequence[Pattern] | None,
        exclude: Sequence[Pattern] | None,
        dense_first: bool,
        dense_last: bool,
    ) -> None:
        """Check ``density`` and ``distribution`` against the two ways of choosing the sparse parameters: fixed
        ``masks`` (their keys) or the selection keywords."""
        if masks is not None:
            if density is not None:
                check_density("density", density)
            for name, value in (("include", include), ("exclude", exclude)):
                checks.require(value is None, name, value, "None with fixed masks (their keys select the sparse "
                               "parameters)")
            for name, value in (("dense_first", dense_first), ("dense_last", dense_last)):
                checks.require(not value, name, value, "False with fixed masks (their keys select the sparse "
                               "parameters)")
        elif density is None:
            checks.require(isinstance(distribution, Mapping), "density", density,
                           "a density in (0, 1] (None only with a {name: density} distribution map)")
        else:
            check_density("density", density)
        check_distribution(distribution)

    def _params_for_masks(self, masks: Mapping[str, Tensor]) -> dict[str, nn.Parameter]:
        named = dict(self.model.named_parameters())
        checks.require(len(masks) > 0, "masks", masks, "a non-empty {name: bool mask} map (nothing to sparsify)")
        params = {}
        for name, mask in masks.items():
            checks.require(name in named, "masks", sorted(masks),
                           f"keys naming parameters of {type(self.model).__name__}; {name!r} is not one")
            checks.require(tuple(mask.shape) == tuple(named[name].shape), f"masks[{name!r}].shape",
                           tuple(mask.shape), f"the parameter's shape {tuple(named[name].shape)}")
            params[name] = named[name]
        return params

    def _check_masks_density(self, masks: Sequence[Tensor], density: float | None) -> None:
        if density is None:
            return
        nnz, total = sum(int(m.sum().item()) for m in masks), sum(m.numel() for m in masks)
        checks.require(abs(nnz - density * total) <= len(masks), "density", density,
                       f"None or the density of the given masks ({nnz / total:.6f}), which it must match to within "
                       "one weight per layer")

    def _unit_shape(self, weight: Tensor) -> tuple[int, ...]:
        return tuple(self.granularity.to_units(torch.empty(weight.shape, device="meta")).shape)

    def _blocks(self) -> Iterator[tuple[int, int, slice, tuple[int, ...]]]:
        """Yield ``(layer index, group index, rows, block shape)`` for every group of every layer."""
        for i, layer in enumerate(self._layers):
            unit_shape = self._unit_shape(layer.weight)
            for g, rows in enumerate(layer.groups):
                yield i, g, rows, (rows.stop - rows.start, *unit_shape[1:])

    def _capacities(self) -> dict[tuple[int, int], int]:
        return {(i, g): self.granularity.capacity(shape, g) for i, g, _, shape in self._blocks()}

    def _initial_masks(self, distribution: Distribution, density: float | None, power_scale: float) -> list[Tensor]:
        shapes = {layer.name: tuple(layer.weight.shape) for layer in self._layers}
        densities = layer_densities(shapes, density, distribution, power_scale=power_scale)
        capacities = self._capacities()
        targets = {(i, g): densities[self._layers[i].name] * cap for (i, g), cap in capacities.items()}
        counts = allocate(targets, capacities)
        units = [
            torch.zeros(self._unit_shape(layer.weight), dtype=torch.bool, device=layer.weight.device)
            for layer in self._layers
        ]
        for i, g, rows, shape in self._blocks():
            device = units[i].device
            scores = self.granularity.init_scores(shape, g, self._generator, device)
            allowed = self.granularity.allowed(shape, g, device)
            units[i][rows] = criteria.grow_highest(scores, units[i][rows], counts[i, g], allowed)
        return [self._expand(unit, layer) for unit, layer in zip(units, self._layers, strict=True)]

    def _expand(self, unit_mask: Tensor, layer: _Layer) -> Tensor:
        return self.granularity.expand(unit_mask, layer.weight.shape).contiguous()

    def _recount(self, units: Sequence[Tensor] | None = None) -> None:
        for i, layer in enumerate(self._layers):
            unit = self.granularity.unit_mask(layer.mask) if units is None else units[i]
            layer.counts = [int(unit[rows].sum().item()) for rows in layer.groups]

    def _ignore_in_ddp(self, ignore: bool) -> None:
        """Keep DDP from re-broadcasting the masks at every forward: the engine syncs them itself, once per
        update. Applies to a DDP wrapper built after the engine."""
        ours = {f"{layer.name}{MASK_SUFFIX}" for layer in self._layers}
        current = set(getattr(self.model, "_ddp_params_and_buffers_to_ignore", ()))
        names = sorted(current | ours) if ignore else sorted(current - ours)
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, names)

    # ------------------------------------------------------------------ per step
    def apply_masks(self) -> None:
        """Zero the pruned weights and, at the same positions, every optimizer state tensor shaped like a
        weight (SGD momentum, Adam/AdamW moments, ...), in one ``torch._foreach_mul_``. Called automatically
        after every optimizer step; call it yourself after editing weights by hand."""
        tensors, masks = [], []
        for layer in self._layers:
            weight, mask = layer.weight, layer.mask
            tensors.append(weight)
            masks.append(mask)
            for state in self._state_tensors(weight):
                tensors.append(state)
                masks.append(mask)
        with torch.no_grad():
            torch._foreach_mul_(tensors, masks)

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        super()._after_optimizer_step(optimizer, args, kwargs)
        self.apply_masks()
        if self._accumulators is not None and self._in_grad_window(self._optimizer_steps):
            self._accumulate()

    def _in_grad_window(self, t: int) -> bool:
        upcoming = self.schedule.next_update(t)
        return upcoming - t < self.grad_steps and self.drop_fraction.active(upcoming)

    def _follow_devices(self) -> None:
        """Move the engine's own tensors to their weights' devices (after ``model.to(device)``)."""
        for i, layer in enumerate(self._layers):
            device = layer.weight.device
            if self._fired[i].device != device:
                self._fired[i] = self._fired[i].to(device)
            if self._accumulators is not None and self._accumulators[i].device != device:
                self._accumulators[i] = self._accumulators[i].to(device)

    def _accumulate(self) -> None:
        self._follow_devices()
        pairs = [
            (acc, layer.weight.grad)
            for acc, layer in zip(self._accumulators, self._layers, strict=True)
            if layer.weight.grad is not None
        ]
        if not pairs:
            return
        accumulators, grads = map(list, zip(*pairs, strict=True))
        with torch.no_grad():
            self.grow_rule.accumulate_(accumulators, grads)
        self._accumulated += 1

    # ------------------------------------------------------------------ topology update
    def _active_weights(self) -> int:
        sizes = self._unit_sizes
        return sum(sum(layer.counts) * size for layer, size in zip(self._layers, sizes, strict=True))

    def _gradual_drop(self, t: int) -> int:
        """Weights the cubic schedule asks to prune at step ``t``: active weights minus
        ``round(cubic_density(t) * capacity)`` (capacity = all weights, or all region weights); 0 if none."""
        if self.init_density is None or t < self.prune_begin:
            return 0
        density = cubic_density(t, self.init_density, self.final_density, self.prune_begin, self.prune_end)
        return max(0, self._active_weights() - round(density * self._capacity))

    def _gradients(self) -> list[Tensor]:
        if self._accumulators is not None and self._accumulated > 0:
            grads = self.grow_rule.average(self._accumulators, self._accumulated)
        else:
            if all(layer.weight.grad is None for layer in self._layers):
                raise RuntimeError(
                    f"prune={self.prune!r}/grow={self.grow!r} needs the dense gradient, but every .grad is "
                    "None: call engine.step() right after optimizer.step(), zero gradients before backward()"
                )
            grads = [
                torch.zeros_like(layer.weight) if layer.weight.grad is None else layer.weight.grad
                for layer in self._layers
            ]
            if distributed.is_distributed():
                grads = [g.clone() for g in grads]
        distributed.all_reduce_mean_(grads)
        return grads

    def _grow(
        self, grad: Tensor | None, allowed: Tensor | None, unfired: Tensor | None, mask: Tensor, n: int
    ) -> Tensor:
        """``mask`` (a group's units) with ``n`` more, where the grow rule scores highest (``allowed`` only;
        never-active ``unfired`` units first)."""
        scores = self.grow_rule.scores(grad, mask.shape, self._generator, mask.device)
        if unfired is not None:
            scores = criteria.prefer(scores, unfired)
        return criteria.grow_highest(scores, mask, n, allowed)

    def _exchange_layer(
        self, layer: _Layer, unit_mask: Tensor, fraction: float, grad: Tensor | None, fired: Tensor
    ) -> Tensor:
        """Prune-and-regrow inside each group of ``layer`` (unit masks; every group keeps its count)."""
        weight = layer.weight.detach()
        to_units = self.granularity.to_units
        # kernels average over their taps: magnitudes, or signed weights for a rule that reads signs (SET)
        unit_weight = to_units(weight if self.prune_rule.signed else weight.abs())
        unit_grad = None if grad is None else to_units(grad.abs())
        unfired = ~self.granularity.unit_mask(fired) if self.unfired_first else None
        out = unit_mask.clone()
        for g, rows in enumerate(layer.groups):
            group_grad = None if unit_grad is None else unit_grad[rows]
            allowed = self.granularity.allowed(out[rows].shape, g, out.device)
            grow = partial(self._grow, group_grad, allowed, None if unfired is None else unfired[rows])
            out[rows] = self.prune_rule.exchange(out[rows], layer.counts[g], fraction, unit_weight[rows], group_grad,
                                                 grow)
        return out

    def _update(self, t: int) -> bool:
        n_prune = self._gradual_drop(t)
        fraction = self.schedule.fraction(t)
        if n_prune == 0 and fraction == 0.0:
            return False
        self._follow_devices()
        with torch.no_grad():
            old = [layer.mask.bool() for layer in self._layers]
            units = [self.granularity.unit_mask(mask) for mask in old]
            if n_prune > 0:
                scores = [self.granularity.to_units(layer.weight.detach().abs()) for layer in self._layers]
                units = criteria.global_drop_lowest(scores, units, n_prune, self._unit_sizes)
                self._recount(units)
            if fraction > 0:
                grads = self._gradients() if self.needs_grad else [None] * len(self._layers)
                units = [
                    self._exchange_layer(layer, unit, fraction, grad, fired)
                    for layer, unit, grad, fired in zip(self._layers, units, grads, self._fired, strict=True)
                ]
            new = [self._expand(unit, layer) for unit, layer in zip(units, self._layers, strict=True)]
            distributed.broadcast_(new)
            self._commit(old, new)
        return True

    def _commit(self, old: Sequence[Tensor], new: Sequence[Tensor]) -> None:
        """Write the new masks; zero pruned *and* regrown positions of the weights and of every optimizer
        state tensor shaped like a weight (one foreach call), then set regrown weights to ``grow_init``."""
        tensors, factors = [], []
        for i, layer in enumerate(self._layers):
            mask = layer.mask
            mask.copy_(new[i])
            kept = (old[i] & new[i]).to(mask.dtype)
            for tensor in (layer.weight, *self._state_tensors(layer.weight)):
                tensors.append(tensor)
                factors.append(kept)
            self._fired[i] |= new[i]
        torch._foreach_mul_(tensors, factors)
        if self.grow_init != 0:
            for i, layer in enumerate(self._layers):
                layer.weight.detach().masked_fill_(new[i] & ~old[i], self.grow_init)
        if self._accumulators is not None:
            for acc in self._accumulators:
                acc.zero_()
            self._accumulated = 0

    # ------------------------------------------------------------------ inspection
    @property
    def masks(self) -> dict[str, Tensor]:
        """``{parameter name: bool mask shaped like the weight}`` (copies; ``True`` = active)."""
        return {layer.name: layer.mask.bool() for layer in self._layers}

    @property
    def fired_masks(self) -> dict[str, Tensor]:
        """``{parameter name: bool}``: positions active at any time so far (ITOP bookkeeping; copies)."""
        return {layer.name: fired.clone() for layer, fired in zip(self._layers, self._fired, strict=True)}

    @property
    def density(self) -> float:
        """Current fraction of active weights over all sparse layers."""
        nnz = sum(int(layer.mask.count_nonzero().item()) for layer in self._layers)
        return nnz / sum(layer.weight.numel() for layer in self._layers)

    @property
    def initial_densities(self) -> dict[str, float]:
        """``{parameter name: density}`` of the masks the engine started from (a copy)."""
        return dict(self._initial_densities)

    def scheduled_density(self, t: int) -> float:
        """Global density the schedule gives the sparse layers after ``t`` optimizer steps (so during step
        ``t + 1``).

        Gradual pruning (GraNet, GMP): :func:`~dstlib.sparse.schedules.cubic_density` at the last update
        ``u = t - t % update_every``, i.e. ``init_density`` before the first update at or after ``prune_begin``
        and the final ``density`` from ``prune_end`` on; the masks reach it up to rounding (the count is
        ``round(d * capacity)``). Without gradual pruning the density never changes: :attr:`density`.
        """
        checks.integer("t", t, low=0)
        if self.init_density is None:
            return self.density
        last_update = t - t % self.update_every
        return cubic_density(last_update, self.init_density, self.final_density, self.prune_begin, self.prune_end)

    @property
    def itop_rate(self) -> float:
        """Fraction of sparse-layer weights ever active (Liu et al. 2021's ITOP rate)."""
        return itop_rate(self.fired_masks)

    def memory_bytes(self) -> int:
        """Bytes the engine adds to training: mask buffers, fired masks and gradient accumulators."""
        tensors = [layer.mask for layer in self._layers] + list(self._fired) + list(self._accumulators or [])
        return tensor_bytes(tensors)

    def report(self) -> pd.DataFrame:
        """Per-layer table: ``name, shape, numel, nnz, density, itop`` (a ``pandas.DataFrame``).

        ``df.attrs`` holds ``density`` (global), ``itop_rate``, ``step`` and ``memory_bytes``.
        """
        frame = layer_report(self.masks, self.fired_masks)
        frame.attrs.update(step=self.steps, memory_bytes=self.memory_bytes())
        return frame

    def mask_checksum(self) -> int:
        """Checksum of all masks (:func:`dstlib.sparse.distributed.checksum`), equal on synced ranks."""
        return distributed.checksum(list(self.masks.values()))

    def assert_synced(self) -> None:
        """Raise ``RuntimeError`` if the masks differ across ranks (one all-gather of checksums)."""
        distributed.assert_synced(list(self.masks.values()))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(layers={len(self._layers)}, density={self.density:.4f}, "
            f"prune={self.prune!r}, grow={self.grow!r}, granularity={self.granularity!r}, "
            f"update_every={self.update_every}, steps={self.steps})"
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume bit-identically: step counters, RNG state, masks, fired masks and
        gradient accumulators (tensors are copies on their devices). Masks are also in
        ``model.state_dict()``; they are never inferred from zero weights."""
        return {
            **self._clock_state(),
            "masks": self.masks,
            "fired": self.fired_masks,
            "accumulators": None if self._accumulators is None else [a.clone() for a in self._accumulators],
            "accumulated": self._accumulated,
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` output (call after building the model, optimizer and engine the same
        way; before or after loading the model's and optimizer's own state).

        Raises:
            ValueError: the checkpoint's layers or shapes differ from this engine's.
        """
        names = [layer.name for layer in self._layers]
        checks.require(list(state["masks"]) == names, "list(state['masks'])", list(state["masks"]),
                       f"this engine's sparse layers {names}")
        for layer in self._layers:
            shape = tuple(state["masks"][layer.name].shape)
            checks.require(shape == tuple(layer.weight.shape), f"state['masks'][{layer.name!r}].shape", shape,
                           f"the weight's shape {tuple(layer.weight.shape)}")
        has_accumulators = state["accumulators"] is not None
        checks.require(has_accumulators == (self._accumulators is not None), "state['accumulators'] is not None",
                       has_accumulators, f"{not has_accumulators}, as in this engine (same grow rule and grad_steps)")
        with torch.no_grad():
            for i, layer in enumerate(self._layers):
                layer.mask.copy_(state["masks"][layer.name])
                self._fired[i] = state["fired"][layer.name].to(layer.weight.device).bool().clone()
                if self._accumulators is not None:
                    self._accumulators[i].copy_(state["accumulators"][i])
        self._load_clock_state(state)
        self._accumulated = int(state["accumulated"])
        self._recount()
        self.apply_masks()

    def remove(self) -> None:
        """Detach the engine: remove its optimizer hook and mask buffers (weights keep their zeros)."""
        super().remove()
        self._ignore_in_ddp(False)
        for layer in self._layers:
            del layer.module._buffers[layer.attr + MASK_SUFFIX]
