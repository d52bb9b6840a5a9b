"""The experiment layer every chapter shares: :func:`run` runs any chapter's grid (skip, resume, records,
extras, one progress bar), :func:`engine_factory` builds the sparsity engine of any method, the shared
knob sets carry their defaults, and :func:`grid` spells a grid over named axes.

A chapter module is a declaration (:class:`Chapter`): ``SPEC``, ``load``, ``points``, ``train_one`` and
``CLAIMS``; :mod:`dstlib.experiments.claims` judges the claims.

Conventions, the same in every chapter:

* **density vs sparsity.** The engine takes a density (fraction of weights kept); the papers speak of
  sparsity (fraction removed). A chapter's knobs use the word of its paper; grid points always carry
  ``density``, and every record's params hold both ``density`` and ``sparsity = 1 - density``.
* **baselines.** Declared as grid rules, not coded per chapter: :data:`DENSE_ONCE` runs the dense
  method once per seed (at density 1) instead of once per density.
* **per-method defaults** (such as GraNet's initial density) live in :func:`method_options`.
* **records.** A point whose record exists (same id, same code) is skipped and its record returned; an
  interrupted point resumes from its last checkpoint. Only rank 0 writes under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from dstlib import checks, results, sparse
from dstlib.atomic import torch_save
from dstlib.callbacks import Callback, EngineFactory
from dstlib.config import (
    FAST_DEV_EVAL_SAMPLES,
    FAST_DEV_STEPS,
    PRESENTATION_KNOBS,
    ChapterSpec,
    Config,
    Knob,
    parse_shard,
    shortened,
)
from dstlib.optimisation import Optimisation
from dstlib.train import distributed_context, pick_device

# The chapters' method names: "dense" and the engine's presets (one registry: dstlib.sparse.presets.METHODS).
METHODS = ("dense", *sparse.presets.METHODS)

# GraNet prunes gradually from this density to the target (Liu et al. 2021), from dense for targets above it.
GRANET_INIT_DENSITY = 0.8

# Grid rule: the dense baseline runs once per seed, at density 1.
DENSE_ONCE: Mapping[str, Mapping[Any, Mapping[str, Any]]] = {"method": {"dense": {"density": 1.0}}}

# Knobs of every chapter that trains with a DST engine, with RigL's values (Evci et al. 2020) as defaults.
# Each chapter sets the ones its paper uses in its SPEC's defaults, so the choice is visible there.
SPARSITY_KNOBS = {
    "distribution": Knob("layer-wise densities: uniform, ER or ERK", str, choices=("uniform", "er", "erk"),
                         default="erk"),
    "update_every": Knob("optimizer steps between topology updates", int, low=1, default=100),
    "drop_fraction": Knob("fraction of active weights dropped (and regrown) at an update, cosine-annealed",
                          float, low=0.0, high=1.0, high_open=True, default=0.3),
    "drop_fraction_min": Knob("floor the drop fraction is annealed to (RigL 0; ITOP/GraNet code 0.005)", float,
                              low=0.0, high=1.0, high_open=True, default=0.0),
    "update_end": Knob("fraction of training after which the topology is frozen (RigL 0.75)", float, low=0.0,
                       high=1.0, low_open=True, default=0.75),
    "dense_first": Knob("keep the first layer dense", bool, default=False),
}
# Topology updates counted in epochs instead of steps (DSN, the hard-samples code).
UPDATE_EPOCHS_KNOB = {"update_every_epochs": Knob("epochs between topology updates", float, low=0.0,
                                                  low_open=True)}
# GraNet's gradual pruning: when it reaches the target density, as a fraction of training.
PRUNE_END_KNOB = {"prune_end": Knob("fraction of training at which gradual pruning (GraNet) reaches the target",
                                    float, low=0.0, high=1.0, low_open=True)}
# The optimisation knobs of every chapter.
TRAINING_KNOBS = {
    "epochs": Knob("training epochs per run", int, low=1),
    "batch_size": Knob("mini-batch size (global, over all processes)", int, low=1),
    "lr": Knob("peak learning rate of SGD with Nesterov momentum", float, low=0.0, low_open=True),
    "weight_decay": Knob("L2 weight decay", float, low=0.0, default=5e-4),
    "lr_schedule": Knob("learning-rate schedule: cosine to zero, step decay, constant, or nnU-Net's poly decay", str,
                        choices=("cosine", "step", "constant", "poly"), default="cosine"),
    "lr_milestones": Knob("fractions of training at which the step schedule multiplies the LR by lr_gamma",
                          float, low=0.0, high=1.0, is_list=True, default=[0.5, 0.75]),
    "lr_gamma": Knob("LR factor at each milestone of the step schedule", float, low=0.0, low_open=True,
                     default=0.1),
}
# The presets whose topology changes during training with the config's schedule, and those that prune
# gradually to the target.
PRUNE_AND_REGROW = ("set", "rigl", "mest", "granet", "dsn")
GRADUAL = ("granet", "gmp")


def fit_options(config: Config, **optimisation: Any) -> dict[str, Any]:
    """The :func:`dstlib.train.fit` keywords that come from a chapter's :data:`TRAINING_KNOBS` and its
    device setting: epochs, batch size, device and the :class:`~dstlib.optimisation.Optimisation`; the
    keywords ``optimisation`` set its other fields (``optimizer="adamw"``, ``warmup_epochs``, ...) or
    replace a knob's value. The chapter's progress bar is the one over its runs (see :func:`run`), so
    ``fit`` shows none."""
    optim = Optimisation(**{"lr": config.lr, "weight_decay": config.weight_decay, "lr_schedule": config.lr_schedule,
                            "milestones": config.lr_milestones, "gamma": config.lr_gamma, **optimisation})
    return {"epochs": config.epochs, "batch_size": config.batch_size, "device": config.device, "optim": optim,
            "limit_batches": FAST_DEV_STEPS if config.fast_dev_run else 0}


def evaluation_part(data: Any, config: Config) -> Any:
    """``data`` to evaluate on: its first :data:`~dstlib.config.FAST_DEV_EVAL_SAMPLES` samples in a fast
    dev run (tensors, a tuple of them or any map-style dataset), all of it otherwise."""
    if not config.fast_dev_run:
        return data
    if isinstance(data, torch.Tensor):
        return data[:FAST_DEV_EVAL_SAMPLES]
    if isinstance(data, tuple | list) and data and all(isinstance(part, torch.Tensor) for part in data):
        return type(data)(part[:FAST_DEV_EVAL_SAMPLES] for part in data)
    return torch.utils.data.Subset(data, range(min(len(data), FAST_DEV_EVAL_SAMPLES)))


def present(*callbacks: Callback | None | bool) -> list[Callback]:
    """The callbacks given, without those a setting turned off (``None`` or ``False``, as in
    ``present(config.augment and Augmentation(random_crop_flip))``)."""
    return [callback for callback in callbacks if callback]


def headline_pair_on_every_seed(points: Sequence[Mapping[str, Any]], headline_variants: Collection[str],
                                ablation_seeds: Sequence[int] | None) -> list[dict[str, Any]]:
    """``points`` (dicts with ``seed`` and ``variant``) less the runs of the variants outside
    ``headline_variants`` on seeds not in ``ablation_seeds`` (``None``: every seed): the seed budget goes to
    the headline's pair, the book's ablations run on fewer seeds."""
    kept = None if ablation_seeds is None else set(ablation_seeds)
    return [dict(point) for point in points
            if kept is None or point["variant"] in headline_variants or point["seed"] in kept]


def grid(axes: Mapping[str, Sequence[Any]],
         rules: Mapping[str, Mapping[Any, Mapping[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Every combination of the named ``axes`` (the first axis varies slowest), as dicts.

    ``rules[axis][value]`` fixes other axes when ``axis`` takes ``value``; the duplicates this creates
    are dropped, so ``grid({"seed": [0, 1], "method": ["dense", "rigl"], "density": [0.1, 0.2]},
    DENSE_ONCE)`` has dense once per seed at density 1 and RigL at both densities.
    """
    rules = rules or {}
    points: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo, strict=True))
        for axis, by_value in rules.items():
            point.update(by_value.get(point.get(axis), {}))
        key = tuple(point.items())
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def densities_of(config: Config) -> list[float]:
    """The chapter's densities, from its ``densities`` or its ``sparsities`` knob."""
    if "densities" in config:
        return [float(d) for d in config.densities]
    return [round(1.0 - float(s), 6) for s in config.sparsities]


def method_options(method: str, density: float | None) -> dict[str, Any]:
    """Per-method defaults of the book: GraNet starts pruning at :data:`GRANET_INIT_DENSITY`."""
    if method == "granet" and density is not None:
        return {"init_density": 1.0 if density >= GRANET_INIT_DENSITY else GRANET_INIT_DENSITY}
    return {}


Masks = Mapping[str, torch.Tensor]


def steps_of(fraction: float, total_steps: int) -> int:
    """A point of training given as a fraction (``update_end``, ``prune_end``) in optimizer steps, at least 1."""
    return max(1, round(fraction * total_steps))


def engine_factory(method: str, density: float | None, config: Config, seed: int, *,
                   masks: Masks | Callable[[nn.Module], Masks] | None = None,
                   layer_densities: Mapping[str, float] | None = None, **options: Any) -> EngineFactory | None:
    """The one ``(model, optimizer, total_steps) -> engine`` builder of every chapter, for
    :func:`dstlib.train.fit`; ``None`` for ``method="dense"``. ``method`` names a preset of
    :data:`dstlib.sparse.presets.METHODS`.

    From the config it takes the :data:`SPARSITY_KNOBS` it has (the update knobs for the prune-and-regrow
    presets only), with ``update_end``, ``prune_begin`` and ``prune_end`` given as fractions of training and
    turned into steps here, and ``update_every_epochs`` turned into steps per epoch; then the method's book defaults
    (:func:`method_options`), then ``options``, which win. ``masks`` gives fixed initial masks (from SNIP,
    OMP, LTH, ...), or a function of the freshly built model that makes them; ``layer_densities`` a
    per-layer density map in place of the distribution.
    """
    if method == "dense":
        return None
    checks.one_of("method", method, METHODS)
    preset = sparse.presets.METHODS[method]
    kwargs: dict[str, Any] = {"seed": seed}
    if layer_densities is not None:
        kwargs.update(density=None, distribution=dict(layer_densities))
    elif masks is None:
        kwargs.update(density=density, distribution=config.get("distribution", "erk"))
    if "dense_first" in config and masks is None:
        kwargs["dense_first"] = config.dense_first
    if method in PRUNE_AND_REGROW:
        kwargs.update({k: config[k] for k in ("update_every", "drop_fraction", "drop_fraction_min") if k in config})
    kwargs.update(method_options(method, density))
    kwargs.update(options)
    fractions = {"update_end": config.get("update_end") if method in PRUNE_AND_REGROW else None,
                 "prune_end": config.get("prune_end") if method in GRADUAL else None}
    begin = config.get("prune_begin") if method in GRADUAL else None  # GMP's start; 0 is a valid step
    every_epochs = config.get("update_every_epochs")

    def build(model: nn.Module, optimizer: torch.optim.Optimizer, total_steps: int) -> sparse.SparseEngine:
        steps = {k: steps_of(f, total_steps) for k, f in fractions.items() if f is not None}
        if begin is not None:
            steps["prune_begin"] = round(begin * total_steps)
        if every_epochs is not None and "update_every" not in options:
            steps.update(update_every=None, update_every_epochs=every_epochs,
                         steps_per_epoch=total_steps // config.epochs)
        chosen = masks(model) if callable(masks) else masks
        initial = {} if chosen is None else {"masks": dict(chosen)}
        merged = {**steps, **kwargs, **initial}
        if every_epochs is not None and "update_every" not in options:
            merged["update_every"] = None
        return preset(model, optimizer, total_steps=total_steps, **merged)

    return build


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Under ``torchrun`` rank 0 runs the block (a download, a cache build) before the other ranks do,
    so they find its files instead of fetching the same ones at once; a no-op in one process."""
    context = distributed_context()
    if context.world_size == 1:
        yield
        return
    import torch.distributed as dist

    if not context.is_main:
        dist.barrier()
    yield
    if context.is_main:
        dist.barrier()


_CODE_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """A hash of the ``dstlib`` sources: a record is reused only by the code that made it."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        digest = hashlib.sha256()
        package = Path(__file__).resolve().parents[1]
        for path in sorted(package.rglob("*.py")):
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
        _CODE_FINGERPRINT = digest.hexdigest()[:16]
    return _CODE_FINGERPRINT


@dataclass
class Outcome:
    """What a chapter's training function returns for one point: final ``metrics``, the per-epoch
    ``history``, and ``extras`` (tensors for figures, such as mask snapshots) kept beside the record."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def point_params(point: Mapping[str, Any]) -> dict[str, Any]:
    """A grid point as record params: with both ``density`` and ``sparsity`` when it has a density."""
    params = dict(point)
    if "density" in params:
        params["density"] = float(params["density"])
        params["sparsity"] = round(1.0 - params["density"], 6)
    return params


def record_settings(config: Config, knobs: Mapping[str, Knob]) -> dict[str, Any]:
    """What a point's record depends on besides the point itself: every knob except the grid axes
    (``seeds``, ``densities``, ...: the point carries its own value) and the presentation knobs, so a
    point's record is found again whatever grid it is part of."""
    return {key: value for key, value in config.items()
            if key not in PRESENTATION_KNOBS and not (key in knobs and knobs[key].axis)}


def record_paths(config: Config, point: Mapping[str, Any]) -> tuple[str, Path, Path]:
    """``(record id, record path, extras path)`` of one grid point: the id depends on the chapter, the
    profile, the point, the settings of :func:`record_settings` and the world size."""
    from dstlib import experiments

    knobs = experiments.spec(config.chapter).all_knobs()
    settings = {**record_settings(config, knobs), "world_size": distributed_context().world_size}
    record_id = results.run_id(config.chapter, config.profile, point_params(point), settings)
    folder = results.results_root(config.out_dir) / config.chapter
    return record_id, folder / f"{record_id}.json", folder / f"{record_id}.extras.pt"


def read_back(path: Path, extras_path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The record at ``path`` and its extras when the same code wrote it, else ``None``."""
    if not path.exists():
        return None
    record = results.read_records(path)[0]
    if record["provenance"].get("code") != code_fingerprint():
        return None
    return record, torch.load(extras_path, weights_only=False) if extras_path.exists() else {}


def look_up(config: Config, point: Mapping[str, Any], *, say: Callable[[str], None] = print
            ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(record, extras)`` of a point whose record the same code already wrote (``say`` gets one line
    that it is skipped), else ``None`` (one line when an interrupted run of it will resume)."""
    record_id, path, extras_path = record_paths(config, point)
    shown = ", ".join(f"{k}={v}" for k, v in point.items())
    found = read_back(path, extras_path)
    main = distributed_context().is_main
    if found is not None and main:
        say(f"skip   {shown}: its record exists ({path.name})")
    elif found is None and checkpoint_path(path, record_id).exists() and main:
        say(f"resume {shown} from its checkpoint ({checkpoint_path(path, record_id).name})")
    return found


def checkpoint_path(record_path: Path, record_id: str) -> Path:
    return record_path.parent / "checkpoints" / f"{record_id}.pt"


def train_point(config: Config, point: Mapping[str, Any], train: Callable[[Mapping[str, Any], Path], Outcome]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one grid point through ``train(params, checkpoint_path)``, write its record (and extras) and
    remove its checkpoint; returns ``(record, extras)``."""
    params = point_params(point)
    context = distributed_context()
    record_id, path, extras_path = record_paths(config, point)
    marked = {"fast_dev_run": True} if config.fast_dev_run else {}  # a column no analysis of real runs has
    checkpoint = checkpoint_path(path, record_id)
    started = time.perf_counter()
    outcome = train(params, checkpoint)
    record = results.make_record(id=record_id, chapter=config.chapter, profile=config.profile,
                                 params={**params, **marked},
                                 metrics=outcome.metrics, history=outcome.history,
                                 wall_time_s=time.perf_counter() - started, config=config.to_dict(),
                                 device=pick_device(config.device), world_size=context.world_size,
                                 code=code_fingerprint())
    if context.is_main:
        if outcome.extras:
            torch_save(extras_path, outcome.extras)
        results.write_record(record, config.out_dir)
        checkpoint.unlink(missing_ok=True)
    return record, outcome.extras


def run_point(config: Config, point: Mapping[str, Any], train: Callable[[Mapping[str, Any], Path], Outcome], *,
              say: Callable[[str], None] = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train and evaluate one grid point through ``train(params, checkpoint_path)`` and write its record.

    Returns ``(record, extras)``. When the record of this point (same chapter, profile, params, the
    settings of :func:`record_settings` and world size) was written by the same code, nothing is trained:
    the record and its extras are read back. ``train`` should pass ``checkpoint_path`` to
    :func:`dstlib.train.fit` with ``resume=True``, so an interrupted point continues from its last epoch;
    the checkpoint is removed once the record is written. ``say`` gets one line when a point is skipped
    or resumed.
    """
    found = look_up(config, point, say=say)
    return found if found is not None else train_point(config, point, train)


@dataclass
class ChapterResult:
    """What :func:`run` returns: one record per grid point (also written as JSON under ``out_dir``), the
    records as a DataFrame, and each record's in-memory extras (mask snapshots, curves) for figures."""

    config: Config
    records: list[dict[str, Any]] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return results.to_frame(self.records)

    def extras_where(self, **params: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``(params, extras)`` of every run whose params match ``params`` and that kept extras."""
        return [(record["params"], extras) for record, extras in zip(self.records, self.extras, strict=True)
                if extras and all(record["params"].get(k) == v for k, v in params.items())]


class Chapter(Protocol):
    """What a chapter module declares (see :mod:`dstlib.experiments`): nothing else is needed to run it.

    * ``SPEC``: its knobs and profiles (:class:`dstlib.config.ChapterSpec`);
    * ``load(config)``: its data, loaded once per run (any object ``train_one`` understands);
    * ``points(config)``: its grid, a list of dicts (each one run and one record);
    * ``train_one(config, point, data, checkpoint) -> Outcome``: one run;
    * ``CLAIMS``: its claims (:class:`dstlib.experiments.claims.ClaimSpec`), judged by
      :func:`dstlib.experiments.claims.judge` on the records' frame, or on ``judged_frame(result)`` where
      a chapter defines one (chapter 8: its claims read the benchmark and training parts together).

    Optionally ``stage(point) -> int``: points of a stage train only once every point of the stages
    below it has its record (chapter 3: LTH and OMP start from the weights of a dense run);
    ``claims_for(profile)``: the claims judged in ``profile`` where they differ from ``CLAIMS`` (the
    paper profile's), see :func:`dstlib.experiments.claims_of`; and for paper scale
    (:mod:`dstlib.experiments.scale`): ``paper_steps(config, point) -> (steps, samples per step[, sample
    cost])`` of a run (its cost table, and the balance of :func:`shard_points`; see :func:`paper_steps_of`)
    and ``fixture(root)``, which writes a tiny dataset in the real on-disk layout of the paper profile's
    data under ``root``.
    """

    SPEC: ChapterSpec
    CLAIMS: Sequence[Any]

    def load(self, config: Config) -> Any: ...

    def points(self, config: Config) -> list[dict[str, Any]]: ...

    def train_one(self, config: Config, point: Mapping[str, Any], data: Any, checkpoint: Path) -> Outcome: ...


def run(chapter: Chapter, config: Config, data: Any = None) -> ChapterResult:
    """Run every point of ``chapter``'s grid for ``config`` (of its ``config.shard`` slice, see
    :func:`shard_points`): records already written by the same code are read back (one line says so),
    interrupted points resume from their checkpoint, new ones are trained, in ``config.workers``
    processes at once on a CPU (:func:`trained_points`). ``data`` replaces ``chapter.load(config)`` (a
    notebook that already loaded it). Shows one progress bar over the points (``config.progress``) on
    stderr, with the time left. A fast dev run first prints what it shortened."""
    from tqdm import tqdm

    if config.chapter != chapter.SPEC.name:
        raise ValueError(f"config.chapter={config.chapter!r}: allowed {chapter.SPEC.name!r}, the chapter run")
    grid_points = chapter.points(config)
    points = shard_points(chapter, config, grid_points)
    main = distributed_context().is_main
    if config.fast_dev_run and main:
        print(f"fast dev run of {config.chapter}/{config.profile}: {FAST_DEV_STEPS} steps and "
              f"{FAST_DEV_EVAL_SAMPLES} evaluation samples per point; " + "; ".join(shortened(chapter.SPEC, config)))
    with torch_threads(threads_per_point(config)):  # data built by training (EL2N scores) too
        data = chapter.load(config) if data is None else data
    done: list[tuple[dict[str, Any], dict[str, Any]] | None] = []
    show = bool(config.progress) and main
    with tqdm(total=len(points), desc=config.chapter, unit="run", disable=not show, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for point in points:
            done.append(look_up(config, point, say=bar.write if show else print))
            bar.update(done[-1] is not None)
        stage = getattr(chapter, "stage", lambda point: 0)
        for level in sorted({stage(point) for point in points}):
            todo = [index for index, point in enumerate(points) if done[index] is None and stage(point) == level]
            if todo and len(points) < len(grid_points):
                require_stages_below(config, [point for point in grid_points if stage(point) < level], level)
            for index, trained in trained_points(chapter, config, data, points, todo):
                done[index] = trained
                bar.update()
    result = ChapterResult(config)
    for record, extras in done:  # type: ignore[misc]  # every point is done here
        result.records.append(record)
        result.extras.append(extras)
    return result


def paper_steps_of(chapter: Chapter, config: Config, point: Mapping[str, Any]) -> tuple[float, float, float]:
    """``(optimizer steps, samples per step, sample cost)`` of ``point`` from the chapter's ``paper_steps``,
    which may leave out the third value: the cost of one of its samples relative to a sample of the fast dev
    record that prices it (1 when they are alike; chapter 6: the series' length over the fast dev
    problem's)."""
    steps, per_step, *sample_cost = chapter.paper_steps(config, point)
    return float(steps), float(per_step), float(sample_cost[0]) if sample_cost else 1.0


def point_cost(chapter: Chapter, config: Config, point: Mapping[str, Any]) -> float:
    """The estimated cost of training ``point``: the samples it trains on times their relative cost, from
    the chapter's ``paper_steps(config, point)`` (:func:`paper_steps_of`) where it declares it, else 1."""
    if not hasattr(chapter, "paper_steps"):
        return 1.0
    steps, per_step, sample_cost = paper_steps_of(chapter, config, point)
    return steps * per_step * sample_cost


def shard_assignment(costs: Sequence[float], shards: int) -> list[int]:
    """The slice (0-based) of each of the points whose ``costs`` are given, balanced over ``shards``: the
    costliest point first goes to the slice with the least cost so far (the lowest-numbered on a tie), so
    the assignment is deterministic, every point is in exactly one slice and the largest slice exceeds
    the mean by less than the costliest point."""
    totals = [0.0] * shards
    slices = [0] * len(costs)
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        chosen = min(range(shards), key=lambda k: (totals[k], k))
        slices[index] = chosen
        totals[chosen] += costs[index]
    return slices


def shard_points(chapter: Chapter, config: Config, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points of ``points`` in ``config.shard``'s slice ``K/N`` (all of them for ``1/1``), in grid
    order, by :func:`shard_assignment` of their :func:`point_cost`."""
    k, n = parse_shard(config.shard)
    if n == 1:
        return points
    slices = shard_assignment([point_cost(chapter, config, point) for point in points], n)
    return [point for point, chosen in zip(points, slices, strict=True) if chosen == k - 1]


def require_stages_below(config: Config, below: list[dict[str, Any]], level: int) -> None:
    """A shard trains points of stage ``level`` only when every point of the stages below it, in any
    slice, has its record (chapter 3's LTH starts from the dense run's weights); a ``ValueError`` names
    what is missing otherwise."""
    missing = [point for point in below if read_back(*record_paths(config, point)[1:]) is None]
    if missing:
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in point.items()) for point in missing[:3])
        raise ValueError(f"shard={config.shard!r}: its stage-{level} points start from the records of {len(missing)} "
                         f"earlier-stage points that other slices train and that are not written yet ({shown}"
                         f"{', ...' if len(missing) > 3 else ''}); run this shard again once those slices are done "
                         "(its finished records are kept)")


_WORK: tuple[Chapter, Config, Any, list[dict[str, Any]]] | None = None  # what forked workers inherit


def _start_worker(threads: int) -> None:
    """A worker trains with ``threads`` torch threads and leaves Ctrl-C to the parent, which stops it
    (one line from the parent, no traceback from each worker)."""
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _train(chapter: Chapter, config: Config, data: Any, points: list[dict[str, Any]],
           index: int) -> tuple[int, tuple[dict[str, Any], dict[str, Any]]]:
    return index, train_point(config, points[index], lambda params, checkpoint: chapter.train_one(
        config, params, data, checkpoint))


def _train_in_worker(index: int) -> tuple[int, tuple[dict[str, Any], dict[str, Any]]]:
    return _train(*_WORK, index)  # type: ignore[misc]  # set before the pool forks


def trained_points(chapter: Chapter, config: Config, data: Any, points: list[dict[str, Any]],
                   todo: list[int]) -> Iterator[tuple[int, tuple[dict[str, Any], dict[str, Any]]]]:
    """``(index, (record, extras))`` of each point ``points[index]`` of ``todo``, as each finishes.

    Every point trains with :func:`threads_per_point` torch threads (one each for two workers on two
    cores), as :func:`run` loads the data, so a point's record is the same whether it trains in a worker
    or here (torch's CPU kernels round differently with another thread count, in the last bits of a
    loss). On a CPU, in
    one process (not under ``torchrun``) and with more than one point to train, ``config.workers``
    forked processes share ``data`` and train the points at once: two single-thread processes train
    more points per second than one process with two threads. Otherwise they train here, one after
    another. Ctrl-C stops the workers; the points they had begun resume from their last checkpoint on
    the next run."""
    global _WORK
    threads = threads_per_point(config)
    workers = min(config.workers, len(todo))
    if workers < 2 or pick_device(config.device).type != "cpu" or distributed_context().world_size > 1:
        with torch_threads(threads):
            for index in todo:
                yield _train(chapter, config, data, points, index)
        return
    _WORK = (chapter, config, data, points)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker,
                               initargs=(threads,))
    try:
        yield from (future.result() for future in as_completed([pool.submit(_train_in_worker, i) for i in todo]))
    except BaseException:  # a point failed or Ctrl-C: stop the others (Python 3.14 calls it terminate_workers)
        for process in list(pool._processes.values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _WORK = None


def threads_per_point(config: Config) -> int:
    """``config.workers``'s share of this process's torch threads (at least one)."""
    return max(1, torch.get_num_threads() // config.workers)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Train with ``threads`` torch threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def recorded(chapter: Chapter, config: Config) -> tuple[ChapterResult, list[dict[str, Any]]]:
    """The records of ``chapter``'s grid for ``config`` that the same code already wrote, and the points
    that have none: reads, never trains (a book page that gathers the chapters' results)."""
    result, missing = ChapterResult(config), []
    for point in chapter.points(config):
        found = read_back(*record_paths(config, point)[1:])
        if found is None:
            missing.append(dict(point))
        else:
            result.records.append(found[0])
            result.extras.append(found[1])
    return result, missing


def by_seed(frame: pd.DataFrame, metric: str, scale: float = 100.0, **where: Any) -> pd.Series:
    """``metric`` (times ``scale``, e.g. accuracy in points) of the runs matching ``where``, indexed by seed.

    A ``where`` value that is a tuple matches any of its values. Several runs of one seed (a tuple, or a
    setting ``where`` leaves open, such as every dataset) give their mean, one contrast that averages
    them; a seed that lacks some of the runs the others have is left out."""
    rows = frame
    if metric not in rows or "seed" not in rows or any(key not in rows for key in where):
        return pd.Series(dtype=float)
    for key, value in where.items():
        rows = rows[rows[key].isin(value) if isinstance(value, tuple) else rows[key] == value]
    grouped = rows.groupby("seed")[metric]
    counts = grouped.count()
    return (grouped.mean()[counts == counts.max()] * scale).sort_index()


def paired_values(frame: pd.DataFrame, metric: str, first: Mapping[str, Any], second: Mapping[str, Any],
                  scale: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of the runs ``first`` and of the runs ``second``, aligned by seed over the seeds both have
    (runs of one seed share the initial weights and the data order, so they pair)."""
    return align_by_seed(by_seed(frame, metric, scale, **first), by_seed(frame, metric, scale, **second))


def align_by_seed(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two seed-indexed series as arrays over the seeds where both have a value, in seed order."""
    seeds = a.dropna().index.intersection(b.dropna().index).sort_values()
    return a[seeds].to_numpy(), b[seeds].to_numpy()


def gathered(chapter: Chapter, config: Config, shards: int) -> ChapterResult:
    """The records of ``chapter``'s whole grid for ``config``, written by the ``shards`` slices of a sharded
    run (``shard=K/N``), as one run; reads, never trains. A ``ValueError`` names every slice that lacks
    records and how many, so a missing slice is never analysed as a smaller grid."""
    checks.integer("shards", shards, low=1)
    result, missing = recorded(chapter, config)
    if missing:
        points = chapter.points(config)
        slices = shard_assignment([point_cost(chapter, config, point) for point in points], shards)
        absent = sorted({slices[points.index(point)] + 1 for point in missing})
        counts = ", ".join(f"{k}/{shards} ({sum(slices[points.index(p)] + 1 == k for p in missing)} points)"
                           for k in absent)
        raise ValueError(f"{config.chapter}/{config.profile}: {len(missing)} of {len(points)} points have no record; "
                         f"missing from shard(s) {counts}: run them with --shard K/{shards} (or the whole grid "
                         f"unsharded) before the analysis")
    return result
