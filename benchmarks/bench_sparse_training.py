"""Where is the speed-up? Training step and inference batch of dense, masked, truly sparse, CSR and
neuron-level MLPs, in one run (``dstlib.sparse.benchmark``).

MLP 1024-4096-4096-10 (ReLU), every ``nn.Linear`` at the same density (0.5, 0.2, 0.1, 0.05, 0.01), batch
sizes 1, 8, 64, 256, SGD with momentum. For each (density, batch) point the variants run interleaved in
rotating order, ``--repeats`` rounds of ``--calls`` calls each; printed per density: the dense time in ms
and, for every other variant, its time relative to dense in the same round (median over rounds; below 1 =
faster than dense) with the ideal ``density`` as the limit, then peak memory in MiB. The last lines check
the design budget at density 0.05: truly sparse training step below 1.0x dense up to batch 64, CSR
inference at least a third of the ideal speed-up ``1 / density``.

    OMP_NUM_THREADS=2 python benchmarks/bench_sparse_training.py --threads 2     # the issue setting
    python benchmarks/bench_sparse_training.py --quick                            # < 30 s, smaller MLP
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch

from dstlib.sparse import benchmark as bench

UPDATE_EVERY = 100  # RigL's interval, for the amortised cost of a topology update


def print_tables(frame: pd.DataFrame) -> None:
    for density, at_density in frame.groupby("density", sort=False):
        print(f"\ndensity {density} (ideal ratio {density}; ratio = time / dense time, same round)")
        for mode, rows in at_density.groupby("mode", sort=False):
            table = rows.pivot(index="variant", columns="batch", values="ratio")
            table = table.loc[rows["variant"].unique()]
            dense_ms = rows[rows["variant"] == "dense"].set_index("batch")["ms"]
            print(f"  {mode}: dense ms " + ", ".join(f"batch {b}: {ms:.2f}" for b, ms in dense_ms.items()))
            print("  " + table.to_string(float_format=lambda v: f"{v:.3f}").replace("\n", "\n  "))
            if rows["peak_bytes"].notna().any():
                peak = rows.pivot(index="variant", columns="batch", values="peak_bytes") / 2**20
                print(f"  {mode} peak MiB")
                print("  " + peak.loc[table.index].to_string(float_format=lambda v: f"{v:.1f}").replace("\n", "\n  "))


def print_goal(frame: pd.DataFrame, density: float) -> None:
    if density not in set(frame["density"]):
        return
    goal = bench.summary(frame, density=density, max_batch=64)
    ratios = ", ".join(f"batch {b}: {r:.3f}x" for b, r in goal["train_ratios"].items())
    shares = ", ".join(f"batch {b}: {s:.2f}" for b, s in goal["csr_of_ideal"].items())
    print(f"\ngoal at density {density}: truly sparse training step / dense: {ratios} -> "
          f"{'met' if goal['train_beats_dense'] else 'NOT met'} (all below 1.0)")
    print(f"goal at density {density}: CSR inference share of the ideal speed-up: {shares} -> "
          f"{'met' if goal['csr_reaches_third'] else 'NOT met'} (all at least 1/3)")
    train = frame[(frame["mode"] == "train") & (frame["density"] == density)].pivot(
        index="batch", columns="variant", values="ms")
    amortised = train["truly_sparse"] + (train["truly_sparse+update"] - train["truly_sparse"]) / UPDATE_EVERY
    print(f"truly sparse step with a RigL update every {UPDATE_EVERY} steps (drop fraction 0.3), amortised / dense: "
          + ", ".join(f"batch {b}: {a / train.loc[b, 'dense']:.3f}x" for b, a in amortised.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help=f"a few seconds: {bench.QUICK}")
    parser.add_argument("--widths", type=int, nargs="+", default=list(bench.WIDTHS))
    parser.add_argument("--densities", type=float, nargs="+", default=list(bench.DENSITIES))
    parser.add_argument("--batches", type=int, nargs="+", default=list(bench.BATCH_SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians over them)")
    parser.add_argument("--calls", type=int, default=3, help="calls per variant per round")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--csv", help="also write the table to this CSV file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = dict(bench.QUICK) if args.quick else {
        "widths": tuple(args.widths), "densities": tuple(args.densities), "batch_sizes": tuple(args.batches),
        "repeats": args.repeats, "calls": args.calls}
    start = time.perf_counter()
    frame = bench.benchmark(**options, memory=not args.no_memory)
    attrs = frame.attrs
    widths = "-".join(map(str, attrs["widths"]))
    print(f"torch {attrs['torch']}, {attrs['threads']} threads, {attrs['device']}, MLP {widths}, "
          f"median of {attrs['repeats']} interleaved rounds x {attrs['calls']} calls, load average "
          f"{attrs['load_average'][0]:.2f} at start, {attrs['load_average'][1]:.2f} at end, cpu count {os.cpu_count()}")
    for note in attrs["notes"]:
        print(f"note: {note}")
    print_tables(frame)
    print_goal(frame, 0.05)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
