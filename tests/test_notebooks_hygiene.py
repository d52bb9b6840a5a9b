"""The book's sources follow the chapter contract: clean notebooks, a parameters cell, a complete toc,
and citations that resolve.

Each rule is a small function that returns the problems it finds, so the self-tests at the bottom can
show that every rule fails on a notebook that breaks it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from pybtex.database import parse_file

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
PAGES = sorted(BOOK.glob("*.md"))
CITE_ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")


def parameters_problems(cell: dict) -> list[str]:
    """Problems of the ``parameters`` cell: it must set ``profile = "tutorial"``, leave every other
    knob at ``None``, and carry nbmake mock metadata that switches the profile to ``smoke``."""
    problems = []
    if cell.get("cell_type") != "code":
        return ["the cell tagged 'parameters' is not a code cell"]
    try:
        tree = ast.parse("".join(cell.get("source", "")))
    except SyntaxError as error:
        return [f"the parameters cell does not parse: {error}"]
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values[node.target.id] = node.value
        else:
            problems.append(f"the parameters cell may only assign names, found: {ast.unparse(node)}")
    profile = values.pop("profile", None)
    if not (isinstance(profile, ast.Constant) and profile.value == "tutorial"):
        problems.append('the parameters cell must set profile = "tutorial"')
    for name, value in values.items():
        if not (isinstance(value, ast.Constant) and value.value is None):
            problems.append(f"knob {name!r} must default to None (= the profile's value), "
                            f"not {ast.unparse(value)}")
    mock = cell.get("metadata", {}).get("nbmake", {}).get("mock", {})
    if mock.get("profile") != "smoke":
        problems.append('the parameters cell needs metadata {"nbmake": {"mock": {"profile": "smoke"}}}')
    return problems


def notebook_problems(path: Path) -> list[str]:
    """Everything wrong with one committed chapter notebook; an empty list means it is clean."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return [f"not valid JSON: {error}"]
    try:
        nbformat.validate(nbformat.from_dict(raw))
    except nbformat.ValidationError as error:
        return [f"not a valid notebook: {error.message}"]
    problems = []
    kernel = raw.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name is {kernel!r}, must be 'python3'")
    if "widgets" in raw.get("metadata", {}):
        problems.append("metadata holds saved widget state (an output)")
    cells = raw.get("cells", [])
    first = cells[0] if cells else {}
    if first.get("cell_type") != "markdown" or not "".join(first.get("source", "")).startswith("# "):
        problems.append("the first cell must be markdown starting with '# ' (the chapter title)")
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has an execution count")
    tagged = [cell for cell in cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells are tagged 'parameters', must be exactly 1")
    else:
        problems.extend(parameters_problems(tagged[0]))
    if any("injected-parameters" in cell.get("metadata", {}).get("tags", []) for cell in cells):
        problems.append("a papermill 'injected-parameters' cell was committed")
    return problems


def papermill_problems(cell: dict) -> list[str]:
    """Problems papermill has with the ``parameters`` cell: every warning its own parser
    (``PythonTranslator.inspect``, behind ``--help-notebook``) logs, and every assigned name it does not
    list (a comment it cannot parse, such as ``(0 = all)``, hides the knob from ``--help-notebook``)."""
    import logging

    from papermill.translators import PythonTranslator

    source = "".join(cell.get("source", ""))
    assigned = [node.targets[0].id for node in ast.parse(source).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)]
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("papermill.translators")
    logger.addHandler(handler)
    try:
        listed = [parameter.name for parameter in PythonTranslator.inspect({"source": source})]
    finally:
        logger.removeHandler(handler)
    return [f"papermill: {w}" for w in warnings] + [f"papermill does not list {name!r}" for name in assigned
                                                     if name not in listed]


def _parameters_of(path: Path) -> dict:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))


def toc_entries(node: object) -> list[str]:
    """Every ``root`` and ``file`` in a jb-book ``_toc.yml``, without suffix, in order."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(str(Path(value).with_suffix("")) if Path(value).suffix in (".md", ".ipynb")
                             else value)
            else:
                found.extend(toc_entries(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(toc_entries(item))
    return found


def cited_keys(text: str) -> set[str]:
    """Keys of every ``{cite}`` / ``{cite:p}`` / ``{cite:t}`` ... role in MyST text."""
    return {key.strip() for match in CITE_ROLE.finditer(text) for key in match.group(1).split(",")
            if key.strip()}


def book_texts() -> dict[str, str]:
    """The prose of the book: every page, and the markdown cells of every notebook."""
    texts = {page.name: page.read_text(encoding="utf-8") for page in PAGES}
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts[path.name] = "\n".join("".join(cell["source"]) for cell in cells
                                     if cell["cell_type"] == "markdown")
    return texts


def test_book_has_chapters():
    assert NOTEBOOKS, f"no chapter notebooks in {BOOK}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_clean(path: Path):
    assert notebook_problems(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_papermill_parses_the_parameters_cell_and_lists_every_knob(path: Path):
    from papermill.translators import PythonTranslator

    from dstlib import experiments

    cell = _parameters_of(path)
    assert papermill_problems(cell) == []
    specs = [experiments.spec(name) for name in experiments.names()
             if Path(experiments.spec(name).notebook).name == path.name]
    listed = {parameter.name for parameter in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    assert len(specs) == 1, f"{path.name} is the notebook of {len(specs)} chapters"
    for spec in specs:
        assert set(spec.all_knobs()) | {"profile"} <= listed, sorted(set(spec.all_knobs()) - listed)


def test_toc_and_book_folder_agree():
    entries = toc_entries(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))
    missing = [entry for entry in entries
               if not any((ROOT / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb"))]
    assert missing == [], f"_toc.yml lists files that do not exist: {missing}"
    assert len(entries) == len(set(entries)), "_toc.yml lists a file twice"
    on_disk = {path.relative_to(ROOT).with_suffix("").as_posix() for path in NOTEBOOKS + PAGES}
    assert set(entries) == on_disk, (f"in book/ but not in _toc.yml: {sorted(on_disk - set(entries))}; "
                                     f"in _toc.yml but not in book/: {sorted(set(entries) - on_disk)}")


def test_every_citation_is_in_references_bib():
    known = set(parse_file(str(ROOT / "references.bib")).entries)
    unknown = {name: sorted(cited_keys(text) - known) for name, text in book_texts().items()}
    assert {name: keys for name, keys in unknown.items() if keys} == {}


# Self-tests: the rules above must fail on notebooks that break them.

def _notebook(cells: list, kernel: str = "python3") -> dict:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = cells
    return nb


def _parameters_cell(source: str = 'profile = "tutorial"  # smoke, tutorial or paper\nepochs = None',
                     mock: dict | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    cell.metadata["nbmake"] = {"mock": {"profile": "smoke"} if mock is None else mock}
    return cell


def _write(tmp_path: Path, nb: dict) -> Path:
    path = tmp_path / "chapter.ipynb"
    path.write_text(nbformat.writes(nbformat.from_dict(nb)), encoding="utf-8")
    return path


def test_rules_accept_a_clean_notebook(tmp_path: Path):
    nb = _notebook([nbformat.v4.new_markdown_cell("# A chapter"), _parameters_cell()])
    assert notebook_problems(_write(tmp_path, nb)) == []


def test_rules_reject_a_dirty_notebook(tmp_path: Path):
    code = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    nb = _notebook([code, _parameters_cell('profile = "paper"\nepochs = 5', mock={})], kernel="dstlib")
    problems = "\n".join(notebook_problems(_write(tmp_path, nb)))
    for expected in ("kernelspec", "first cell", "has outputs", "execution count", 'profile = "tutorial"',
                     "'epochs' must default to None", "nbmake"):
        assert expected in problems


def test_rules_require_one_parameters_cell(tmp_path: Path):
    nb = _notebook([nbformat.v4.new_markdown_cell("# A chapter"), nbformat.v4.new_code_cell("x = 1")])
    assert notebook_problems(_write(tmp_path, nb)) == ["0 cells are tagged 'parameters', must be exactly 1"]


def test_rules_reject_invalid_json(tmp_path: Path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{", encoding="utf-8")
    assert notebook_problems(path)[0].startswith("not valid JSON")


def test_papermill_rule_rejects_a_comment_it_cannot_parse():
    assert papermill_problems(_parameters_cell('profile = "tutorial"\nepochs = None  # passes (0: all)')) == []
    problems = papermill_problems(_parameters_cell('profile = "tutorial"\nepochs = None  # passes (0 = all)'))
    assert any("Unable to parse line 2" in p for p in problems) and "papermill does not list 'epochs'" in problems


def test_cited_keys_reads_every_cite_role():
    text = "See {cite:p}`a2020, b2021` and {cite:t}`c2022`; {cite}`d` too, not `e`."
    assert cited_keys(text) == {"a2020", "b2021", "c2022", "d"}


def test_toc_entries_reads_root_parts_and_sections():
    toc = {"root": "book/intro", "parts": [{"chapters": [{"file": "book/a.ipynb",
                                                           "sections": [{"file": "book/b"}]}]}]}
    assert toc_entries(toc) == ["book/intro", "book/a", "book/b"]
