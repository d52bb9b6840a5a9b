"""The race: dense vs dstlib's truly sparse layers vs SparseProp's (when importable), one layer at a time.

Per layer, density and batch: a training step of the layer alone (forward, then backward of a fixed output
gradient into the weights and the input) of the dense ``nn.Linear`` / ``nn.Conv2d``, of dstlib's
``SparseLinear`` / ``SparseConv2d`` (``dstlib.sparse.truly_sparse``) and of SparseProp's ``SparseLinear`` /
``SparseConv2d`` (Nikdan et al., ICML 2023; its convolution in the faster of its two modes, as its own
``sparsify_conv2d_auto`` picks), all holding the same masked weights (uniform random mask). In one process,
``--rounds`` interleaved rounds (order rotating), ``--calls`` timed calls each after one untimed call; a
ratio is the time over the dense time of the same round, median over rounds. One thread by default.

Layers: the linear layers of the issue's table (1024->4096, 768->3072 at densities 0.05 and 0.1); the 3x3
convolutions of ResNet-18 at CIFAR resolution (32x32 input: 64@32x32, 128@16x16, 256@8x8, 512@4x4, the
ImageNet 56..7 maps being too slow for a CPU race) with a stride-2 one and its 1x1 stride-2 shortcut; the
convolutions of the book's CNNs (SmallCNN on 16x16 digits, ResNet-20 on 32x32) at batch 64.

    python benchmarks/bench_vs_sparseprop.py                        # everything, ~10 min on a quiet CPU
    python benchmarks/bench_vs_sparseprop.py --groups book --rounds 2   # the book's convolutions only
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from dstlib.sparse.sparse_conv import SparseConv2d
from dstlib.sparse.truly_sparse import SparseLinear

GOAL_DENSITY = 0.05
GOAL_CONV_SPEEDUP = 1.5  # a 3x3 conv step of the book's CNNs at batch 64 at least this much faster than dense
GOAL_CONV_BATCH = 64


@dataclass(frozen=True)
class Layer:
    """A layer of the race: ``build()`` gives the dense module, its input is ``(batch, *input_shape)``."""

    group: str  # "linear", "resnet18" or "book"
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    kernel: int = 0  # convolution kernel size (0: linear)


def _conv(name: str, group: str, c_in: int, c_out: int, size: int, kernel: int = 3, stride: int = 1) -> Layer:
    label = f"{name} {c_in}->{c_out} {kernel}x{kernel}{' s2' if stride == 2 else ''} @{size}x{size}"
    return Layer(group, label, lambda: nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                 (c_in, size, size), kernel)


LAYERS = [
    Layer("linear", "linear 1024->4096", lambda: nn.Linear(1024, 4096), (1024,)),
    Layer("linear", "linear 768->3072", lambda: nn.Linear(768, 3072), (768,)),
    _conv("resnet18", "resnet18", 64, 64, 32),
    _conv("resnet18", "resnet18", 64, 128, 32, stride=2),
    _conv("resnet18", "resnet18", 64, 128, 32, kernel=1, stride=2),
    _conv("resnet18", "resnet18", 128, 128, 16),
    _conv("resnet18", "resnet18", 256, 256, 8),
    _conv("resnet18", "resnet18", 512, 512, 4),
    _conv("smallcnn", "book", 1, 16, 16),
    _conv("smallcnn", "book", 16, 32, 8),
    _conv("smallcnn", "book", 32, 64, 4),
    _conv("smallcnn", "book", 64, 64, 4),
    _conv("resnet20", "book", 16, 16, 32),
    _conv("resnet20", "book", 16, 32, 32, stride=2),
    _conv("resnet20", "book", 16, 32, 32, kernel=1, stride=2),
    _conv("resnet20", "book", 32, 32, 16),
    _conv("resnet20", "book", 64, 64, 8),
]


# ---------------------------------------------------------------------------------------------- the table
def race_table(records: Sequence[dict]) -> pd.DataFrame:
    """One row per ``(group, layer, kernel, density, batch)`` from timing records ``{group, layer, kernel,
    density, batch, round, variant, seconds}`` (``variant``: "dense", "dstlib", "sparseprop"): ``dense_ms``
    (median over rounds) and per other variant its ratio to the dense time of the same round (median over
    rounds; NaN where the variant was not run)."""
    frame = pd.DataFrame(records)
    keys = ["group", "layer", "kernel", "density", "batch"]
    wide = frame.pivot_table(index=[*keys, "round"], columns="variant", values="seconds", aggfunc="first")
    table = wide.groupby(level=keys)["dense"].median().mul(1e3).rename("dense_ms").to_frame()
    for variant in ("dstlib", "sparseprop"):
        ratio = wide[variant] / wide["dense"] if variant in wide else pd.Series(float("nan"), index=wide.index)
        table[variant] = ratio.groupby(level=keys).median()
    order = frame.drop_duplicates(keys)[keys]  # the order in which the points ran
    return order.merge(table.reset_index(), on=keys)


def goal_lines(table: pd.DataFrame, with_sparseprop: bool) -> list[str]:
    """The issue's two goals on ``race_table`` output, each ``met`` / ``not met`` with its worst case."""
    at_goal = table[table["density"] == GOAL_DENSITY]
    if with_sparseprop:
        versus = at_goal["dstlib"] / at_goal["sparseprop"]
        worst = at_goal.loc[versus.idxmax()]
        verdict = "met" if (versus <= 1).all() else "not met"
        first = (f"dstlib at least as fast as SparseProp at density {GOAL_DENSITY} on every layer and batch: {verdict} "
                 f"({int((versus <= 1).sum())} of {len(versus)} rows; worst {worst['layer']} batch {worst['batch']}: "
                 f"dstlib/SparseProp {versus.max():.2f})")
    else:
        first = "dstlib vs SparseProp: not measured (SparseProp is not installed; see benchmarks/README.md)"
    convs = at_goal[(at_goal["group"] == "book") & (at_goal["kernel"] == 3) & (at_goal["batch"] == GOAL_CONV_BATCH)]
    if convs.empty:
        second = "3x3 convolutions of the book's CNNs at batch 64: not measured"
    else:
        worst = convs.loc[convs["dstlib"].idxmax()]
        verdict = "met" if (convs["dstlib"] <= 1 / GOAL_CONV_SPEEDUP).all() else "not met"
        second = (f"3x3 conv step of the book's CNNs at batch {GOAL_CONV_BATCH} at least {GOAL_CONV_SPEEDUP}x faster "
                  f"than dense (ratio <= {1 / GOAL_CONV_SPEEDUP:.3f}): {verdict} (worst {worst['layer']}: "
                  f"{worst['dstlib']:.3f}, speed-up {1 / worst['dstlib']:.2f}x)")
    return [first, second]


def format_table(table: pd.DataFrame) -> str:
    """The table as text: time relative to dense (below 1: faster than dense)."""
    lines = [f"{'layer':<38} {'density':>7} {'batch':>5} {'dense ms':>9} {'dstlib':>7} {'SparseProp':>10}"]
    for row in table.itertuples():
        sparseprop = "-" if pd.isna(row.sparseprop) else f"{row.sparseprop:.3f}"
        lines.append(f"{row.layer:<38} {row.density:>7} {row.batch:>5} {row.dense_ms:>9.2f} {row.dstlib:>7.3f} "
                     f"{sparseprop:>10}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- timing
def variants(layer: Layer, density: float, batch: int, with_sparseprop: bool, seed: int = 0) -> dict[str, nn.Module]:
    """The dense module and its sparse twins holding the same masked weights."""
    torch.manual_seed(seed)
    dense = layer.build()
    mask = torch.rand(dense.weight.shape) < density
    with torch.no_grad():
        dense.weight.mul_(mask)
    sparse = SparseLinear.from_linear(dense, mask) if layer.kernel == 0 else SparseConv2d.from_conv(dense, mask)
    modules = {"dense": dense, "dstlib": sparse}
    if with_sparseprop:
        from sparseprop.modules import SparseLinear as PropLinear
        from sparseprop.modules import sparsify_conv2d_auto

        if layer.kernel == 0:
            modules["sparseprop"] = PropLinear.from_dense(dense)
        else:
            modules["sparseprop"] = sparsify_conv2d_auto(dense, (batch, *layer.input_shape))
    return modules


def step_seconds(module: nn.Module, x: Tensor, grad: Tensor, calls: int, clock: Callable[[], float]) -> float:
    """Mean seconds of ``calls`` training steps (forward, backward into weights and input) after one untimed."""
    total = 0.0
    for i in range(calls + 1):
        module.zero_grad(set_to_none=True)
        x.grad = None
        start = clock()
        module(x).backward(grad)
        if i:
            total += clock() - start
    return total / calls


def race(layers: Sequence[Layer], densities: dict[str, Sequence[float]], batches: dict[str, Sequence[int]],
         rounds: int, calls: int, clock: Callable[[], float], with_sparseprop: bool) -> list[dict]:
    records = []
    for layer in layers:
        for density in densities[layer.group]:
            for batch in batches[layer.group]:
                modules = variants(layer, density, batch, with_sparseprop)
                x = torch.randn(batch, *layer.input_shape, requires_grad=True)
                with torch.no_grad():
                    grad = torch.randn_like(modules["dense"](x))
                names = list(modules)
                for r in range(rounds):
                    for name in names[r % len(names):] + names[: r % len(names)]:
                        seconds = step_seconds(modules[name], x, grad, calls, clock)
                        records.append({"group": layer.group, "layer": layer.name, "kernel": layer.kernel,
                                        "density": density, "batch": batch, "round": r, "variant": name,
                                        "seconds": seconds})
                print(f"  done: {layer.name} density {density} batch {batch}", file=sys.stderr, flush=True)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", nargs="+", default=["linear", "resnet18", "book"], help="layer groups")
    parser.add_argument("--linear-batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--conv-batches", type=int, nargs="+", default=[GOAL_CONV_BATCH])
    parser.add_argument("--linear-densities", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--conv-densities", type=float, nargs="+", default=[GOAL_DENSITY])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--calls", type=int, default=3, help="timed calls per variant per round")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: time.perf_counter; cpu: this thread's CPU time (less hurt by a loaded machine)")
    parser.add_argument("--csv", help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with_sparseprop = importlib.util.find_spec("sparseprop") is not None
    print(f"torch {torch.__version__}, {args.threads} thread(s), clock {args.clock}, load average at start "
          f"{os.getloadavg()[0]:.2f}; SparseProp: {'yes' if with_sparseprop else 'missing (dstlib vs dense only)'}")
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    layers = [layer for layer in LAYERS if layer.group in args.groups]
    densities = {"linear": args.linear_densities, "resnet18": args.conv_densities, "book": args.conv_densities}
    batches = {"linear": args.linear_batches, "resnet18": args.conv_batches, "book": args.conv_batches}
    table = race_table(race(layers, densities, batches, args.rounds, args.calls, clock, with_sparseprop))
    print("\nTraining step (forward + backward) relative to dense, median of interleaved rounds:")
    print(format_table(table))
    print()
    for line in goal_lines(table, with_sparseprop):
        print("goal:", line)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
