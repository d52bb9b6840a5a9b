"""Command line: run a chapter's experiment headless, or sweep its notebook over a parameter grid.

    python -m dstlib list
    python -m dstlib run dst_from_scratch --profile tutorial --set densities=0.1,0.05 --set seeds=0
    torchrun --nproc_per_node=4 -m dstlib run corruption_robustness --profile paper
    python -m dstlib sweep dst_from_scratch --profile smoke --grid lr=0.01,0.05 --grid seeds=0,1
    python -m dstlib pilot large_kernels
    python -m dstlib run large_kernels --profile paper --fast-dev-run
    python -m dstlib run corruption_robustness --profile paper --shard 3/8
    python -m dstlib gather corruption_robustness --profile paper --shards 8

``run`` writes one JSON record per training run under ``--out`` (default ``results/``) and prints the
summary table. ``sweep`` executes the chapter notebook with papermill once per grid point (a list knob
such as ``seeds`` takes one element per point), skips points whose executed notebook already exists,
and gathers every record into ``<out>/<chapter>/sweep/table.csv``. A point whose notebook raises is
reported in one line (the notebook's error), its notebook is removed and the sweep goes on with the
other points; the command then exits 1. Ctrl-C prints what is kept and exits 130; the same command
resumes. ``--fast-dev-run`` runs the profile's whole path (its model at full size, its data loader,
the engine with a topology update) for a few steps per point of a shortened grid, prints what it shortened and the
cost of the full grid (:mod:`dstlib.experiments.scale`). ``--shard K/N`` runs the K-th of N slices of
the grid (each point in exactly one, balanced by cost): one job of a SLURM array, or one per GPU;
``gather`` then reads the records of all slices as one run, names the slices that are missing points
(an error, exit 2) or prints the table and the verdicts. ``pilot`` trains the candidate tutorial regimes a
chapter declares (its ``PILOT``) on the pilot's seeds and writes the table the chapter shows,
``book/pilots/<chapter>.csv`` (:mod:`dstlib.experiments.pilot`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from typing import Any

from dstlib import config as cfg
from dstlib import experiments, results


def _parser() -> argparse.ArgumentParser:
    chapters = ", ".join(experiments.names())
    parser = argparse.ArgumentParser(prog="python -m dstlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters, their knobs and profile values")
    run = sub.add_parser("run", help="run a chapter's experiment and write its records")
    sweep = sub.add_parser("sweep", help="execute a chapter notebook over a parameter grid with papermill")
    gather = sub.add_parser("gather", help="read the records of all shards of a chapter's grid as one run, judge it")
    for p in (run, sweep, gather):
        p.add_argument("chapter", help=f"one of: {chapters}")
        p.add_argument("--profile", default="tutorial", help=f"one of: {', '.join(cfg.PROFILES)}")
        p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                       help="override a knob (repeatable); lists are comma-separated")
        p.add_argument("--out", default=None, help="results folder (default: results/ at the repository root)")
    for p in (run, sweep):
        p.add_argument("--shard", default=None, metavar="K/N", help="run only the K-th of N slices of the grid")
    run.add_argument("--fast-dev-run", action="store_true",
                     help="the profile's whole path for a few steps per point, and the full grid's cost")
    gather.add_argument("--shards", type=int, default=1, metavar="N", help="the N the grid was sharded into")
    pilot = sub.add_parser("pilot", help="train a chapter's candidate tutorial regimes and write its pilot table")
    pilot.add_argument("chapter", help="a chapter that declares PILOT: " + ", ".join(
        name for name in experiments.names() if hasattr(experiments.module(name), "PILOT")))
    pilot.add_argument("--out", default=None, help="results folder (default: results/ at the repository root)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a grid axis (repeatable); for list knobs each value is a one-element list")
    return parser


def list_chapters() -> str:
    """A text table of every chapter's knobs with their allowed values and per-profile values."""
    lines = []
    for name in experiments.names():
        spec = experiments.spec(name)
        lines.append(f"{name}: {spec.title} ({spec.notebook})")
        for key, knob in sorted(spec.all_knobs().items()):
            values = " | ".join(f"{p}={spec.values(p)[key]!r}" for p in cfg.PROFILES)
            lines.append(f"  {key}: {knob.help}. Allowed: {knob.allowed()}.\n      {values}")
    return "\n".join(lines)


def run_chapter(chapter: str, profile: str, assignments: list[str], out: str | None, shard: str | None = None,
                fast_dev_run: bool = False) -> int:
    spec = experiments.spec(chapter)
    overrides = cfg.parse_assignments(spec, assignments)
    if out is not None:
        overrides["out_dir"] = out
    if shard is not None:
        overrides["shard"] = shard
    if fast_dev_run:
        from dstlib.experiments import scale

        result, table = scale.fast_dev_run(experiments.module(chapter), profile, **overrides)
    else:
        result = experiments.run(chapter, spec.resolve(profile, **overrides))
    if int(os.environ.get("RANK", 0)) == 0:
        print(result.frame.drop(columns=["id", "chapter"]).to_string(index=False))
        print(f"{len(result.records)} records in {results.results_root(result.config.out_dir) / chapter}")
        if fast_dev_run:
            print(f"the {profile} grid, priced by this fast dev run ({scale.GPU} at {scale.GPU_UTILISATION:.0%} of "
                  f"peak):\n{table.to_string(index=False)}")
    return 0


def gather_chapter(chapter: str, profile: str, assignments: list[str], out: str | None, shards: int) -> int:
    """Print the records of all ``shards`` slices of the grid as one table and its verdicts (a
    ``ValueError`` names the slices that lack records)."""
    spec = experiments.spec(chapter)
    overrides = cfg.parse_assignments(spec, assignments)
    if out is not None:
        overrides["out_dir"] = out
    result = experiments.gather(chapter, spec.resolve(profile, **overrides), shards)
    print(result.frame.drop(columns=["id", "chapter"]).to_string(index=False))
    from dstlib.book import verdict_table

    print(verdict_table(experiments.judge(chapter, result.frame)).to_string())
    return 0


def sweep_points(chapter: str, profile: str, assignments: list[str], axes: list[str]) -> list[dict[str, Any]]:
    """Every grid point as a dict of overrides, each validated by :func:`dstlib.config.resolve`."""
    spec = experiments.spec(chapter)
    fixed = cfg.parse_assignments(spec, assignments)
    knobs = spec.all_knobs()
    names, value_lists = [], []
    for axis in axes:
        key, sep, text = axis.partition("=")
        if not sep or key not in knobs:
            raise ValueError(f"--grid {axis!r}: allowed KEY=V1,V2 with KEY one of {', '.join(sorted(knobs))}")
        values = [knobs[key].parse_element(v.strip()) for v in text.split(",") if v.strip()]
        names.append(key)
        value_lists.append([[v] for v in values] if knobs[key].is_list else values)
    points = [{**fixed, **dict(zip(names, combo, strict=True))} for combo in itertools.product(*value_lists)]
    for point in points:
        spec.resolve(profile, **point)
    return points


def point_name(point: dict[str, Any]) -> str:
    """A file name for a sweep point from its values: ``lr=0.01_seeds=0`` (``default`` when empty)."""
    parts = []
    for key, value in sorted(point.items()):
        shown = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={shown}")
    name = "_".join(parts) or "default"
    return "".join(c if c.isalnum() or c in "=,._-" else "-" for c in name)


def sweep(chapter: str, profile: str, assignments: list[str], axes: list[str], out: str | None,
          shard: str | None = None) -> int:
    import papermill

    from dstlib.experiments.common import shard_assignment

    points = sweep_points(chapter, profile, assignments, axes)
    if shard is not None:  # the K-th of N slices of the sweep's points (each one notebook of like cost)
        k, n = cfg.parse_shard(shard)
        slices = shard_assignment([1.0] * len(points), n)
        points = [point for point, chosen in zip(points, slices, strict=True) if chosen == k - 1]
    spec = experiments.spec(chapter)
    root = results.results_root(out).resolve()
    folder = root / chapter / "sweep"
    folder.mkdir(parents=True, exist_ok=True)
    notebook = results.REPO_ROOT / spec.notebook
    failed: list[dict[str, Any]] = []
    for point in points:
        tag = f"{profile}_{point_name(point)}"
        target = folder / f"{tag}.ipynb"
        if target.exists():
            print(f"skip {point} (done: {target.name})")
            continue
        print(f"run  {point}")
        partial = folder / f".{tag}.partial.ipynb"
        try:
            papermill.execute_notebook(str(notebook), str(partial), kernel_name="python3", progress_bar=False,
                                       cwd=str(notebook.parent),
                                       parameters={"profile": profile, "out_dir": str(root), **point})
            os.replace(partial, target)
        except papermill.PapermillExecutionError as error:  # the notebook raised: one line, then the next point
            failed.append(point)
            print(f"error: {point} failed in cell {error.exec_count}: {error.ename}: {error.evalue}", file=sys.stderr)
        finally:
            partial.unlink(missing_ok=True)  # a failed or interrupted point leaves no notebook; it reruns
    fast = bool(cfg.parse_assignments(spec, assignments).get("fast_dev_run"))  # never mixed with real records
    records = [r for r in results.read_records(root / chapter)
               if r["profile"] == profile and bool(r["params"].get("fast_dev_run")) == fast]
    table = results.to_frame(records)
    from dstlib.atomic import write_text

    write_text(folder / "table.csv", table.to_csv(index=False))
    print(f"{len(points)} grid points, {len(records)} records -> {folder / 'table.csv'}")
    if failed:
        print(f"error: {len(failed)} of {len(points)} grid points failed (their notebooks removed): "
              f"{', '.join(map(str, failed))}; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def interrupted(chapter: str, out: str | None) -> str:
    """The line printed on Ctrl-C: what is kept, and how to resume."""
    folder = results.results_root(out) / chapter
    done = len([p for p in folder.glob("*.json")]) if folder.is_dir() else 0
    return (f"interrupted: {done} finished records kept in {folder}, and the last checkpoint of each interrupted point "
            f"in {folder / 'checkpoints'}; run the same command again to resume (finished points are not redone)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            print(list_chapters())
            return 0
        if args.command == "run":
            return run_chapter(args.chapter, args.profile, args.assignments, args.out, args.shard,
                               args.fast_dev_run)
        if args.command == "gather":
            return gather_chapter(args.chapter, args.profile, args.assignments, args.out, args.shards)
        if args.command == "pilot":
            from dstlib.experiments.pilot import pilot_path, run_pilot

            print(run_pilot(args.chapter, out_dir=args.out).to_string(index=False))
            print(f"pilot table -> {pilot_path(args.chapter)}")
            return 0
        return sweep(args.chapter, args.profile, args.assignments, args.grid, args.out, args.shard)
    except (ValueError, FileNotFoundError) as error:  # bad input, or a dataset not available offline
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: no traceback, 128 + SIGINT as a shell reports it
        if args.command == "list":
            print("interrupted", file=sys.stderr)
        elif int(os.environ.get("RANK", 0)) == 0:
            print(interrupted(args.chapter, args.out), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
