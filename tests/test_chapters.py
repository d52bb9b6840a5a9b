"""Chapters rerun with papermill under non-default parameters, and the records reflect them.

(Every notebook also runs in the smoke profile under nbmake: `pytest --nbmake book`, see the Makefile.
The parameters cell of each notebook carries nbmake's `mock` metadata `{"profile": "smoke"}`.)
"""

import json
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.xdist_group("kernels")
def test_chapter1_papermill_rerun_with_other_parameters(tmp_path):
    notebook = ROOT / "book" / "01_dst_from_scratch.ipynb"
    papermill.execute_notebook(
        str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3", cwd=str(notebook.parent),
        progress_bar=False,
        parameters={"profile": "smoke", "methods": ["dense", "set"], "densities": [0.3], "seeds": [7],
                    "epochs": 1, "distribution": "uniform", "out_dir": str(tmp_path / "results")})
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / "dst_from_scratch").glob("*.json")]
    assert sorted((r["params"]["method"], r["params"]["density"], r["params"]["seed"]) for r in records) == [
        ("dense", 1.0, 7), ("set", 0.3, 7)]
    for record in records:
        assert record["config"]["distribution"] == "uniform" and record["config"]["epochs"] == 1
        assert record["profile"] == "smoke"
    sparse_run = next(r for r in records if r["params"]["method"] == "set")
    assert sparse_run["metrics"]["realised_density"] == pytest.approx(0.3, abs=0.01)
