"""Drop the book's jupyter-cache when the dstlib code the chapters run has changed.

Jupyter Book 1 (``execute_notebooks: cache``) keys its cache on a notebook's code cells only, so an edit
to ``dstlib/`` would keep the outputs computed by the old code. ``make book`` runs this tool before
the build: it hashes every file under ``dstlib/`` (paths and contents, ``__pycache__`` and ``*.pyc``
left out) and ``requirements.txt``, and compares the hash with the one stored beside the cache
(``_build/.jupyter_cache.dstlib.sha256``). When they differ, or the cache exists without a stored hash,
the whole cache is removed, so every chapter executes again; then the new hash is stored.

This is a sound over-approximation: any change to the library or the pinned packages re-executes every
chapter, also those that do not use the changed code (a docstring edit included). It never keeps an
output computed by other code, which per-chapter dependency tracking could get wrong. The hash is
taken before the build, so an edit made while the book builds is caught by the next ``make book``.
Both steps are atomic: the cache is renamed aside before it is deleted (a crash never leaves half a
cache) and the hash file is written by rename (``dstlib.atomic``).

    python tools/cache_key.py [--cache _build/.jupyter_cache]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dstlib.atomic from this checkout, installed or not

from dstlib.atomic import write_text  # noqa: E402


def source_hash(root: Path = ROOT) -> str:
    """sha256 over the relative paths and contents of ``dstlib/`` and ``requirements.txt`` under ``root``."""
    digest = hashlib.sha256()
    files = [p for p in sorted((root / "dstlib").rglob("*")) if p.is_file() and p.suffix != ".pyc"
             and "__pycache__" not in p.parts]
    files.append(root / "requirements.txt")
    for path in files:
        relative = path.relative_to(root).as_posix()
        data = path.read_bytes() if path.exists() else b"<missing>"
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def stamp_path(cache: Path) -> Path:
    """Where the hash of the code that filled ``cache`` is stored: beside it, ``<cache>.dstlib.sha256``."""
    return cache.with_name(cache.name + ".dstlib.sha256")


def sync(cache: Path, root: Path = ROOT) -> bool:
    """Remove ``cache`` if it was filled by other dstlib code, then store the current hash. Returns
    whether the cache was removed."""
    current = source_hash(root)
    stamp = stamp_path(cache)
    stored = stamp.read_text().strip() if stamp.exists() else None
    dropped = False
    if cache.exists() and stored != current:
        aside = Path(tempfile.mkdtemp(prefix=f".{cache.name}.old.", dir=cache.parent))
        cache.rename(aside / cache.name)
        shutil.rmtree(aside)
        dropped = True
    if stored != current:
        write_text(stamp, current + "\n")
    return dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / ".jupyter_cache")
    args = parser.parse_args(argv)
    if sync(args.cache):
        print(f"dstlib or requirements.txt changed: removed {args.cache}, every chapter executes again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
