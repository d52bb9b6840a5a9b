"""Run records: one JSON file per training run, and many of them as one pandas DataFrame.

A record holds what is needed to trust and reproduce a number: the chapter and profile, the run's
parameters (method, density, seed, ...), the final metrics, the per-epoch history, the wall time and
the provenance (git commit, device, library versions, time). Records are written atomically under
``<out_dir>/<chapter>/<run_id>.json`` where ``run_id`` is a hash of the chapter, profile and params,
so rerunning the same setting replaces its record instead of duplicating it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dstlib.atomic import write_json

REPO_ROOT = Path(__file__).resolve().parents[1]


def results_root(out_dir: str | os.PathLike | None = None) -> Path:
    """``out_dir`` if given, else ``$DSTLIB_RESULTS``, else ``results/`` at the repository root."""
    if out_dir is not None:
        return Path(out_dir)
    return Path(os.environ.get("DSTLIB_RESULTS", REPO_ROOT / "results"))


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(device: Any = None, world_size: int = 1, code: str | None = None) -> dict[str, Any]:
    """Where and with what a run happened: git commit, the ``code`` fingerprint of ``dstlib``, device,
    number of processes, torch/python versions, host, UTC time."""
    import torch

    device = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
    return {
        "git_commit": _git_commit(),
        "code": code,
        "device": device,
        "world_size": int(world_size),
        "device_name": name,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_id(chapter: str, profile: str, params: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> str:
    """A stable 12-hex-digit id for a (chapter, profile, params, config) combination."""
    blob = json.dumps({"chapter": chapter, "profile": profile, "params": params, "config": config},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def make_record(*, chapter: str, profile: str, params: Mapping[str, Any], metrics: Mapping[str, Any],
                history: Iterable[Mapping[str, Any]] = (), wall_time_s: float, config: Mapping[str, Any],
                device: Any = None, world_size: int = 1, code: str | None = None, id: str | None = None
                ) -> dict[str, Any]:
    """Assemble a record. ``params`` identify the run inside the chapter (method, density, seed...);
    ``config`` is the whole resolved chapter configuration it came from; ``id`` defaults to
    :func:`run_id` of them."""
    return {
        "id": id or run_id(chapter, profile, params, {k: v for k, v in config.items() if k != "out_dir"}),
        "chapter": chapter,
        "profile": profile,
        "params": dict(params),
        "metrics": dict(metrics),
        "history": [dict(h) for h in history],
        "wall_time_s": float(wall_time_s),
        "config": dict(config),
        "provenance": provenance(device, world_size, code),
    }


def write_record(record: Mapping[str, Any], out_dir: str | os.PathLike | None = None) -> Path:
    """Atomically write ``record`` to ``<out_dir>/<chapter>/<id>.json`` and return the path."""
    path = results_root(out_dir) / record["chapter"] / f"{record['id']}.json"
    return write_json(path, record)


def read_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read records from JSON files, or from every record ``*.json`` under a folder (recursively)."""
    if isinstance(paths, str | os.PathLike):
        root = Path(paths)
        paths = sorted(root.rglob("*.json")) if root.is_dir() else [root]
    return [json.loads(Path(p).read_text()) for p in paths]


def to_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per record: ``id``, ``chapter``, ``profile``, the config values that differ between the
    records (e.g. the swept ``lr``), the params, the metrics and ``wall_time_s``.

    Params and metrics become columns; a metric that is itself a dict or list stays a single cell.
    """
    records = list(records)
    configs = [{k: json.dumps(v, sort_keys=True) for k, v in r["config"].items() if k != "out_dir"}
               for r in records]
    varying = sorted(k for k in set().union(*configs) if len({c.get(k) for c in configs}) > 1) if configs else []
    rows = []
    for record in records:
        row = {"id": record["id"], "chapter": record["chapter"], "profile": record["profile"]}
        row.update({k: record["config"].get(k) for k in varying if k not in record["params"]})
        row.update(record["params"])
        row.update(record["metrics"])
        row["wall_time_s"] = record["wall_time_s"]
        rows.append(row)
    return pd.DataFrame(rows)


def load(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """:func:`read_records` then :func:`to_frame`."""
    return to_frame(read_records(paths))
