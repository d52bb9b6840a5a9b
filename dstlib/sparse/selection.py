"""Which parameters are sparse: conv and linear weights by default, chosen by name pattern or module type.

The order of the returned parameters is the registration order of ``model.named_parameters()``; "first"
and "last" layer (``dense_first`` / ``dense_last``) refer to that order, as in every ``sparselearning``
fork. Only parameters with at least two dimensions are ever selected: biases and norm scales stay dense.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from dstlib import checks

DEFAULT_SPARSE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""Module types whose ``weight`` is sparse when ``include`` is not given."""

Pattern = str | type[nn.Module]
"""A regular expression searched in the parameter name, or a module type whose ``weight`` matches."""


def unwrap(model: nn.Module) -> nn.Module:
    """Return the user's module inside ``DistributedDataParallel`` / ``torch.compile`` wrappers.

    Parameter names (and so mask names) are then the same with or without the wrapper.
    """
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_patterns(name: str, patterns: Sequence[Pattern] | None) -> None:
    if patterns is None:
        return
    checks.require(not isinstance(patterns, str | type), name, patterns, f"a list of patterns, e.g. [{patterns!r}]")
    for index, pattern in enumerate(patterns):
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error as error:
                raise checks.invalid(f"{name}[{index}]", pattern, f"a valid regular expression ({error})") from None
        else:
            checks.require(isinstance(pattern, type) and issubclass(pattern, nn.Module), f"{name}[{index}]", pattern,
                           "a regular expression (str) or an nn.Module subclass")


def _matches(name: str, module: nn.Module, patterns: Sequence[Pattern]) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    for pattern in patterns:
        if isinstance(pattern, str):
            if re.search(pattern, name):
                return True
        elif leaf == "weight" and isinstance(module, pattern):
            return True
    return False


def owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Split a parameter name into its owning module and attribute: ``"layer1.0.weight"`` ->
    ``(model.layer1[0], "weight")``."""
    prefix, _, attr = name.rpartition(".")
    return (model.get_submodule(prefix) if prefix else model), attr


def sparse_parameters(
    model: nn.Module,
    *,
    include: Sequence[Pattern] | None = None,
    exclude: Sequence[Pattern] | None = None,
    dense_first: bool = False,
    dense_last: bool = False,
) -> dict[str, nn.Parameter]:
    """Select the parameters a sparsity engine masks.

    Args:
        model: the network (a DDP or ``torch.compile`` wrapper is unwrapped first).
        include: patterns a parameter must match (any of them) to be sparse: regular expressions searched
            in the full parameter name (``r"^features\\."``), or module types whose ``weight`` is taken
            (``nn.Conv2d``). Default: the weights of :data:`DEFAULT_SPARSE_TYPES` (conv and linear).
        exclude: patterns (same kinds) removing parameters from the selection.
        dense_first: keep the first selected parameter dense (the stem conv, usually).
        dense_last: keep the last selected parameter dense (the classifier, usually).

    Returns:
        ``{name: parameter}`` in registration order, each parameter of shape ``(out, in, *kernel)`` or
        ``(out, in)``; only parameters with ``ndim >= 2`` are considered.

    Raises:
        ValueError: a malformed pattern, or nothing left to sparsify.
    """
    _check_patterns("include", include)
    _check_patterns("exclude", exclude)
    model = unwrap(model)
    include = DEFAULT_SPARSE_TYPES if include is None else include
    selected = {}
    for name, param in model.named_parameters():
        module, _ = owner(model, name)
        if param.ndim >= 2 and _matches(name, module, include):
            if not (exclude and _matches(name, module, exclude)):
                selected[name] = param
    names = list(selected)
    for drop, index in ((dense_first, 0), (dense_last, -1)):
        if drop and names:
            selected.pop(names[index], None)
    checks.require(len(selected) > 0, "include", include,
                   f"patterns that select a parameter with ndim >= 2 of {type(model).__name__} (with "
                   f"exclude={exclude!r}, dense_first={dense_first}, dense_last={dense_last}): nothing to sparsify")
    return selected
