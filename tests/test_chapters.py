"""Chapters rerun with papermill under non-default parameters, and the records reflect them.

(Every notebook also runs in the smoke profile under nbmake: `pytest --nbmake book`, see the Makefile.
The parameters cell of each notebook carries nbmake's `mock` metadata `{"profile": "smoke"}`.)
"""

import json
from pathlib import Path

import papermill
import pytest

from dstlib import experiments

ROOT = Path(__file__).resolve().parents[1]


def test_every_registered_chapter_has_its_notebook():
    for name in experiments.names():
        assert (ROOT / experiments.spec(name).notebook).exists()


@pytest.mark.parametrize("chapter", experiments.names())
def test_the_parameters_cell_lists_every_knob(chapter):
    import ast

    spec = experiments.spec(chapter)
    notebook = json.loads((ROOT / spec.notebook).read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = {node.targets[0].id for node in ast.parse("".join(cell["source"])).body}
    assert names == {"profile", *spec.all_knobs()}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.xdist_group("kernels")
@pytest.mark.parametrize("chapter", experiments.names())
def test_every_chapter_reruns_with_papermill_under_other_parameters(chapter, tmp_path):
    """The smoke profile with another seed list: every record shows the override."""
    notebook = ROOT / experiments.spec(chapter).notebook
    parameters = {"profile": "smoke", "seeds": [7], "out_dir": str(tmp_path / "results")}
    papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               cwd=str(notebook.parent), progress_bar=False, parameters=parameters)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results" / chapter).glob("*.json")]
    assert records and {r["params"]["seed"] for r in records} == {7}
    for record in records:
        assert record["profile"] == "smoke" and record["config"]["seeds"] == [7]


@pytest.mark.notebook
@pytest.mark.xdist_group("kernels")
def test_a_papermill_parameter_that_is_not_a_knob_fails_the_first_code_cell(tmp_path):
    notebook = ROOT / "book" / "01_dst_from_scratch.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match=r"density=0.1: unknown parameter"):
        papermill.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   cwd=str(notebook.parent), progress_bar=False,
                                   parameters={"profile": "smoke", "density": 0.1, "out_dir": str(tmp_path)})
    executed = json.loads((tmp_path / "out.ipynb").read_text())
    ran = [c for c in executed["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    assert len(ran) <= 3  # parameters, injected parameters, the first code cell: nothing trained
