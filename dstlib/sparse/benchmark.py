"""Where is the speed-up? Wall-clock and memory of sparse MLP layers against the dense layer, in one run.

:func:`benchmark` times, for each density and batch size, one training step (forward, backward, optimizer
step, engine step) and one inference batch of an MLP (default 1024-4096-4096-10, ReLU, every ``nn.Linear``
at the same density) in these forms:

- ``dense``: the full model (the baseline of every ratio);
- ``masked``: the dense model with a :class:`~dstlib.sparse.SparseEngine` (static masks): sparsity simulated;
- ``truly_sparse``: :mod:`dstlib.sparse.truly_sparse` (values + indices, sparse x dense products, optimizer
  state for the active weights only), with its engine; ``truly_sparse+update`` is a step that also does a
  RigL topology update (dense gradient, prune and grow), i.e. the step before and at an update;
- ``csr`` (inference only): the masked model exported by :func:`~dstlib.sparse.export.to_sparse_csr`;
- ``neurons``: the structured alternative, a physically smaller dense MLP with the fraction of hidden
  neurons that leaves the same number of weights (:func:`~dstlib.sparse.structured.neuron_fraction`);
- on a CUDA GPU, ``dense_fp16`` and ``semi_structured`` (2:4, ``torch.sparse.to_sparse_semi_structured``)
  for inference; elsewhere they are skipped and ``frame.attrs["notes"]`` says why.

The variants of one (density, batch) point run interleaved (rotating order) for ``repeats`` rounds of
``calls`` calls each; ``ms`` is the median time per call and ``ratio`` the median over rounds of the time
relative to the dense model in the same round (below 1: faster than dense). The ideal for a sparse variant
is ``density`` (work proportional to the weights kept); ``of_ideal = density / ratio`` is the fraction of the
ideal speed-up ``1 / density`` reached. Memory: ``state_bytes`` (parameters, buffers, optimizer state, the
engines' own tensors) and ``peak_bytes`` (``state_bytes`` plus the peak of what one step or one inference
batch allocates on top, from ``torch.profiler`` with ``profile_memory``; CPU only, NaN on CUDA).
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dstlib import checks
from dstlib.sparse import structured, truly_sparse
from dstlib.sparse.engine import SparseEngine
from dstlib.sparse.export import to_sparse_csr
from dstlib.sparse.sparse_weight import SparseWeight

WIDTHS = (1024, 4096, 4096, 10)
DENSITIES = (0.5, 0.2, 0.1, 0.05, 0.01)
BATCH_SIZES = (1, 8, 64, 256)
QUICK = {"widths": (256, 1024, 1024, 10), "densities": (0.1, 0.05), "batch_sizes": (8, 64), "repeats": 2, "calls": 2}
"""Arguments of a run of a few seconds (``benchmarks/bench_sparse_training.py --quick``, the tests)."""
COLUMNS = ("mode", "variant", "density", "batch", "ms", "ratio", "ideal", "of_ideal", "state_bytes", "peak_bytes")


def mlp(widths: Sequence[int], seed: int = 0) -> nn.Sequential:
    """``Linear(w0, w1), ReLU, ..., Linear(w_-2, w_-1)`` initialised from ``seed``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


@dataclass
class _Variant:
    """One form of the model: ``run()`` is one training step or one inference batch."""

    run: Callable[[], object]
    state: Callable[[], Iterable[Tensor]]
    ideal: float
    before: Callable[[], None] = lambda: None  # untimed preparation of a profiled call (drop old gradients)


EngineFactory = Callable[[nn.Module, torch.optim.Optimizer], object]


def _trainer(model: nn.Module, x: Tensor, y: Tensor, ideal: float, make_engine: EngineFactory | None = None,
             extra: Callable[[], Iterable[Tensor]] = tuple) -> _Variant:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    engine = None if make_engine is None else make_engine(model, optimizer)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if engine is not None:
            engine.step()

    def state() -> Iterator[Tensor]:
        yield from model.parameters()
        yield from model.buffers()
        for values in optimizer.state.values():
            yield from (v for v in values.values() if isinstance(v, Tensor))
        yield from extra()
        if isinstance(engine, SparseEngine):
            yield from engine._fired

    return _Variant(step, state, ideal, lambda: optimizer.zero_grad(set_to_none=True))


def _inferrer(model: nn.Module, x: Tensor, ideal: float) -> _Variant:
    model.eval()

    def run() -> Tensor:
        with torch.inference_mode():
            return model(x)

    def state() -> Iterator[Tensor]:
        yield from model.parameters()
        yield from model.buffers()

    return _Variant(run, state, ideal)


def _layouts(model: nn.Module) -> Iterator[Tensor]:
    for module in model.modules():
        if isinstance(module, SparseWeight):
            yield from module.layout_tensors()


def _state_bytes(tensors: Iterable[Tensor]) -> int:
    storages: dict[int, int] = {}
    for tensor in tensors:
        if tensor.layout == torch.strided:
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        else:  # sparse (CSR export): its index and value arrays
            parts = (tensor.crow_indices(), tensor.col_indices(), tensor.values())
            storages.update({p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in parts})
    return sum(storages.values())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler's C++ start/stop lines (written to file descriptor 2)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _transient_peak(run: Callable[[], object]) -> int:
    """Peak bytes allocated by ``run()`` above what was allocated before it (CPU, ``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def _time(variants: dict[str, _Variant], repeats: int, calls: int, sync: Callable[[], None]) -> dict[str, list]:
    names = list(variants)
    for variant in variants.values():  # warm-up: kernels, allocator, the first optimizer state
        variant.run()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            for _ in range(calls):
                variants[name].run()
            sync()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def timing_columns(times: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """The arithmetic of a point, apart from the measuring: from the seconds per call of each variant in
    each round (``times[name][round]``, as measured by the interleaved rounds) its ``ms`` (median over
    rounds, in milliseconds) and ``ratio`` (median over rounds of the time relative to the baseline in the
    same round: ``dense``, or ``dense_fp16`` for ``semi_structured``)."""
    columns = {}
    for name, seconds in times.items():
        baseline = "dense_fp16" if name == "semi_structured" else "dense"
        ratio = statistics.median(t / d for t, d in zip(seconds, times[baseline], strict=True))
        columns[name] = {"ms": statistics.median(seconds) * 1e3, "ratio": ratio}
    return columns


def _point(variants: dict[str, _Variant], mode: str, density: float, batch: int, repeats: int, calls: int,
           device: torch.device, memory: bool) -> list[dict]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    columns = timing_columns(_time(variants, repeats, calls, sync))
    rows = []
    for name, variant in variants.items():
        ratio = columns[name]["ratio"]
        state = _state_bytes(variant.state())
        peak = float("nan")
        if memory and device.type == "cpu":
            variant.before()
            peak = state + _transient_peak(variant.run)
        rows.append({
            "mode": mode, "variant": name, "density": density, "batch": batch,
            "ms": columns[name]["ms"], "ratio": ratio, "ideal": variant.ideal,
            "of_ideal": variant.ideal / ratio, "state_bytes": state, "peak_bytes": peak,
        })
    return rows


def benchmark(
    widths: Sequence[int] = WIDTHS,
    densities: Sequence[float] = DENSITIES,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    *,
    repeats: int = 5,
    calls: int = 3,
    memory: bool = True,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Time and memory of dense, masked, truly sparse, CSR and neuron-level MLPs (see the module docstring).

    Args:
        widths: MLP widths ``(input, hidden..., classes)``.
        densities: fractions of weights kept, each in ``(0, 1)``.
        batch_sizes: batch sizes, each >= 1.
        repeats: interleaved rounds per point (medians over them). calls: calls per variant per round.
        memory: also measure ``peak_bytes`` (CPU; one profiled call per variant and point).
        device: ``"cpu"`` or a CUDA device. seed: model initialisation and masks.
        progress: called with a line of text after each point (e.g. ``print``).

    Returns:
        one row per (mode, variant, density, batch) with the columns :data:`COLUMNS`; ``attrs`` holds
        ``threads``, ``torch``, ``device``, ``widths``, ``repeats``, ``calls``, ``load_average`` (start, end)
        and ``notes`` (variants skipped, and why).
    """
    checks.require(len(widths) >= 3 and all(isinstance(w, int) and w >= 1 for w in widths), "widths", widths,
                   "input, at least one hidden and output width, all integers >= 1")
    for density in densities:
        checks.number("densities[...]", density, low=0, high=1, low_open=True, high_open=True)
    for batch in batch_sizes:
        checks.integer("batch_sizes[...]", batch, low=1)
    checks.integer("repeats", repeats, low=1)
    checks.integer("calls", calls, low=1)
    device = torch.device(device)
    checks.one_of("device.type", device.type, ("cpu", "cuda"))
    notes = []
    semi_reason = structured.semi_structured_unavailable(device)
    if semi_reason is not None:
        notes.append(f"semi_structured (2:4) skipped: {semi_reason}")
    load_start = os.getloadavg()[0]
    rows: list[dict] = []
    for density in densities:
        dense = mlp(widths, seed).to(device)
        masks = truly_sparse.initial_masks(dense, density, distribution="uniform", seed=seed)
        masked = copy.deepcopy(dense)
        SparseEngine(masked, torch.optim.SGD(masked.parameters(), lr=0.0), density=None, masks=masks, prune=None,
                     grow=None).remove()  # zeroes the pruned weights; the masked variant gets its own engine
        sparse = truly_sparse.to_truly_sparse(masked, masks)
        neurons = structured.shrink_neurons(masked, structured.neuron_fraction(widths, density))
        csr = to_sparse_csr(masked, max_density=1.0)
        generator = torch.Generator().manual_seed(seed)
        for batch in batch_sizes:
            x = torch.randn(batch, widths[0], generator=generator).to(device)
            y = torch.randint(0, widths[-1], (batch,), generator=generator).to(device)

            def masked_engine(model: nn.Module, optimizer: torch.optim.Optimizer, masks: dict = masks) -> SparseEngine:
                return SparseEngine(model, optimizer, density=None, masks=masks, prune=None, grow=None)

            def sparse_engine(every: int) -> EngineFactory:
                return lambda model, optimizer: truly_sparse.TrulySparseEngine(
                    model, optimizer, update_every=every, total_steps=10**9, update_end=10**9, drop_fraction=0.3,
                    drop_schedule="constant", seed=seed)

            sparse_copy, update_copy = copy.deepcopy(sparse), copy.deepcopy(sparse)
            train = {
                "dense": _trainer(copy.deepcopy(dense), x, y, 1.0),
                "masked": _trainer(copy.deepcopy(masked), x, y, density, masked_engine),
                "truly_sparse": _trainer(sparse_copy, x, y, density, sparse_engine(10**8),
                                         lambda m=sparse_copy: _layouts(m)),
                "truly_sparse+update": _trainer(update_copy, x, y, density, sparse_engine(1),
                                                lambda m=update_copy: _layouts(m)),
                "neurons": _trainer(copy.deepcopy(neurons), x, y, density),
            }
            rows += _point(train, "train", density, batch, repeats, calls, device, memory)
            del train
            infer = {
                "dense": _inferrer(dense, x, 1.0),
                "masked": _inferrer(masked, x, density),
                "csr": _inferrer(csr, x, density),
                "truly_sparse": _inferrer(sparse, x, density),
                "neurons": _inferrer(neurons, x, density),
            }
            if semi_reason is None:
                infer["dense_fp16"] = _inferrer(copy.deepcopy(dense).half(), x.half(), 1.0)
                infer["semi_structured"] = _inferrer(structured.to_semi_structured(masked), x.half(), 0.5)
            rows += _point(infer, "inference", density, batch, repeats, calls, device, memory)
            if progress is not None:
                progress(f"density {density}, batch {batch} done")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs.update(
        threads=torch.get_num_threads(), torch=torch.__version__, device=str(device), widths=tuple(widths),
        repeats=repeats, calls=calls, load_average=(load_start, os.getloadavg()[0]), notes=notes,
    )
    return frame


def summary(frame: pd.DataFrame, density: float = 0.05, max_batch: int = 64) -> dict[str, object]:
    """The issue's goal read off a :func:`benchmark` frame at ``density``: the truly sparse training step's
    ratio to dense at every batch size up to ``max_batch`` (``train_ratios``, ``train_beats_dense`` if all are
    below 1) and the CSR inference fraction of the ideal speed-up (``csr_of_ideal``, ``csr_reaches_third``
    if all are at least 1/3)."""
    at = frame[(frame["density"] == density) & (frame["batch"] <= max_batch)]
    train = at[(at["mode"] == "train") & (at["variant"] == "truly_sparse")].set_index("batch")["ratio"]
    csr = at[(at["mode"] == "inference") & (at["variant"] == "csr")].set_index("batch")["of_ideal"]
    return {
        "train_ratios": train.to_dict(), "train_beats_dense": bool((train < 1).all()) and len(train) > 0,
        "csr_of_ideal": csr.to_dict(), "csr_reaches_third": bool((csr >= 1 / 3).all()) and len(csr) > 0,
    }


def crossover(frame: pd.DataFrame, below: float = 1.0) -> pd.DataFrame:
    """The largest density at which each variant is faster than dense (ratio below ``below``; e.g. 0.9 to
    ignore timing noise), per batch size: one row per batch, one column per ``(mode, variant)``; NaN where it
    never is. With the densities measured this brackets the crossover: between this density and the next
    larger one measured."""
    faster = frame[(frame["variant"] != "dense") & (frame["ratio"] < below)]
    table = faster.groupby(["batch", "mode", "variant"])["density"].max().unstack(["mode", "variant"])
    columns = frame[frame["variant"] != "dense"][["mode", "variant"]].drop_duplicates()
    return table.reindex(index=sorted(frame["batch"].unique()), columns=pd.MultiIndex.from_frame(columns))
