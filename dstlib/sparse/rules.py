"""Prune and grow rules as small objects, shared by the masked and the truly sparse engine.

A prune rule decides which active units an update drops, a grow rule where it grows as many back. Both work on
the units of one group, tensors of any shape: the masked engine passes a layer group's units, the truly sparse
engine a layer's ``(nnz,)`` values (prune) and its dense ``(out, in)`` scores (grow). Every rule ranks with the
two shared helpers, :func:`~dstlib.sparse.criteria.drop_lowest` (drop the minimum) and
:func:`~dstlib.sparse.criteria.grow_highest` (grow the maximum), so both engines break ties alike.

A new rule is one subclass with a ``name``: it registers itself in :data:`PRUNE_RULES` or :data:`GROW_RULES`,
and ``SparseEngine(prune=name)`` (or an instance, ``prune=MyRule(...)``) uses it::

    @dataclass
    class Sensitivity(PruneRule):
        name: ClassVar[str] = "sensitivity"
        needs_grad: ClassVar[bool] = True

        def score(self, weight: Tensor, grad: Tensor | None) -> Tensor:
            return weight * grad  # |w| |g|
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from dstlib import checks
from dstlib.sparse import criteria

PRUNE_RULES: dict[str, type[PruneRule]] = {}
"""``prune=`` names and their classes: smallest ``|w|`` (RigL), SET's sign-aware rule, MEST's ``|w| + lambda |g|``."""
GROW_RULES: dict[str, type[GrowRule]] = {}
"""``grow=`` names and their classes: uniform random (SET), largest ``|grad|`` (RigL), largest ``|EMA of grad|``."""

Grow = Callable[[Tensor, int], Tensor]
"""``grow(mask, n)``: ``mask`` (bool, a group's units) with ``n`` more active units, chosen by the grow rule."""


class PruneRule:
    """Which active units an update drops: the ``drop_count(fraction, n_active)`` of lowest :meth:`score`.

    Class attributes: ``name`` (registry key), ``needs_grad`` (reads the dense gradient), ``signed``
    (reads signed weights; otherwise the engines pass magnitudes ``|w|``).
    """

    name: ClassVar[str]
    needs_grad: ClassVar[bool] = False
    signed: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            PRUNE_RULES[cls.name] = cls

    def score(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        """Removal score shaped like ``weight`` (the lowest go first); ``grad`` is ``|grad|`` or ``None``."""
        raise NotImplementedError

    def drop(self, weight: Tensor, grad: Tensor | None, mask: Tensor, n_active: int, fraction: float) -> Tensor:
        """``mask`` (bool, shaped like ``weight``, ``n_active`` active) less the units to drop at ``fraction``."""
        return criteria.drop_lowest(self.score(weight, grad), mask, criteria.drop_count(fraction, n_active))

    def exchange(
        self, mask: Tensor, n_active: int, fraction: float, weight: Tensor, grad: Tensor | None, grow: Grow
    ) -> Tensor:
        """Prune-and-regrow in one group: drop, then ``grow`` back to ``n_active`` active units.

        Shapes: ``mask`` bool, ``weight`` and ``grad`` float, all the group's unit shape; returns a bool mask.
        """
        pruned = self.drop(weight, grad, mask, n_active, fraction)
        return grow(pruned, n_active - int(pruned.sum().item()))


@dataclass
class MagnitudePrune(PruneRule):
    """RigL / GraNet: drop the active units of smallest ``|w|``."""

    name: ClassVar[str] = "magnitude"

    def score(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return weight


@dataclass
class SETPrune(PruneRule):
    """SET (Mocanu et al. 2018): drop ``fraction`` of the non-negative and, separately, of the negative active
    weights closest to zero (:func:`~dstlib.sparse.criteria.set_prune`)."""

    name: ClassVar[str] = "set"
    signed: ClassVar[bool] = True

    def drop(self, weight: Tensor, grad: Tensor | None, mask: Tensor, n_active: int, fraction: float) -> Tensor:
        return criteria.set_prune(weight, mask, fraction)


@dataclass
class MESTPrune(PruneRule):
    """MEST (Yuan et al. 2021): drop the smallest ``|w| + grad_coefficient * |g|``, under a soft memory bound.

    With ``memory_bound`` ``b > 0`` an update first grows ``round(b * n)`` extra units (``n`` active), then drops
    ``drop_count + round(b * n)`` by the MEST score (freshly grown units included), then grows back to ``n``.
    """

    name: ClassVar[str] = "mest"
    needs_grad: ClassVar[bool] = True
    grad_coefficient: float = 1.0
    memory_bound: float = 0.0

    def __post_init__(self) -> None:
        self.grad_coefficient = float(checks.number("grad_coefficient", self.grad_coefficient, low=0))
        self.memory_bound = float(checks.number("memory_bound", self.memory_bound, low=0))

    def score(self, weight: Tensor, grad: Tensor | None) -> Tensor:
        return criteria.mest_score(weight, grad, self.grad_coefficient)

    def exchange(
        self, mask: Tensor, n_active: int, fraction: float, weight: Tensor, grad: Tensor | None, grow: Grow
    ) -> Tensor:
        if self.memory_bound == 0:
            return super().exchange(mask, n_active, fraction, weight, grad, grow)
        grown = grow(mask, round(self.memory_bound * n_active))
        n_extra = int(grown.sum().item()) - n_active
        n_drop = criteria.drop_count(fraction, n_active)
        pruned = criteria.drop_lowest(self.score(weight, grad), grown, n_drop + n_extra)
        return grow(pruned, n_drop)


class GrowRule:
    """Where an update grows: the inactive units of largest :meth:`scores` (ties as ``torch.topk``).

    Class attributes: ``name`` (registry key), ``needs_grad`` (reads the dense gradient), ``grad_steps``
    (default number of steps whose gradients an engine averages into ``grad``).
    """

    name: ClassVar[str]
    needs_grad: ClassVar[bool] = False
    grad_steps: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            GROW_RULES[cls.name] = cls

    def scores(
        self, grad: Tensor | None, shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str
    ) -> Tensor:
        """Growth scores of ``shape`` (float); ``grad`` is ``|grad|`` of that shape, or ``None``."""
        raise NotImplementedError

    def accumulate_(self, sums: list[Tensor], grads: list[Tensor]) -> None:
        """Add one step's dense gradients to the running estimates ``sums`` (one per layer): a plain sum."""
        torch._foreach_add_(sums, grads)

    def average(self, sums: list[Tensor], steps: int) -> list[Tensor]:
        """The gradient estimates after ``steps`` calls of :meth:`accumulate_` (new tensors): the mean."""
        return [s / steps for s in sums]


@dataclass
class RandomGrow(GrowRule):
    """SET: grow uniformly at random, from the engine's CPU generator (identical on every device and rank)."""

    name: ClassVar[str] = "random"

    def scores(
        self, grad: Tensor | None, shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str
    ) -> Tensor:
        return criteria.random_scores(shape, generator, device)


@dataclass
class GradientGrow(GrowRule):
    """RigL: grow where the dense ``|grad|`` is largest (mean over the engine's ``grad_steps``)."""

    name: ClassVar[str] = "gradient"
    needs_grad: ClassVar[bool] = True

    def scores(
        self, grad: Tensor | None, shape: tuple[int, ...], generator: torch.Generator, device: torch.device | str
    ) -> Tensor:
        return grad


@dataclass
class MomentumGrow(GradientGrow):
    """Grow where ``|EMA of grad|`` is largest: ``m <- momentum * m + (1 - momentum) * g`` over the last
    ``grad_steps`` (default 20) steps, bias-corrected by ``1 - momentum ** steps``."""

    name: ClassVar[str] = "momentum"
    grad_steps: ClassVar[int] = 20
    momentum: float = 0.9

    def __post_init__(self) -> None:
        self.momentum = float(checks.number("momentum", self.momentum, low=0, high=1, high_open=True))

    def accumulate_(self, sums: list[Tensor], grads: list[Tensor]) -> None:
        torch._foreach_mul_(sums, self.momentum)
        torch._foreach_add_(sums, grads, alpha=1 - self.momentum)

    def average(self, sums: list[Tensor], steps: int) -> list[Tensor]:
        norm = 1 - self.momentum**steps
        return [s / norm for s in sums]


Rule = TypeVar("Rule", PruneRule, GrowRule)


def make(
    kind: str, spec: str | Rule | None, registry: dict[str, type[Rule]], names: tuple[str, ...] | None = None,
    **params: Any,
) -> Rule | None:
    """The rule ``spec`` names, built with the ``params`` that are not ``None``; ``spec`` itself if it is a rule
    object; or ``None``.

    Args:
        kind: ``"prune"`` or ``"grow"`` (for messages). registry: :data:`PRUNE_RULES` or :data:`GROW_RULES`.
        names: the names an engine supports (default: the whole registry).
        params: rule parameters such as ``memory_bound=0.1``; one given (not ``None``) must be a field of the
            rule named (a rule object carries its own).

    Raises:
        ValueError: an unknown name, or a parameter the rule does not take.
    """
    names = tuple(registry) if names is None else names
    is_rule = isinstance(spec, PruneRule | GrowRule)
    checks.one_of(kind, spec.name if is_rule else spec, names if is_rule else (*names, None))
    takes = set() if is_rule or spec is None else _fields(registry[spec])
    for key, value in params.items():
        owners = " or ".join(repr(name) for name, cls in registry.items() if key in _fields(cls))
        checks.require(value is None or key in takes, key, value,
                       "None with a rule object (set it on the object)" if is_rule
                       else f"None with {kind}={spec!r}: only {kind}={owners} takes it")
    if is_rule or spec is None:
        return spec
    return registry[spec](**{key: value for key, value in params.items() if value is not None})


def _fields(rule_class: type) -> set[str]:
    return {field.name for field in fields(rule_class)} if is_dataclass(rule_class) else set()
