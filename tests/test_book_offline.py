"""The HTML book reads offline and shows no dead button; each chapter carries its install cell.

- ``tools/check_offline_html.py`` (run at the end of ``make book``) must catch a CDN script, a widget
  manager from a CDN, a missing local file, math without MathJax, the placeholder repository and
  launch or repository buttons without a repository, and pass a clean page.
- ``tools/book_html.py`` must serve MathJax from the book and show repository and launch buttons only
  when ``repository.url`` is set: a small book is built with the project's ``_config.yml`` both ways.
- ``tools/install_cell.py``: every chapter has the install cell, up to date with ``_config.yml``, and
  the cell installs from a clone (Binder) or the repository (Colab) only when ``dstlib`` is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_offline_html as checker  # noqa: E402
import install_cell  # noqa: E402

LOCAL_MATHJAX = '<script defer src="_static/mathjax/tex-mml-chtml.js"></script>'


def _page(tmp_path: Path, body: str, head: str = "") -> Path:
    (tmp_path / "_static" / "mathjax").mkdir(parents=True, exist_ok=True)
    (tmp_path / "_static" / "mathjax" / "tex-mml-chtml.js").write_text("// MathJax")
    page = tmp_path / "page.html"
    page.write_text(f"<html><head>{head}</head><body>{body}</body></html>", encoding="utf-8")
    return page


def _problems(tmp_path: Path, body: str, head: str = "", repository: str = "") -> list[str]:
    return checker.book_problems(_page(tmp_path, body, head).parent, repository).get("page.html", [])


def test_checker_passes_a_page_that_loads_only_its_own_files(tmp_path: Path):
    body = '<span class="math notranslate">\\(x\\)</span><a href="https://arxiv.org/abs/1">paper</a>'
    assert _problems(tmp_path, body, LOCAL_MATHJAX) == []


@pytest.mark.parametrize(("head", "expected"), [
    ('<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
     "from outside the book"),
    ('<script src="//cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>',
     "from outside the book"),
    ('<script src="_static/embed.js" data-jupyter-widgets-cdn="https://cdn.jsdelivr.net/npm/"></script>',
     "loads widget code from"),
    ('<script>var s = "https://unpkg.com/@jupyter-widgets/html-manager/dist/embed-amd.js"</script>',
     "an inline script names"),
    ('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Lato">', "from outside the book"),
    ('<script src="_static/missing.js"></script>', "not in the built book"),
])
def test_checker_rejects_code_from_outside_the_book(tmp_path: Path, head: str, expected: str):
    problems = _problems(tmp_path, "", LOCAL_MATHJAX + head)
    assert any(expected in problem for problem in problems), problems


def test_checker_wants_mathjax_where_there_are_equations(tmp_path: Path):
    problems = _problems(tmp_path, '<span class="math notranslate">\\(x\\)</span>')
    assert problems == ["shows equations but loads no MathJax of the book's own"]


def test_checker_rejects_dead_buttons(tmp_path: Path):
    body = ('<a class="btn btn-sm" href="https://github.com/someone/book">repository</a>'
            '<a href="https://mybinder.org/v2/gh/someone/book/main?urlpath=tree/a.ipynb">Binder</a>'
            '<a href="https://github.com/dstlib/dynamic-sparsity-book">old</a>')
    problems = "\n".join(_problems(tmp_path, body, LOCAL_MATHJAX))
    for expected in ("a button to https://github.com/someone/book without a repository",
                     "a launch link without a repository", "placeholder repository"):
        assert expected in problems
    assert _problems(tmp_path, body.rsplit("<a href", 1)[0], LOCAL_MATHJAX,
                     repository="https://github.com/someone/book") == []
    assert _problems(tmp_path, '<a class="btn" href="https://github.com/other/repo">x</a>', LOCAL_MATHJAX,
                     repository="https://github.com/someone/book") != []


def test_config_names_no_placeholder_repository():
    for name in ("_config.yml", "README.md", "book/intro.md"):
        assert checker.PLACEHOLDER_REPOSITORY not in (ROOT / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda path: path.name)
def test_every_chapter_has_its_install_cell(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    up_to_date = install_cell.with_install_cell(notebook, *install_cell.repository()) == notebook
    assert up_to_date, (f"{path.name}: the install cell is missing, misplaced or out of date: "
                        "run .venv/bin/python tools/install_cell.py")


def _run_install_cell(monkeypatch: pytest.MonkeyPatch, cwd: Path, repository: str, importable: bool,
                      clone: Path | None = None) -> list[list[str]]:
    """Execute the install cell with ``find_spec`` and ``subprocess.run`` faked; the commands it ran."""
    commands: list[list[str]] = []

    def fake_run(command: list[str], check: bool) -> None:
        commands.append(command)
        if command[:2] == ["git", "clone"]:  # a clone of this repository, as Colab would get it
            Path(command[-1]).mkdir(parents=True)
            (Path(command[-1]) / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: real_find_spec(name, *args) if importable or name != "dstlib" else None)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setenv("HOME", str(clone or cwd))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(install_cell.cell_source(repository, "main"), {})
    return commands


def test_install_cell_does_nothing_where_dstlib_is_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert _run_install_cell(monkeypatch, tmp_path, "https://github.com/someone/book", importable=True) == []


def test_install_cell_explains_itself_without_a_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "book").mkdir()
    with pytest.raises(ModuleNotFoundError, match="names no repository"):
        _run_install_cell(monkeypatch, tmp_path / "book", "", importable=False)


def test_install_cell_installs_from_the_clone_it_runs_in(monkeypatch: pytest.MonkeyPatch):
    (command,) = _run_install_cell(monkeypatch, ROOT / "book", "", importable=False)
    assert command[1:6] == ["-m", "pip", "install", "--quiet", "-e"] and Path(command[6]) == ROOT
    assert "myst-nb==1.4.0" in command and not any(pin.startswith("torch") for pin in command)


def test_install_cell_clones_the_repository_in_colab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "content").mkdir()
    clone, install = _run_install_cell(monkeypatch, tmp_path / "content", "https://github.com/someone/book",
                                       importable=False, clone=tmp_path / "home")
    assert clone == ["git", "clone", "--depth", "1", "--branch", "main", "https://github.com/someone/book",
                     str(tmp_path / "home" / "dstlib-book")]
    assert install[6] == str(tmp_path / "home" / "dstlib-book") and "mnist1d==0.0.2.post1" in install


def _small_book(folder: Path, repository: str) -> Path:
    """A two-page book built with the project's _config.yml (no execution); its _build/html."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config["execute"] = {"execute_notebooks": "off"}
    config["repository"]["url"] = repository
    config["sphinx"]["local_extensions"] = {name: str(ROOT / path)
                                            for name, path in config["sphinx"]["local_extensions"].items()}
    config["sphinx"]["config"]["bibtex_bibfiles"] = [str(ROOT / "references.bib")]
    config.pop("bibtex_bibfiles", None)
    config.pop("exclude_patterns", None)
    folder.mkdir()
    (folder / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (folder / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n  - file: page\n")
    (folder / "intro.md").write_text("# Intro\n\nThe density $d = \\lVert M \\rVert_0 / n$.\n")
    (folder / "page.md").write_text("---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
                                    "  name: python3\n  display_name: Python 3\n  language: python\n---\n\n"
                                    "# A MyST notebook\n\n```{code-cell} python\n1 + 1\n```\n")
    chapter = nbformat.v4.new_notebook()
    chapter.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    slider = {"model_module": "@jupyter-widgets/controls", "model_name": "IntSliderModel",
              "model_module_version": "2.0.0", "state": {"value": 1}}
    chapter.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0, "state": {"abc": slider}}}
    chapter.cells = [nbformat.v4.new_markdown_cell("# A chapter\n\n$$\\zeta_t = \\zeta_0$$"),
                     nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(chapter, folder / "chapter.ipynb")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jupyter_book), "build", str(folder), "-W", "--keep-going"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder / "_build" / "html"


@pytest.mark.slow
def test_a_book_without_repository_reads_offline_and_has_no_buttons(tmp_path: Path):
    html = _small_book(tmp_path / "book", repository="")
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert checker.book_problems(html, "") == {}
    chapter = (html / "chapter.html").read_text(encoding="utf-8")
    assert "_static/mathjax/tex-mml-chtml.js" in chapter and "widget-state+json" in chapter
    assert "mybinder" not in chapter and "btn-source-repository-button" not in chapter


@pytest.mark.slow
def test_a_book_with_a_repository_offers_its_buttons(tmp_path: Path):
    repository = "https://github.com/someone/book"
    html = _small_book(tmp_path / "book", repository=repository)
    assert checker.book_problems(html, repository) == {}
    chapter = (html / "chapter.html").read_text(encoding="utf-8")
    page = (html / "page.html").read_text(encoding="utf-8")
    assert "https://mybinder.org/v2/gh/someone/book/main?urlpath=tree/chapter.ipynb" in chapter
    assert "https://colab.research.google.com/github/someone/book/blob/main/chapter.ipynb" in chapter
    assert "https://github.com/someone/book/issues/new" in chapter
    assert "mybinder.org" in page and "colab.research.google.com" not in page  # Colab opens notebooks only
