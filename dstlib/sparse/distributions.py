"""Layer-wise densities: uniform, Erdős–Rényi (ER), Erdős–Rényi-Kernel (ERK) or a custom map.

ER and ERK give layer ``l`` the density ``d_l = min(1, eps * raw_l)`` with
``raw_l = (sum of dims / product of dims) ** power_scale`` (ER uses only the first two dims, ``out`` and
``in``; ERK all of them, kernel included). ``eps`` is solved so the total number of kept weights equals
``density * total``: layers where ``eps * raw_l > 1`` are capped at dense and ``eps`` is re-solved over the
others, until no layer exceeds 1 (the google-research/rigl rule). The global budget is therefore exact.

Integer counts come from :func:`allocate` (largest-remainder rounding): every unit gets the floor or the
ceiling of its real-valued target, and the total is exactly ``round(sum of targets)``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

from dstlib import checks

DISTRIBUTIONS = ("uniform", "er", "erk")
"""Names accepted by :func:`layer_densities` (a ``{name: density}`` mapping is accepted too)."""

Distribution = str | Mapping[str, float]


def check_density(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Validate a density: a real number in ``(0, 1]`` (``[0, 1]`` with ``allow_zero``).

    Raises:
        ValueError: naming ``name``, the value and the allowed range.
    """
    return float(checks.number(name, value, low=0, high=1, low_open=not allow_zero))


def check_distribution(distribution: Distribution, names: Sequence[str] | None = None) -> None:
    """Validate a distribution name, or a custom ``{layer name: density}`` map covering ``names``.

    Raises:
        ValueError: unknown name, a density outside ``(0, 1]``, or a custom map that misses or adds layers.
    """
    if isinstance(distribution, Mapping):
        for layer, value in distribution.items():
            check_density(f"distribution[{layer!r}]", value)
        if names is not None and set(distribution) != set(names):
            missing, extra = sorted(set(names) - set(distribution)), sorted(set(distribution) - set(names))
            raise checks.invalid("distribution keys", sorted(distribution),
                                 f"exactly the sparse layers; missing {missing}, unknown {extra}")
    else:
        checks.require(distribution in DISTRIBUTIONS, "distribution", distribution,
                       f"one of {', '.join(map(repr, DISTRIBUTIONS))} or a {{name: density}} map")


def _raw_score(shape: Sequence[int], distribution: str, power_scale: float) -> float:
    dims = shape[:2] if distribution == "er" else shape
    return (sum(dims) / math.prod(dims)) ** power_scale


def layer_densities(
    shapes: Mapping[str, Sequence[int]],
    density: float | None,
    distribution: Distribution = "erk",
    *,
    power_scale: float = 1.0,
) -> dict[str, float]:
    """Per-layer densities whose weighted mean is ``density``.

    Args:
        shapes: ``{layer name: weight shape}``, e.g. ``{"conv1.weight": (16, 3, 3, 3)}``.
        density: the global fraction of weights kept, in ``(0, 1]``; ``None`` with a custom map.
        distribution: ``"uniform"``, ``"er"``, ``"erk"`` or a ``{name: density}`` map (returned as is).
        power_scale: exponent on ER/ERK raw scores (``erk_power_scale`` in RigL; 0 gives uniform).

    Returns:
        ``{name: d_l}`` with ``sum(d_l * numel_l) == density * sum(numel_l)`` (up to float rounding).
    """
    check_distribution(distribution, list(shapes))
    if isinstance(distribution, Mapping):
        checks.require(density is None, "density", density,
                       "None with a custom map: give either a density or a custom distribution map")
        return {name: float(distribution[name]) for name in shapes}
    density = check_density("density", density)
    if distribution == "uniform":
        return dict.fromkeys(shapes, density)
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: _raw_score(shape, distribution, power_scale) for name, shape in shapes.items()}
    budget = density * sum(numel.values())
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        if not free:  # density == 1 up to float rounding
            return dict.fromkeys(shapes, 1.0)
        eps = (budget - sum(numel[name] for name in dense)) / sum(raw[name] * numel[name] for name in free)
        over = {name for name in free if eps * raw[name] > 1}
        if not over:
            return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}
        dense |= over


def allocate(targets: Mapping[Hashable, float], capacities: Mapping[Hashable, int]) -> dict[Hashable, int]:
    """Round real-valued counts to integers with an exact total (largest-remainder / Hamilton rounding).

    Args:
        targets: ``{key: x_k}`` with ``0 <= x_k <= capacities[key]``.
        capacities: ``{key: upper bound}``.

    Returns:
        ``{key: n_k}`` with ``n_k in {floor(x_k), ceil(x_k)}``, ``n_k <= capacity`` and
        ``sum(n_k) == round(sum(x_k))``; ties in the remainders go to the earlier key.
    """
    clipped = {key: min(max(float(x), 0.0), capacities[key]) for key, x in targets.items()}
    counts = {key: math.floor(x) for key, x in clipped.items()}
    remainder = round(sum(clipped.values())) - sum(counts.values())
    by_fraction = sorted(clipped, key=lambda key: clipped[key] - counts[key], reverse=True)
    for key in by_fraction[: max(remainder, 0)]:
        counts[key] += 1
    return counts
