"""Print and save the wall time of every chapter from the book build's jupyter-cache.

Run after ``jupyter-book build`` (``make book`` does): for each ``book/*.ipynb`` it finds the cache
record whose code matches the notebook as it is now, reads the ``execution_seconds`` that myst-nb
stored when it executed that version, prints a Markdown table with a total and the chapters over
budget marked, and writes the table to ``_build/exec_times.md``.

    python tools/exec_times.py [--cache _build/.jupyter_cache] [--book book] [--out _build/exec_times.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from dstlib.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_BUDGET_S = 300.0
BOOK_BUDGET_S = 35 * 60.0


@dataclass(frozen=True)
class ChapterTime:
    """One chapter's wall time; ``seconds`` is ``None`` when the cache holds no run of this version."""

    notebook: str
    title: str
    seconds: float | None


def notebook_title(path: Path) -> str:
    """The text of the notebook's first ``# `` heading, or its file name when it has none."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell.get("source", []))
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return path.stem


def collect(cache_dir: Path, notebooks: list[Path]) -> list[ChapterTime]:
    """Look up each notebook in the jupyter-cache at ``cache_dir``.

    A record matches when its code cells equal the notebook's (jupyter-cache's hash), so the time is
    the one of the outputs the book shows, not of an older version of the chapter.
    """
    if not (cache_dir / "global.db").is_file():
        raise FileNotFoundError(f"no jupyter-cache at {cache_dir}; build the book first (make book)")
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    rows = []
    for path in notebooks:
        try:
            record = cache.match_cache_file(str(path))
        except KeyError:
            seconds = None
        else:
            seconds = (record.data or {}).get("execution_seconds")
        rows.append(ChapterTime(path.name, notebook_title(path), seconds))
    return rows


def format_table(rows: list[ChapterTime], chapter_budget_s: float = CHAPTER_BUDGET_S,
                 book_budget_s: float = BOOK_BUDGET_S) -> str:
    """A Markdown table: one line per chapter, then the total, each flagged when over its budget."""

    def flag(seconds: float, budget: float) -> str:
        return "**over budget**" if seconds > budget else "ok"

    lines = ["| Chapter | Title | Wall time (s) | Wall time (min) | Budget |",
             "|---|---|---:|---:|---|"]
    for row in rows:
        if row.seconds is None:
            lines.append(f"| {row.notebook} | {row.title} | - | - | not in the cache |")
        else:
            lines.append(f"| {row.notebook} | {row.title} | {row.seconds:.1f} | {row.seconds / 60:.2f} | "
                         f"{flag(row.seconds, chapter_budget_s)} |")
    total = sum(row.seconds for row in rows if row.seconds is not None)
    lines.append(f"| **total** | {len(rows)} chapters | {total:.1f} | {total / 60:.2f} | "
                 f"{flag(total, book_budget_s)} |")
    lines.append("")
    lines.append(f"Budget: {chapter_budget_s / 60:.0f} min per chapter, {book_budget_s / 60:.0f} min for the "
                 "book, on a 2-core CPU (tutorial profile).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache")
    parser.add_argument("--book", type=Path, default=ROOT / "book")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "exec_times.md")
    args = parser.parse_args(argv)

    notebooks = sorted(args.book.glob("*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {args.book}", file=sys.stderr)
        return 1
    try:
        rows = collect(args.cache, notebooks)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    table = format_table(rows)
    print(table, end="")
    write_text(args.out, "# Chapter wall times\n\n" + table)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
