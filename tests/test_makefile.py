"""`make test` runs ruff, pytest and nbmake whichever of them fails, names the failed ones and fails; the
temporary DSTLIB_RESULTS folder is removed. Run on a copy of the Makefile with stub tools (no real tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
STUB = """#!/bin/sh
echo "$0 $*" >> "{log}"
echo "$DSTLIB_RESULTS" > "{log}.records"
case "$0 $*" in
  *ruff*) exit {ruff};;
  *nbmake*) exit {nbmake};;
  *) exit {pytest};;
esac
"""


def _make_test(tmp_path: Path, ruff: int = 0, pytest_: int = 0, nbmake: int = 0) -> tuple[subprocess.CompletedProcess,
                                                                                          str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.txt", "pyproject.toml", "tools/ipython_kernel_config.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    for tool in ("ruff", "pytest"):
        (bin_dir / tool).write_text(STUB.format(log=log, ruff=ruff, pytest=pytest_, nbmake=nbmake))
        (bin_dir / tool).chmod(0o755)
    (tmp_path / ".venv" / ".installed").touch()  # newer than its prerequisites: no install
    done = subprocess.run(["make", "-s", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return done, log.read_text()


def test_make_test_runs_every_step_and_names_the_failed_ones(tmp_path: Path) -> None:
    done, calls = _make_test(tmp_path, pytest_=1)
    assert "ruff check" in calls and "tests" in calls and "--nbmake" in calls  # nbmake ran after pytest failed
    assert done.returncode != 0 and "FAILED: pytest" in done.stdout
    assert not Path((tmp_path / "calls.log.records").read_text().strip()).exists()  # DSTLIB_RESULTS removed


def test_make_test_reports_several_failures_and_passes_when_all_pass(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    done, _ = _make_test(tmp_path / "a", ruff=1, nbmake=2)
    assert done.returncode != 0 and "FAILED: ruff nbmake" in done.stdout
    (tmp_path / "b").mkdir()
    done, calls = _make_test(tmp_path / "b")
    assert done.returncode == 0 and calls.count("\n") == 3, done.stdout + done.stderr
