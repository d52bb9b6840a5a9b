"""Write (or check) the install cell of every chapter notebook from the repository in ``_config.yml``.

A chapter opened in Colab arrives alone, without ``dstlib``; one opened in Binder arrives in a clone
where ``dstlib`` is not installed. So the first code cell of every chapter (right after the title
cell, before the parameters) installs ``dstlib`` and the book's libraries when ``dstlib`` is not
importable, and does nothing where the book was set up with ``make``. It needs the repository's URL,
which lives in one place, ``repository.url`` in ``_config.yml`` (empty: the book names no repository,
shows no repository or launch buttons, and the cell only explains what is missing). This tool copies
the URL and branch into the cell; run it after changing them or after adding a chapter:

    python tools/install_cell.py            # write the cell into every book/*.ipynb
    python tools/install_cell.py --check    # exit 1 if a chapter's cell is missing or out of date

The cell is tagged ``skip-execution`` (nbclient, hence myst-nb, nbmake and papermill, do not run it:
the book and the tests run where ``dstlib`` is installed) and ``remove-cell`` (the page does not show
it). Jupyter, Colab and Binder ignore both tags and run it.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CELL_ID = "install-dstlib"
TAGS = ["remove-cell", "skip-execution"]
# What a chapter needs beyond dstlib's own dependencies and a Jupyter runtime with torch (Colab's
# numpy, pandas, torch ... stay as they are); the versions come from requirements.txt.
LIBRARIES = ("myst-nb", "pooch", "seaborn", "mnist1d", "scikit-image", "imagecorruptions", "sktime", "monai",
             "espeakng-loader", "jiwer")

TEMPLATE = '''\
# Colab or Binder: install dstlib and the chapter's libraries (only the notebook came along).
# Where the book was set up with `make`, dstlib imports and this cell does nothing.
# The repository is named in _config.yml (repository.url); tools/install_cell.py copies it here.
REPOSITORY, BRANCH = {repository}, {branch}
LIBRARIES = {libraries}
import importlib.util
import pathlib
import subprocess
import sys

if importlib.util.find_spec("dstlib") is None:
    source = pathlib.Path.cwd().parent  # Binder: the notebook runs in book/ of a clone
    if not (source / "dstlib").is_dir():
        if not REPOSITORY:
            raise ModuleNotFoundError("dstlib is not installed and the book names no repository: "
                                      "run this notebook from a clone of the book (see its README)")
        source = pathlib.Path.home() / "dstlib-book"  # Colab: clone the repository once
        if not source.is_dir():
            subprocess.run(["git", "clone", "--depth", "1", "--branch", BRANCH, REPOSITORY, str(source)],
                           check=True)
    pins = [line.split("#")[0].strip() for line in (source / "requirements.txt").read_text().splitlines()]
    pins = [pin for pin in pins if pin.split("==")[0].lower() in LIBRARIES]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", str(source), *pins], check=True)
    sys.path.insert(0, str(source))  # a running kernel does not see a fresh editable install'''


def repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """The book's repository URL ("" when none is set) and branch, from ``_config.yml``."""
    settings = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("repository") or {}
    return str(settings.get("url") or "").strip(), str(settings.get("branch") or "main").strip()


def cell_source(url: str, branch: str) -> str:
    """The install cell's code for a repository URL and branch."""
    names = textwrap.fill(", ".join(json.dumps(name) for name in LIBRARIES), width=100,
                          subsequent_indent=" " * len("LIBRARIES = ("), break_on_hyphens=False)
    return TEMPLATE.format(repository=json.dumps(url), branch=json.dumps(branch), libraries=f"({names})")


def install_cell(url: str, branch: str) -> dict:
    """The install cell as notebook JSON (nbformat 4.5, no outputs)."""
    return {"cell_type": "code", "execution_count": None, "id": CELL_ID, "metadata": {"tags": list(TAGS)},
            "outputs": [], "source": cell_source(url, branch).splitlines(keepends=True)}


def with_install_cell(notebook: dict, url: str, branch: str) -> dict:
    """The notebook with its install cell, up to date, right after the title cell."""
    cells = [cell for cell in notebook["cells"] if cell.get("id") != CELL_ID]
    return {**notebook, "cells": cells[:1] + [install_cell(url, branch)] + cells[1:]}


def write_notebook(path: Path, notebook: dict) -> None:
    """Write notebook JSON the way the book's notebooks are committed."""
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report chapters whose cell is out of date")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: book/*.ipynb")
    args = parser.parse_args(argv)
    url, branch = repository()
    stale = []
    for path in args.notebooks or sorted((ROOT / "book").glob("*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        updated = with_install_cell(notebook, url, branch)
        if updated == notebook:
            continue
        stale.append(path)
        if not args.check:
            write_notebook(path, updated)
            print(f"{path}: install cell written (repository {url or 'none'})")
    if args.check and stale:
        print("install cell missing or out of date (run python tools/install_cell.py): "
              + ", ".join(str(path) for path in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
