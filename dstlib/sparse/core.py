"""The core both engines share: rules, schedule, random stream, and the clock of optimizer steps.

:class:`~dstlib.sparse.SparseEngine` (masks over dense weights) and
:class:`~dstlib.sparse.truly_sparse.TrulySparseEngine` (values and indices) differ in how they hold a topology
and change it; they count steps, decide when to update, pick units (:mod:`~dstlib.sparse.rules`) and draw random
numbers the same way, here.

Counting: an optimizer *step post-hook* counts real optimizer steps (``GradScaler`` skips a non-finite step, so
it neither counts nor triggers an update); ``engine.step()`` runs the update of the last update step ``t`` it
has not seen yet, and does nothing when no optimizer step happened since its last call.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse import criteria, distributed
from dstlib.sparse.rules import GrowRule, PruneRule
from dstlib.sparse.schedules import DropFraction, Schedule
from dstlib.sparse.selection import unwrap


class EngineCore:
    """Base of both engines, driven by ``engine.step()`` after each ``optimizer.step()``.

    A subclass validates its own arguments, calls ``super().__init__`` (which touches neither model nor
    optimizer), builds its topology, then calls :meth:`_attach`; it implements ``_update(t) -> bool``.

    Args:
        model: the network (a DDP / ``torch.compile`` wrapper is unwrapped).
        optimizer: any ``torch.optim.Optimizer``.
        prune, grow: the rule objects (``None`` for both: no prune-and-regrow).
        schedule: when updates happen and their drop fraction.
        grow_init: value of regrown weights (their optimizer state is zeroed).
        seed: integer in ``[0, 2**40)`` seeding the random stream (:func:`~dstlib.sparse.criteria.mask_generator`;
            rank 0's seed on every rank).

    Attributes:
        model, optimizer, schedule, grow_init; prune_rule, grow_rule: the rule objects.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        prune: PruneRule | None,
        grow: GrowRule | None,
        schedule: Schedule,
        grow_init: float,
        seed: int,
    ) -> None:
        checks.require(isinstance(model, nn.Module), "model", type(model), "a torch.nn.Module")
        checks.require(isinstance(optimizer, torch.optim.Optimizer), "optimizer", type(optimizer),
                       "a torch.optim.Optimizer")
        checks.require(checks.is_number(seed, low=0, high=2**40, high_open=True, integer=True), "seed", seed,
                       "an integer in [0, 2**40)")
        self.model, self.optimizer, self.schedule = unwrap(model), optimizer, schedule
        self.prune_rule, self.grow_rule = prune, grow
        self.grow_init = float(checks.number("grow_init", grow_init))
        self._generator = criteria.mask_generator(self._sync_seed(seed))
        self._optimizer_steps = 0
        self._engine_steps = 0

    def _check_optimizer_holds(self, params: Mapping[str, Tensor]) -> None:
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        missing = [name for name, p in params.items() if id(p) not in held]
        checks.require(not missing, "optimizer", type(self.optimizer), "an optimizer holding every sparse "
                       f"parameter, built from model.parameters() of the model given to the engine; it lacks {missing}")

    def _attach(self) -> None:
        """Register the optimizer hook: the engine is live."""
        self._hook = self.optimizer.register_step_post_hook(self._after_optimizer_step)

    @staticmethod
    def _sync_seed(seed: int) -> int:
        if not distributed.is_distributed():
            return seed
        value = torch.tensor([float(seed)], dtype=torch.float64)
        distributed.broadcast_([value])
        return int(value.item())

    # ------------------------------------------------------------------ per step
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        self._optimizer_steps += 1

    def step(self) -> bool:
        """Call once after each ``optimizer.step()``. Updates the topology when one is due.

        Returns:
            True if the topology changed at this call. False when nothing was due, or when no optimizer step
            happened since the last call (e.g. ``GradScaler`` skipped it).
        """
        if self._engine_steps == self._optimizer_steps:
            return False
        previous, self._engine_steps = self._engine_steps, self._optimizer_steps
        t = self.schedule.last_update(self._engine_steps)
        return t > previous and self._update(t)

    def _update(self, t: int) -> bool:
        raise NotImplementedError

    def _state_tensors(self, param: Tensor) -> list[Tensor]:
        """The optimizer's state tensors shaped like ``param`` (momentum, Adam moments, ...)."""
        state = self.optimizer.state.get(param)
        if not state:
            return []
        return [v for v in state.values() if isinstance(v, Tensor) and v.shape == param.shape]

    # ------------------------------------------------------------------ inspection
    @property
    def prune(self) -> str | None:
        """Name of the prune rule (``None`` without prune-and-regrow)."""
        return None if self.prune_rule is None else self.prune_rule.name

    @property
    def grow(self) -> str | None:
        """Name of the grow rule (``None`` without prune-and-regrow)."""
        return None if self.grow_rule is None else self.grow_rule.name

    @property
    def needs_grad(self) -> bool:
        """Whether a rule reads the dense gradient."""
        return any(rule is not None and rule.needs_grad for rule in (self.prune_rule, self.grow_rule))

    @property
    def update_every(self) -> int:
        """Optimizer steps between topology updates."""
        return self.schedule.update_every

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the whole run."""
        return self.schedule.total_steps

    @property
    def drop_fraction(self) -> DropFraction | None:
        """The drop-fraction schedule (``None`` without prune-and-regrow)."""
        return self.schedule.drop_fraction

    @property
    def steps(self) -> int:
        """Optimizer steps taken since the engine was built (skipped AMP steps excluded)."""
        return self._optimizer_steps

    # ------------------------------------------------------------------ checkpoints
    def _clock_state(self) -> dict:
        return {
            "format": 1,
            "optimizer_steps": self._optimizer_steps,
            "engine_steps": self._engine_steps,
            "generator": self._generator.get_state(),
        }

    def _load_clock_state(self, state: Mapping) -> None:
        self._generator.set_state(state["generator"])
        self._optimizer_steps = int(state["optimizer_steps"])
        self._engine_steps = int(state["engine_steps"])

    def remove(self) -> None:
        """Detach the engine: remove its optimizer hook."""
        self._hook.remove()
