"""Inference time of 90%-sparse models, dense weights vs ``torch.sparse_csr`` weights (dstlib.sparse.export).

Two models, every weight pruned to 10% density by layer-wise magnitude:
- ``mlp``: 1024 -> 4096 -> 4096 -> 1024 -> 10, ReLU, input ``(B, 1024)``;
- ``pointwise``: six 1x1 convolutions of 256 channels with ReLU, input ``(B, 256, 16, 16)``.

For each batch size the dense model and its CSR export run in the same process, interleaved (dense, CSR,
dense, CSR, ...) for ``--repeats`` rounds of ``--calls`` forward passes under ``torch.inference_mode``;
the median per-call time is reported with the ratio dense / CSR (> 1: CSR is faster).

    OMP_NUM_THREADS=2 python benchmarks/bench_csr_inference.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dstlib.sparse.export import to_sparse_csr
from dstlib.sparse.prune_at_init import magnitude_prune

DENSITY = 0.1


def mlp() -> tuple[nn.Module, Callable[[int], torch.Tensor]]:
    widths = [1024, 4096, 4096, 1024]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 10)), lambda b: torch.randn(b, widths[0])


def pointwise() -> tuple[nn.Module, Callable[[int], torch.Tensor]]:
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Conv2d(256, 256, 1), nn.ReLU()]
    return nn.Sequential(*layers), lambda b: torch.randn(b, 256, 16, 16)


MODELS = {"mlp": (mlp, [1, 16, 128]), "pointwise": (pointwise, [1, 8, 32])}


def prune(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, mask in magnitude_prune(model, DENSITY, scope="layer").items():
            model.get_parameter(name).mul_(mask)
    return model.eval()


def seconds_per_call(model: nn.Module, x: torch.Tensor, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        model(x)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median taken)")
    parser.add_argument("--calls", type=int, default=10, help="forward passes per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}, "
        f"weight density {DENSITY}, median of {args.repeats} interleaved rounds x {args.calls} calls"
    )
    print(f"{'model':<10} {'batch':>5} {'dense ms':>9} {'CSR ms':>9} {'dense/CSR':>9}")
    for model_name, (build, batches) in MODELS.items():
        dense, make_input = build()
        dense = prune(dense)
        sparse = to_sparse_csr(dense)
        for batch in batches:
            x = make_input(batch)
            with torch.inference_mode():
                torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-4)
                times: dict[str, list[float]] = {"dense": [], "csr": []}
                for _ in range(args.repeats):
                    times["dense"].append(seconds_per_call(dense, x, args.calls))
                    times["csr"].append(seconds_per_call(sparse, x, args.calls))
            d, s = (statistics.median(times[k]) * 1e3 for k in ("dense", "csr"))
            print(f"{model_name:<10} {batch:>5} {d:>9.3f} {s:>9.3f} {d / s:>8.2f}x")


if __name__ == "__main__":
    main()
