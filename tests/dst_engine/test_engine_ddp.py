"""Guarantee 4: under torchrun (gloo, 2 processes) masks are identical on every rank after init and after
every update, with at most one broadcast per update and none per step (checks in ``ddp_worker.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_masks_identical_across_ranks(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*command, str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(out.read_text())
    for name, case in summary.items():
        assert case["updates"] >= 2, f"{name}: too few updates to test anything"
        assert len(case["checksums"]) == case["updates"] + 1
