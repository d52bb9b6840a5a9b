"""Chapter 8, "Where is the speed-up?": wall-clock time and memory of sparse networks against dense ones.

Its grid has points of two kinds (the ``part`` of each point and record):

* **benchmark** points (one per layer shape and seed): :func:`dstlib.sparse.benchmark.benchmark` times
  one training step and one inference batch of an MLP in its dense, masked, truly sparse, CSR and
  neuron-level forms, at every density and batch size, interleaved in one process so that ratios to the
  dense model compare like with like. Each seed is an independent replicate (its own masks and weights);
  the record also holds the FLOPs ratio that :mod:`dstlib.sparse.flops` counts for each variant, so the
  chapter can set the promise (FLOPs) beside the measurement (wall clock). The point says whether its
  replicate also profiles memory (``memory``: the knob, on the grid's first seed only).
* **training** points (one per variant and seed): an MLP trained on mnist1d through
  :func:`dstlib.train.fit` as a dense model, as a truly sparse model (RigL or SET on
  :mod:`dstlib.sparse.truly_sparse`) at ``train_density``, and as a physically smaller dense MLP with the
  same number of weights (neuron-level sparsity, :func:`dstlib.sparse.structured.neuron_fraction`).

Timings are measurements, not results that a seed reproduces: a record is reused only when the same code
(the ``dstlib`` fingerprint) and the same settings made it, so a rerun of the same notebook shows the same
numbers, and any code change measures afresh. A record's settings are every knob of the chapter that is not
a grid axis (see :func:`dstlib.experiments.common.record_settings`), those of the other part included.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dstlib import data, sparse
from dstlib.callbacks import Sparsity
from dstlib.config import ChapterSpec, Config, Knob
from dstlib.evaluation import evaluate
from dstlib.experiments.claims import AT, BOOK_EFFECT, BOOK_EFFECT_REFERENCE, ClaimSpec, levels
from dstlib.experiments.common import (
    SPARSITY_KNOBS,
    TRAINING_KNOBS,
    Outcome,
    fit_options,
    main_process_first,
    present,
    steps_of,
)
from dstlib.sparse import benchmark, structured, truly_sparse
from dstlib.sparse.engine import SparseEngine
from dstlib.sparse.flops import flops as count_flops
from dstlib.train import fit, pick_device

# The goal: at 95% sparsity the truly sparse training step beats the dense one (ratio below 1) at
# batch sizes up to 64, and CSR inference reaches a third of the ideal speed-up 1 / density.
GOAL_DENSITY = 0.05
GOAL_MAX_BATCH = 64
GOAL_SHARE_OF_IDEAL = 1 / 3
# Neither goal has an effect size: tested against the smallest speed-up this book calls one (10%, on the log
# scale); accuracy against the book's smallest effect of interest (claims.BOOK_EFFECT).
SPEEDUP_OF_INTEREST = 1.1
SPEEDUP_REFERENCE = "the book's smallest speed-up of interest, 1.1x"

VARIANTS = ("dense", "truly_sparse", "neurons")
"""The training comparison: dense MLP, truly sparse MLP (RigL or SET), smaller dense MLP (same weights)."""
PARTS = ("benchmark", "training")
"""The two kinds of grid points (and records): a benchmark replicate, a training run."""

KNOBS = {
    "shapes": Knob("benchmark MLPs as widths joined by '-', input-hidden...-output, e.g. '512-2048-2048-10'", str,
                   is_list=True, axis=True),
    "densities": Knob("benchmark densities (fractions of weights kept)", float, low=0.0, high=1.0, low_open=True,
                      high_open=True, is_list=True),
    "batch_sizes": Knob("benchmark batch sizes", int, low=1, is_list=True),
    "repeats": Knob("interleaved timing rounds per benchmark point (medians over them)", int, low=1, default=5),
    "calls": Knob("calls per variant per round", int, low=1, default=3),
    "memory": Knob("measure peak memory (CPU, first seed only)", bool, default=True),
    "threads": Knob("torch threads while measuring and training; None leaves the setting as it is", int, low=1,
                    optional=True, default=None),
    "method": Knob("DST method of the truly sparse MLP", str, choices=("rigl", "set"), default="rigl"),
    "hidden": Knob("hidden width of the mnist1d MLP (two hidden layers)", int, low=2),
    "train_density": Knob("density of the truly sparse MLP (and the weight budget of the smaller dense one)", float,
                          low=0.0, high=1.0, low_open=True, high_open=True, default=0.05),
    "variants": Knob("models of the training comparison", str, choices=VARIANTS, is_list=True, axis=True,
                     default=list(VARIANTS)),
    "generated_samples": Knob("mnist1d samples generated, split 80/20 into train and test", int, low=20,
                              default=25_000),
    "train_samples": Knob("training samples used, a fixed random subset (0 = all)", int, low=0, default=0),
    **TRAINING_KNOBS,
    **SPARSITY_KNOBS,
}


def widths_of(shape: str) -> tuple[int, ...]:
    """``"512-2048-2048-10"`` -> ``(512, 2048, 2048, 10)``; a ``ValueError`` naming ``shapes`` otherwise."""
    parts = shape.split("-")
    if len(parts) < 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"shapes=[..., {shape!r}, ...]: allowed strings of at least three positive widths joined "
                         "by '-' (input-hidden...-output), e.g. '512-2048-2048-10'")
    return tuple(int(p) for p in parts)


def check_shapes(config: Config) -> None:
    """What the knobs alone cannot check, before any work: the shapes parse."""
    for shape in config.shapes:
        widths_of(shape)


SPEC = ChapterSpec(
    name="where_is_the_speedup",
    title="Where is the speed-up?",
    notebook="book/08_where_is_the_speedup.ipynb",
    paper="hoefler2021sparsity",
    knobs=KNOBS,
    checks=(check_shapes,),
    # RigL's engine settings (Evci et al. 2020) for the truly sparse MLP: ERK, drop fraction 0.3
    # cosine-annealed to 0 at 75% of training, first layer sparse; the chapter's optimiser: SGD 0.05 with
    # cosine decay, batch 64, weight decay 5e-4; a topology update every 20 steps.
    defaults={"distribution": "erk", "drop_fraction": 0.3, "drop_fraction_min": 0.0, "update_end": 0.75,
              "dense_first": False, "weight_decay": 5e-4, "lr_schedule": "cosine", "lr": 0.05, "batch_size": 64,
              "update_every": 20},
    profiles={
        "smoke": {"shapes": ["64-256-256-10"], "densities": [0.1, 0.05], "batch_sizes": [8], "repeats": 1,
                  "calls": 1, "seeds": [0], "hidden": 128, "epochs": 1, "generated_samples": 2000,
                  "train_samples": 500, "update_every": 2},
        # Chosen by a pilot (see the chapter): two MLP sizes whose dense training step is long enough to time
        # (2-40 ms on one core), five interleaved rounds (three let one burst of load decide a median at batch
        # 1), four seeds as replicates; densities up to 0.3 to bracket most crossovers (0.5, left to the paper
        # profile, doubles the time: a truly sparse step with an update there costs tens of dense steps). The
        # trained MLP 40-1024-1024-10 at 95% sparsity (dense 65% test accuracy: not saturated).
        "tutorial": {"shapes": ["256-1024-1024-10", "512-2048-2048-10"],
                     "densities": [0.3, 0.2, 0.1, 0.05, 0.02], "batch_sizes": [1, 8, 64], "calls": 2,
                     "seeds": [0, 1, 2, 3], "hidden": 1024, "epochs": 10, "train_samples": 4000},
        # The benchmark's full grid (benchmarks/bench_sparse_training.py) plus a wide layer; on a GPU the 2:4
        # semi-structured rows appear. The trained MLP at 4096 hidden units on all of mnist1d.
        "paper": {"shapes": ["1024-4096-4096-10", "4096-4096-4096-1000"],
                  "densities": [0.5, 0.2, 0.1, 0.05, 0.02, 0.01], "batch_sizes": [1, 8, 64, 256],
                  "seeds": [0, 1, 2], "hidden": 4096, "epochs": 30, "update_every": 100},
    },
)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (``None``: as set), restoring the setting afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def points(config: Config) -> list[dict[str, Any]]:
    """Every benchmark replicate (shape, seed; ``memory`` on the first seed when the knob asks for it), then
    every training run (seed, variant; the dense one at density 1, the others at ``train_density``)."""
    bench = [{"part": "benchmark", "shape": shape, "seed": seed, "memory": config.memory and seed == config.seeds[0]}
             for shape in config.shapes for seed in config.seeds]
    train = [{"part": "training", "variant": variant, "density": config.train_density if variant != "dense" else 1.0,
              "seed": seed} for seed in config.seeds for variant in config.variants]
    return bench + train


def load(config: Config) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """mnist1d as flat vectors for the training points: ``((x_train (N, 40), y_train), (x_test, y_test))``, the
    training split cut to ``train_samples`` by :func:`dstlib.data.subset`."""
    with main_process_first():
        train_set, test_set = (data.load("mnist1d", split, num_samples=config.generated_samples)
                               for split in ("train", "test"))
    train_set = data.subset(train_set, config.train_samples)
    return tuple((s.tensors[0].flatten(1), s.tensors[1]) for s in (train_set, test_set))  # type: ignore[return-value]


def train_one(config: Config, point: Mapping[str, Any], data: tuple, checkpoint: Path) -> Outcome:
    """One point: a benchmark replicate (:func:`benchmark_one`) or a training run (:func:`train_variant`)."""
    if point["part"] == "benchmark":
        return benchmark_one(config, point)
    return train_variant(config, point, *data)


# ------------------------------------------------------------------------------------------ the benchmark
def flops_ratios(widths: Sequence[int], density: float, seed: int = 0) -> dict[str, float]:
    """What FLOPs promise, from :func:`dstlib.sparse.flops.flops`: training-step and inference FLOPs of the
    MLP with uniform masks at ``density`` (a static masked engine) and of the neuron-level MLP with the same
    number of weights, each relative to the dense MLP (batch of one; the ratio does not depend on it)."""
    model = benchmark.mlp(widths, seed)
    masks = truly_sparse.initial_masks(model, density, distribution="uniform", seed=seed)
    engine = SparseEngine(model, torch.optim.SGD(model.parameters(), lr=0.0), density=None, masks=masks, prune=None,
                          grow=None)
    example = torch.zeros(1, widths[0])
    sparse_cost = count_flops(model, example, engine)
    engine.remove()
    keep = structured.neuron_fraction(widths, density)
    small = benchmark.mlp([widths[0], *(max(1, round(keep * w)) for w in widths[1:-1]), widths[-1]], seed)
    neurons = count_flops(small, example)
    return {"train": sparse_cost.training_step / sparse_cost.dense_training_step,
            "inference": sparse_cost.sparse_forward / sparse_cost.dense_forward,
            "neurons_train": neurons.training_step / sparse_cost.dense_training_step,
            "neurons_inference": neurons.dense_forward / sparse_cost.dense_forward}


def benchmark_one(config: Config, point: Mapping[str, Any]) -> Outcome:
    """One benchmark replicate: every density and batch size of one shape, with the seed's masks."""
    widths = widths_of(point["shape"])
    seed = point["seed"]
    with torch_threads(config.threads):
        frame = benchmark.benchmark(widths, config.densities, config.batch_sizes, repeats=config.repeats,
                                    calls=config.calls, memory=point["memory"], device=pick_device(config.device),
                                    seed=seed)
        threads = torch.get_num_threads()
    promised = {d: flops_ratios(widths, d, seed) for d in config.densities}

    def flops_ratio(row: Mapping[str, Any]) -> float:
        promise = promised.get(row["density"])
        if row["variant"] in ("dense", "dense_fp16"):
            return 1.0
        if row["variant"] == "semi_structured":
            return 0.5
        if row["variant"] == "neurons":
            return promise[f"neurons_{row['mode']}"]
        if row["variant"] == "truly_sparse+update":  # every step computes the dense weight gradient: 2 f_S + f_D
            return (2 * promise["inference"] + 1) / 3
        return promise[row["mode"]]

    frame["flops_ratio"] = [flops_ratio(row) for row in frame.to_dict("records")]
    metrics = {"rows": frame.to_dict("records"), "threads": threads, "load_average": list(frame.attrs["load_average"]),
               "notes": list(frame.attrs["notes"])}
    return Outcome(metrics)


# -------------------------------------------------------------------------------- the training comparison
def model_widths(config: Config, variant: str, num_inputs: int, num_classes: int) -> tuple[int, ...]:
    """Widths of the trained MLP of ``variant``: two hidden layers of ``hidden`` units, or for ``"neurons"``
    the fraction of them that leaves ``train_density`` times the weights (:func:`~dstlib.sparse.structured.
    neuron_fraction`)."""
    widths = (num_inputs, config.hidden, config.hidden, num_classes)
    if variant != "neurons":
        return widths
    keep = structured.neuron_fraction(widths, config.train_density)
    return (num_inputs, *(max(1, round(keep * w)) for w in widths[1:-1]), num_classes)


def truly_sparse_engine(config: Config, seed: int):
    """The ``(model, optimizer, total_steps) -> engine`` builder of the truly sparse MLP for
    :func:`dstlib.train.fit`: a :class:`~dstlib.sparse.truly_sparse.TrulySparseEngine` with the prune and grow
    rules of the engine preset of ``method`` (:data:`dstlib.sparse.presets.METHODS`: RigL magnitude and
    gradient, SET sign-aware magnitude and random) and the chapter's update knobs.

    Not :func:`~dstlib.experiments.common.engine_factory`: that builds the masked engine, whose presets take a
    density and a distribution; the truly sparse engine takes the masks its :class:`SparseLinear` layers hold."""
    preset = sparse.presets.METHODS[config.method]
    rules = {**preset.defaults, **preset.fixed}

    def build(model, optimizer, total_steps):
        return truly_sparse.TrulySparseEngine(
            model, optimizer, prune=rules["prune"], grow=rules["grow"], update_every=config.update_every,
            total_steps=total_steps, update_end=steps_of(config.update_end, total_steps),
            drop_fraction=config.drop_fraction, drop_fraction_min=config.drop_fraction_min, seed=seed)

    return build


def train_variant(config: Config, point: Mapping[str, Any], train, test) -> Outcome:
    """Train one (variant, seed) through :func:`dstlib.train.fit` and evaluate it.

    No checkpoint is written: a point takes seconds, and saving the dense model every epoch would add its
    cost to the dense run's wall time only."""
    variant, seed = point["variant"], point["seed"]
    widths = model_widths(config, variant, train[0].shape[1], int(train[1].max()) + 1)
    engine_factory = None
    if variant == "truly_sparse":
        def build() -> torch.nn.Module:
            dense = benchmark.mlp(widths, seed)
            masks = truly_sparse.initial_masks(dense, config.train_density, distribution=config.distribution,
                                               dense_first=config.dense_first, seed=seed)
            return truly_sparse.to_truly_sparse(dense, masks)

        engine_factory = truly_sparse_engine(config, seed)
    else:
        def build() -> torch.nn.Module:
            return benchmark.mlp(widths, seed)

    with torch_threads(config.threads):
        fitted = fit(build, train, callbacks=present(engine_factory and Sparsity(engine_factory)), seed=seed,
                     **fit_options(config))
        accuracy = evaluate(fitted.model, test)["accuracy"]
    layers = [m for m in fitted.model.modules() if isinstance(m, torch.nn.Linear | truly_sparse.SparseLinear)]
    weights = sum(m.nnz if isinstance(m, truly_sparse.SparseLinear) else m.weight.numel() for m in layers)
    metrics = {"test_accuracy": accuracy, "train_loss": fitted.history[-1]["train_loss"],
               "train_time_s": fitted.wall_time_s, "steps": fitted.steps,
               "step_ms": 1e3 * fitted.wall_time_s / fitted.steps, "weights": weights,
               "hidden_width": widths[1]}
    return Outcome(metrics, fitted.history)


# ----------------------------------------------------------------------------------------- analysis
def benchmark_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The benchmark rows of all benchmark records, one row per (shape, seed, mode, variant, density, batch),
    with the columns of :func:`dstlib.sparse.benchmark.benchmark` plus ``shape``, ``seed``, ``flops_ratio``."""
    rows = [{"shape": r["params"]["shape"], "seed": r["params"]["seed"], **row}
            for r in records if r["params"].get("part") == "benchmark" for row in r["metrics"]["rows"]]
    return pd.DataFrame(rows)


def training_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The training records as one row per (variant, seed), with the accuracy in points and each run's
    wall time per step relative to the dense run of its seed (``time_ratio``)."""
    rows = [{**r["params"], **r["metrics"]} for r in records if r["params"].get("part") == "training"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["accuracy_pct"] = 100 * frame["test_accuracy"]
    dense = frame[frame["variant"] == "dense"].set_index("seed")["step_ms"]
    frame["time_ratio"] = frame["step_ms"] / frame["seed"].map(dense)
    return frame


def medians(bench: pd.DataFrame) -> pd.DataFrame:
    """Per (shape, mode, variant, density, batch): the median ``ratio``, ``of_ideal``, ``ms`` and ``peak_bytes``
    over seeds, their min and max ratio, the FLOPs ratio and the number of seeds."""
    keys = ["shape", "mode", "variant", "density", "batch"]
    grouped = bench.groupby(keys, sort=False)
    out = grouped.agg(ratio=("ratio", "median"), ratio_min=("ratio", "min"), ratio_max=("ratio", "max"),
                      of_ideal=("of_ideal", "median"), ms=("ms", "median"), peak_bytes=("peak_bytes", "median"),
                      flops_ratio=("flops_ratio", "first"), seeds=("seed", "nunique"))
    return out.reset_index()


def crossover_density(densities: Sequence[float], ratios: Sequence[float]) -> tuple[float, float, float]:
    """Where a variant becomes faster than dense, from its ratios to dense at the measured ``densities``.

    Returns ``(estimate, faster_at, slower_at)``: ``faster_at`` is the largest density with a ratio below 1,
    ``slower_at`` the next larger density measured (NaN when it is the largest), and ``estimate`` the density
    where the ratio crosses 1 on a straight line through those two points in log-log coordinates. NaN
    estimates: never faster (``faster_at`` NaN, ``slower_at`` the smallest density), or faster everywhere
    (the crossover lies above the largest density measured).
    """
    order = np.argsort(densities)
    d = np.asarray(densities, dtype=float)[order]
    r = np.asarray(ratios, dtype=float)[order]
    faster = np.flatnonzero(r < 1)
    if faster.size == 0:
        return math.nan, math.nan, float(d[0])
    i = int(faster[-1])
    if i == len(d) - 1:
        return math.nan, float(d[i]), math.nan
    t = -math.log(r[i]) / (math.log(r[i + 1]) - math.log(r[i]))
    estimate = math.exp(math.log(d[i]) + t * (math.log(d[i + 1]) - math.log(d[i])))
    return estimate, float(d[i]), float(d[i + 1])


CROSSOVER_VARIANTS = (("train", "truly_sparse"), ("inference", "csr"), ("inference", "truly_sparse"))


def crossovers(bench: pd.DataFrame) -> pd.DataFrame:
    """The crossover density (:func:`crossover_density`, on the median ratio over seeds) of truly sparse
    training, CSR inference and truly sparse inference, per shape and batch size, with a ``text`` column
    (``"0.12"``, ``"> 0.2"`` when faster at every density, ``"< 0.02"`` when never faster)."""
    table = medians(bench)
    rows = []
    for (shape, mode, variant, batch), group in table.groupby(["shape", "mode", "variant", "batch"], sort=False):
        if (mode, variant) not in CROSSOVER_VARIANTS:
            continue
        estimate, faster_at, slower_at = crossover_density(group["density"].tolist(), group["ratio"].tolist())
        if not math.isnan(estimate):
            text = f"{estimate:.2g}"
        elif math.isnan(faster_at):
            text = f"< {slower_at:g}"
        else:
            text = f"> {faster_at:g}"
        rows.append({"shape": shape, "mode": mode, "variant": variant, "batch": batch, "crossover": estimate,
                     "faster_at": faster_at, "slower_at": slower_at, "text": text})
    return pd.DataFrame(rows, columns=["shape", "mode", "variant", "batch", "crossover", "faster_at", "slower_at",
                                       "text"])


def largest_shape(bench: pd.DataFrame) -> str:
    """The benchmarked shape with the most weights (the goal is judged on it)."""
    shapes = bench["shape"].unique()
    return max(shapes, key=lambda s: sum(a * b for a, b in zip(widths_of(s)[:-1], widths_of(s)[1:], strict=True)))


def amortised_update(bench: pd.DataFrame, every: int = 100) -> pd.DataFrame:
    """The truly sparse training step with a RigL update every ``every`` steps, relative to dense (median
    over seeds): ``((every - 1) * plain + with_update) / every`` per shape, density and batch."""
    train = medians(bench[bench["mode"] == "train"])
    plain = train[train["variant"] == "truly_sparse"].set_index(["shape", "density", "batch"])["ratio"]
    update = train[train["variant"] == "truly_sparse+update"].set_index(["shape", "density", "batch"])["ratio"]
    return (((every - 1) * plain + update) / every).rename("ratio").reset_index()


def _largest_benchmarked_shape(frame: pd.DataFrame) -> list[str]:
    """The claims' shape setting: the largest benchmarked shape (:func:`largest_shape`), none without one."""
    bench = frame[frame["part"] == "benchmark"] if "part" in frame and "shape" in frame else frame.iloc[0:0]
    return [largest_shape(bench)] if len(bench) else []


# The chapter's claims, each over seeds (independent replicates; paired where both sides share a seed):
# for the largest shape at GOAL_DENSITY and every batch size up to GOAL_MAX_BATCH, the truly sparse training
# step is faster than dense (log ratio below log 1) and CSR inference reaches a third of the ideal speed-up
# (log of_ideal above log 1/3), against SPEEDUP_OF_INTEREST; and unstructured (truly sparse) beats
# neuron-level sparsity at the same number of weights, in test accuracy, against the book's smallest effect.
_GOAL = {"part": "benchmark", "shape": AT, "density": GOAL_DENSITY, "batch": AT}
_GOAL_OVER = {"shape": _largest_benchmarked_shape,
              "batch": levels("batch", lambda b: b <= GOAL_MAX_BATCH, part="benchmark")}
CLAIMS = [
    ClaimSpec("truly sparse training step faster than dense, batch {batch:g}", "ratio",
              a={**_GOAL, "mode": "train", "variant": "truly_sparse"}, b=1.0, effect=math.log(SPEEDUP_OF_INTEREST),
              reference=SPEEDUP_REFERENCE, over=_GOAL_OVER, units="log ratio", scale=1.0, transform="log",
              lower_is_better=True),
    ClaimSpec("CSR inference beyond 1/3 of the ideal speed-up, batch {batch:g}", "of_ideal",
              a={**_GOAL, "mode": "inference", "variant": "csr"}, b=GOAL_SHARE_OF_IDEAL,
              effect=math.log(SPEEDUP_OF_INTEREST), reference=SPEEDUP_REFERENCE, over=_GOAL_OVER, units="log ratio",
              scale=1.0, transform="log"),
    ClaimSpec("{method} (unstructured) - neuron-level, same weights: accuracy", "test_accuracy",
              a={"part": "training", "variant": "truly_sparse", "method": AT},
              b={"part": "training", "variant": "neurons"}, effect=BOOK_EFFECT, reference=BOOK_EFFECT_REFERENCE,
              over={"method": levels("method", part="training")}),
]


def judged_frame(result: Any) -> pd.DataFrame:
    """What :data:`CLAIMS` read from a run's :class:`~dstlib.experiments.common.ChapterResult`."""
    return claims_frame(benchmark_frame(result.records), training_frame(result.records), result.config.method)


def claims_frame(bench: pd.DataFrame, training: pd.DataFrame, method: str = "rigl") -> pd.DataFrame:
    """The frame :data:`CLAIMS` read (``experiments.judge(chapter, claims_frame(...))``): the benchmark rows
    (:func:`benchmark_frame`) and the training rows (:func:`training_frame`) one below the other, with
    ``part`` saying which, and the training rows' DST method by name (``method``: ``"RigL"``, ``"SET"``)."""
    frames = [bench.assign(part="benchmark") if not bench.empty else bench,
              training.assign(part="training", method=method_name(method)) if not training.empty else training]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def method_name(method: str) -> str:
    """``"rigl"`` -> ``"RigL"``, ``"set"`` -> ``"SET"``."""
    return {"rigl": "RigL", "set": "SET"}.get(method, method)


def goal_table(bench: pd.DataFrame) -> pd.DataFrame:
    """The issue's goal at :data:`GOAL_DENSITY` on the largest shape, per batch size up to
    :data:`GOAL_MAX_BATCH`: the median truly sparse training ratio and CSR share of the ideal speed-up over
    seeds, with the single-run check of :func:`dstlib.sparse.benchmark.summary` on each seed."""
    if bench.empty or GOAL_DENSITY not in set(bench["density"]):
        return pd.DataFrame(columns=["batch", "train_ratio", "csr_of_ideal", "train_met_seeds", "csr_met_seeds"])
    shape = largest_shape(bench)
    table = medians(bench[bench["shape"] == shape])
    at = table[(table["density"] == GOAL_DENSITY) & (table["batch"] <= GOAL_MAX_BATCH)]
    train = at[(at["mode"] == "train") & (at["variant"] == "truly_sparse")].set_index("batch")["ratio"]
    csr = at[(at["mode"] == "inference") & (at["variant"] == "csr")].set_index("batch")["of_ideal"]
    per_seed = [benchmark.summary(group, GOAL_DENSITY, GOAL_MAX_BATCH)
                for _, group in bench[bench["shape"] == shape].groupby("seed")]
    out = pd.DataFrame({"train_ratio": train, "csr_of_ideal": csr})
    out["train_met_seeds"] = sum(s["train_beats_dense"] for s in per_seed)
    out["csr_met_seeds"] = sum(s["csr_reaches_third"] for s in per_seed)
    return out.reset_index()


def goal_sentence(goal: pd.DataFrame) -> str:
    """The issue's goal in words, from :func:`goal_table`: whether the truly sparse training step beat dense
    and CSR inference reached a third of the ideal at every batch size measured (on the medians)."""
    if goal.empty:
        return f"the goal density {GOAL_DENSITY:g} was not measured"
    batches = ", ".join(str(b) for b in goal["batch"])
    slow = [str(b) for b, r in zip(goal["batch"], goal["train_ratio"], strict=True) if not r < 1]
    short = [str(b) for b, s in zip(goal["batch"], goal["csr_of_ideal"], strict=True) if not s >= GOAL_SHARE_OF_IDEAL]
    train = ("the truly sparse training step beat the dense step at every batch size measured "
             f"({batches})" if not slow else f"the truly sparse training step did not beat the dense step at "
             f"batch {', '.join(slow)}")
    csr = ("CSR inference reached a third of the ideal speed-up at every batch size" if not short else
           f"CSR inference fell short of a third of the ideal speed-up at batch {', '.join(short)}")
    return f"{train}; {csr}"
