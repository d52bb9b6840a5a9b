"""The methods of the papers as one-call presets: SET, RigL, MEST, GraNet, GMP, Static, DSN and SLaK.

Each preset is a :class:`~dstlib.sparse.engine.SparseEngine` with some rules fixed (``fixed``) and others
defaulted (``defaults``); every other keyword of ``SparseEngine`` can be passed as well (``drop_fraction``,
``drop_schedule``, ``granularity``, ``include``, ``unfired_first``, ...). :func:`create` builds one by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse.distributions import Distribution, check_density
from dstlib.sparse.engine import SparseEngine
from dstlib.sparse.granularity import RegionGroups
from dstlib.sparse.prune_at_init import snip_ratios
from dstlib.sparse.selection import sparse_parameters


class _Preset(SparseEngine):
    fixed: ClassVar[dict[str, Any]] = {}
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        density: float | None,
        total_steps: int | None,
        distribution: Distribution = "erk",
        update_every: int | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None:
        for key, value in self.fixed.items():
            checks.require(key not in options, key, options.get(key), f"only {value!r}, which {type(self).__name__} "
                           "fixes; use dstlib.sparse.SparseEngine for other combinations")
        super().__init__(
            model,
            optimizer,
            density=density,
            total_steps=total_steps,
            distribution=distribution,
            update_every=update_every,
            seed=seed,
            **{**self.defaults, **options, **self.fixed},
        )


class SET(_Preset):
    """SET (Mocanu et al. 2018): sign-aware magnitude prune, uniform random regrowth, ERK start.

    Fixed ``prune="set"``; default ``grow="random"``. Every ``update_every`` steps each layer drops the
    fraction ``drop_fraction`` (cosine-decayed, as in the ``sparselearning`` forks) of its non-negative and,
    separately, of its negative weights closest to zero, and regrows as many at random (new weights 0).

    Example::

        engine = dstlib.sparse.SET(model, optimizer, density=0.1, total_steps=epochs * len(loader),
                                   update_every=100, drop_fraction=0.3)
        ...  # loss.backward(); optimizer.step(); engine.step()
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": "set"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "random"}


class RigL(_Preset):
    """RigL (Evci et al. 2020): drop the smallest ``|w|``, grow the largest dense ``|grad|``, ERK start.

    Fixed ``prune="magnitude"``; default ``grow="gradient"``; drop fraction 0.3 cosine-decayed to 0 at
    ``update_end = 0.75 * total_steps``. Regrown weights start at 0 with zeroed optimizer state.
    Call ``optimizer.zero_grad()`` before ``backward()`` (not between ``optimizer.step()`` and
    ``engine.step()``): growth reads the current mini-batch's dense gradient.

    Example::

        engine = dstlib.sparse.RigL(model, optimizer, density=0.1, total_steps=10_000, update_every=100)
        for x, y in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step(); engine.step()
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": "magnitude"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "gradient"}


class MEST(_Preset):
    """MEST (Yuan et al. 2021): remove by ``|w| + grad_coefficient * |g|``, grow at random (``grow="random"``,
    MEST_r, default) or by gradient (``grow="gradient"``, MEST_g), with a soft memory bound.

    Fixed ``prune="mest"``; defaults ``grow="random"``, ``grad_coefficient=1.0``, ``memory_bound=0.1``.
    Reading of the soft memory bound ``b``: at each update a group with ``n`` active weights first grows
    ``round(b * n)`` extra (up to ``density * (1 + b)``), then prunes ``drop_count + round(b * n)`` by the
    MEST score, freshly grown weights included (they compete through ``|g|``), then regrows back to ``n``.
    ``memory_bound=0`` gives plain elastic mutation (prune, then grow).

    Example::

        engine = dstlib.sparse.MEST(model, optimizer, density=0.1, total_steps=10_000,
                                    grow="gradient", memory_bound=0.1)
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": "mest"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "random", "grad_coefficient": 1.0, "memory_bound": 0.1}


class GraNet(_Preset):
    """GraNet (Liu et al. 2021): gradual global magnitude pruning from ``init_density`` to ``density`` on the
    cubic schedule, plus layer-wise prune-and-regrow (zero-cost neuroregeneration) at every update.

    Fixed ``prune="magnitude"``; defaults ``grow="gradient"`` (``"random"`` for GraNet_r),
    ``init_density=max(0.8, density)`` (distributed by ``distribution``), ``prune_begin=0``,
    ``prune_end=total_steps // 2``; regeneration continues after ``prune_end`` until ``update_end``
    (default ``0.75 * total_steps``). At each pruning update the total active count is exactly
    ``round(cubic_density(t) * total)`` (with kernel granularity: at most one kernel less).

    Example::

        engine = dstlib.sparse.GraNet(model, optimizer, density=0.1, total_steps=10_000, init_density=0.8)
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": "magnitude"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "gradient"}

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        density, total_steps = options.get("density"), options.get("total_steps")
        if "init_density" not in options and isinstance(density, int | float):
            options["init_density"] = max(0.8, density)
        if "prune_end" not in options and isinstance(total_steps, int):
            options["prune_end"] = total_steps // 2
        super().__init__(model, optimizer, **options)


class GMP(_Preset):
    """GMP (Zhu & Gupta 2017): start dense, prune globally by magnitude on the cubic schedule between
    ``prune_begin`` (default 0) and ``prune_end`` (default ``0.75 * total_steps``), every ``update_every``
    steps; no regrowth. Fixed ``prune=None, grow=None``; default ``init_density=1.0``.

    Example::

        engine = dstlib.sparse.GMP(model, optimizer, density=0.1, total_steps=10_000, update_every=100)
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": None, "grow": None}
    defaults: ClassVar[dict[str, Any]] = {"init_density": 1.0}


class Static(_Preset):
    """Static sparse training: random masks at the distribution's densities, or fixed ``masks`` (from SNIP,
    GraSP, SynFlow, LTH, ...); the topology never changes. Fixed ``prune=None, grow=None``.

    Args:
        density: global density of random masks; with ``masks`` optional, and then checked against them.
        masks: ``{parameter name: bool tensor shaped like the weight}``; its keys are the sparse parameters.

    Example::

        engine = dstlib.sparse.Static(model, optimizer, density=0.1)                # random ERK masks
        masks = dstlib.sparse.snip(model, torch.nn.CrossEntropyLoss(), (x, y), density=0.1)
        engine = dstlib.sparse.Static(model, optimizer, masks=masks)
    """

    fixed: ClassVar[dict[str, Any]] = {"prune": None, "grow": None}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        density: float | None = None,
        masks: Mapping[str, Tensor] | None = None,
        total_steps: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, optimizer, density=density, masks=masks, total_steps=total_steps, **options)


class DSN(_Preset):
    """DSN (Xiao et al. 2022): region-constrained DST of a model's large 1-D kernels, DSN's recipe in one call.

    * Sparse: the weight of every ``nn.Conv1d`` whose kernel has at least :attr:`MIN_KERNEL` taps (DSN keeps
      shorter ones, the 1x1 bottlenecks and the head, dense).
    * Granularity: :class:`~dstlib.sparse.granularity.RegionGroups` with the modules' own ``out_groups``
      (the model is the one source of truth; 3 when a module does not say) and DSN's shortest-taps-first
      fill (``remain_sort``).
    * ``density`` is the density *inside the regions*, the same in every layer (DSN: 0.2 on UCR, 0.1 on UEA);
      a layer's density is then ``density * mean(r_g) / k`` (0.133 for k = 39, 3 groups):
      :attr:`region_density` and :attr:`density` report the two.
    * Fixed ``prune="magnitude"``; defaults ``grow="random"`` inside the region, ``distribution="uniform"``,
      drop fraction 0.5 cosine-annealed to 0.001, topology frozen after 80% of ``total_steps``
      (``update_end``); DSN updates every 5 epochs (``update_every_epochs=5, steps_per_epoch=...``).

    Example::

        engine = dstlib.sparse.DSN(model, optimizer, density=0.2, total_steps=epochs * len(loader),
                                   update_every_epochs=5, steps_per_epoch=len(loader))
    """

    MIN_KERNEL = 5
    fixed: ClassVar[dict[str, Any]] = {"prune": "magnitude"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "random", "drop_fraction": 0.5, "drop_fraction_min": 0.001}

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        large = {name: module for name, module in model.named_modules()
                 if isinstance(module, nn.Conv1d) and module.kernel_size[0] >= self.MIN_KERNEL}
        groups = sorted({getattr(module, "out_groups", 3) for module in large.values()})
        checks.require(len(groups) <= 1, "out_groups", groups, "the same number of groups in every large kernel")
        checks.require(bool(large) or "include" in options, "model", type(model).__name__,
                       f"a model with nn.Conv1d kernels of at least {self.MIN_KERNEL} taps")
        options.setdefault("granularity", RegionGroups(groups[0] if groups else 3, fill="first_taps"))
        options.setdefault("distribution", "uniform")
        if "include" not in options and "masks" not in options:
            options["include"] = [f"^{re.escape(name)}\\.weight$" for name in large]
        total_steps = options.get("total_steps")
        if "update_end" not in options and isinstance(total_steps, int):
            options["update_end"] = int(0.8 * total_steps)
        super().__init__(model, optimizer, **options)

    @property
    def region_density(self) -> float:
        """Active weights over the weights the regions allow (DSN's ``density``)."""
        return self._active_weights() / self._capacity


class SLaK(_Preset):
    """SLaK (Liu et al. 2023): SLaK's sparse recipe in one call: SNIP layer ratios with random positions,
    magnitude prune and random regrowth, layers the ratios leave nearly dense kept dense.

    * Which weights: every conv and linear weight (SLaK masks every 2-D/4-D tensor), or with
      ``only_large_kernels=True`` only the large kernels of :class:`~dstlib.models.large_kernel.SLaKNet`
      (``*.large_kernel.lora1/lora2`` M x N and N x M, or ``full`` M x M; SLaK's ``--only-L``). ``include``,
      ``exclude``, ``dense_first`` and ``dense_last`` choose other weights.
    * Layer densities: SNIP's (:func:`~dstlib.sparse.prune_at_init.snip_ratios`): the global top ``density``
      of ``|w * dL/dw|`` on ``batch`` sets how many weights each layer keeps; positions are uniformly random
      (what SLaK's code calls ``snip``). A layer whose ratio is at least ``dense_threshold`` (0.99) is kept
      dense and leaves the engine (:attr:`dense_layers`); :attr:`overall_density` counts it as fully active.
    * Updates: fixed ``prune="magnitude"``; defaults ``grow="random"``, drop fraction 0.5 cosine-decayed to
      0.005 over the whole run (``update_end = total_steps``: SLaK never freezes the topology),
      ``update_every=2000`` is SLaK-T's ``-u`` (S/B: ``drop_fraction=0.3, update_every=100``).
    * Counts are read from the masks, never from non-zero weights: regrown weights start at 0.

    Args:
        density: fraction of the selected weights kept (SLaK: 0.6, "40% sparsity").
        batch: ``(inputs, targets)`` scored by SNIP on the freshly initialised model.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` for SNIP (default cross-entropy).

    Example::

        engine = dstlib.sparse.SLaK(model, optimizer, density=0.6, batch=(x, y),
                                    total_steps=epochs * len(loader), update_every=100)
    """

    DENSE_THRESHOLD = 0.99
    LARGE_KERNELS = r"\.large_kernel\.(lora1|lora2|full)\.conv\.weight$"
    fixed: ClassVar[dict[str, Any]] = {"prune": "magnitude"}
    UPDATE_EVERY = 2000
    defaults: ClassVar[dict[str, Any]] = {"grow": "random", "drop_fraction": 0.5, "drop_fraction_min": 0.005}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        density: float,
        batch: tuple,
        total_steps: int | None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        only_large_kernels: bool = False,
        dense_threshold: float = DENSE_THRESHOLD,
        seed: int = 0,
        **options: Any,
    ) -> None:
        check_density("density", density)
        checks.require(isinstance(only_large_kernels, bool), "only_large_kernels", only_large_kernels,
                       "True or False")
        checks.number("dense_threshold", dense_threshold, low=0, high=1, low_open=True)
        checks.require("masks" not in options, "masks", options.get("masks"),
                       "not given: SLaK draws its masks from SNIP ratios (use dstlib.sparse.Static for fixed masks)")
        selection = {key: options.pop(key) for key in ("include", "exclude", "dense_first", "dense_last")
                     if key in options}
        if only_large_kernels:
            checks.require("include" not in selection, "include", selection.get("include"),
                           "None with only_large_kernels=True (it selects the large kernels)")
            selection["include"] = [self.LARGE_KERNELS]
        params = sparse_parameters(model, **selection)
        if "update_end" not in options and isinstance(total_steps, int):
            options["update_end"] = total_steps
        if options.get("update_every") is None and "update_every_epochs" not in options:
            options["update_every"] = self.UPDATE_EVERY
        generator = torch.Generator().manual_seed(seed)
        ratios = snip_ratios(model, loss_fn, batch, density, generator=generator, params=params)
        self.dense_layers = [name for name, mask in ratios.items()
                             if mask.float().mean().item() >= dense_threshold]
        self._candidate_weights = sum(p.numel() for p in params.values())
        self._dense_weights = sum(params[name].numel() for name in self.dense_layers)
        masks = {name: mask for name, mask in ratios.items() if name not in self.dense_layers}
        checks.require(bool(masks), "density", density,
                       f"a density that leaves some layer below dense_threshold={dense_threshold}")
        super().__init__(model, optimizer, density=None, masks=masks, total_steps=total_steps, seed=seed,
                         **options)

    @property
    def overall_density(self) -> float:
        """Active weights over all selected weights, the layers kept dense counted as fully active (SLaK's
        "density" after its dense layers left the mask)."""
        return (self._active_weights() + self._dense_weights) / self._candidate_weights


class DSFF(_Preset):
    """E2ENet's dynamic sparse feature fusion (Wu et al. 2024): kernel-level DST of the fusion decoder.

    * Sparse: the fusion convolutions and the transposed-conv upsamplers of
      :class:`~dstlib.models.conv3d.E2ENet` (:data:`FUSION_WEIGHTS`); encoder, heads, norms and biases
      stay dense. Pass ``include`` for another model.
    * Fixed ``granularity="kernel"``: a mask entry switches a whole ``(1, 3, 3)`` kernel, one feature map's
      connection to another; fixed ``prune="magnitude"`` (a kernel's mean ``|w|``, i.e. its L1 norm).
    * Defaults, the paper's and not the engine's: ``distribution="uniform"`` (every fusion layer at
      ``density``; feature sparsity ``S = 1 - density``), ``grow="random"`` among inactive kernels, drop
      fraction 0.5 cosine-decayed to 0.001 over the whole run (``update_end = total_steps``), topology
      updates on (the released code's ``--fix False`` parses as True and silently froze them).

    Example::

        engine = dstlib.sparse.DSFF(model, optimizer, density=0.2, total_steps=epochs * len(loader),
                                    update_every=1200)
    """

    FUSION_WEIGHTS = r"^fusion\.(nodes\.[^.]+\.conv|ups\.[^.]+)\.weight$"
    fixed: ClassVar[dict[str, Any]] = {"prune": "magnitude", "granularity": "kernel"}
    defaults: ClassVar[dict[str, Any]] = {"grow": "random", "drop_fraction": 0.5, "drop_fraction_min": 0.001}

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any) -> None:
        if "masks" not in options:
            options.setdefault("include", [self.FUSION_WEIGHTS])
        options.setdefault("distribution", "uniform")
        total_steps = options.get("total_steps")
        if "update_end" not in options and isinstance(total_steps, int):
            options["update_end"] = total_steps
        super().__init__(model, optimizer, **options)


METHODS: dict[str, type[SparseEngine]] = {
    "set": SET,
    "rigl": RigL,
    "mest": MEST,
    "granet": GraNet,
    "gmp": GMP,
    "static": Static,
    "dsn": DSN,
    "dsff": DSFF,
    "slak": SLaK,
}
"""Preset classes by (lower-case) name, for configuration files."""


def create(method: str, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any) -> SparseEngine:
    """Build a preset by name: ``create("rigl", model, optimizer, density=0.1, total_steps=1000)``.

    Raises:
        ValueError: an unknown ``method`` (allowed: the keys of :data:`METHODS`, any case).
    """
    key = method.lower() if isinstance(method, str) else method
    checks.require(key in METHODS, "method", method, f"one of {', '.join(map(repr, METHODS))} (any case)")
    return METHODS[key](model, optimizer, **options)
