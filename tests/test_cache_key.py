"""tools/cache_key.py: the book's jupyter-cache is kept while dstlib is unchanged, dropped when it changes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("cache_key", ROOT / "tools" / "cache_key.py")
cache_key = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cache_key)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "dstlib" / "sparse").mkdir(parents=True)
    (tmp_path / "dstlib" / "__init__.py").write_text("")
    (tmp_path / "dstlib" / "sparse" / "criteria.py").write_text("def f():\n    return 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    cache = tmp_path / "_build" / ".jupyter_cache"
    (cache / "executed").mkdir(parents=True)
    (cache / "global.db").write_text("outputs")
    return tmp_path, cache


def test_same_sources_keep_the_cache_changed_sources_drop_it(tmp_path: Path) -> None:
    root, cache = _project(tmp_path)
    assert cache_key.sync(cache, root)  # a cache without a stored hash: filled by unknown code, dropped
    assert not cache.exists() and cache_key.stamp_path(cache).read_text().strip() == cache_key.source_hash(root)
    (cache / "executed").mkdir(parents=True)  # the build fills it again
    (cache / "global.db").write_text("outputs")
    pycache = root / "dstlib" / "__pycache__"
    pycache.mkdir()
    (pycache / "criteria.cpython-311.pyc").write_bytes(b"\0")  # byte code is not source
    assert not cache_key.sync(cache, root) and (cache / "global.db").read_text() == "outputs"
    (root / "dstlib" / "sparse" / "criteria.py").write_text("def f():\n    return 2\n")
    assert cache_key.sync(cache, root) and not cache.exists()
    assert not list(cache.parent.glob(".*.old.*"))  # nothing left aside


def test_new_file_and_requirements_change_the_hash(tmp_path: Path) -> None:
    root, _ = _project(tmp_path)
    before = cache_key.source_hash(root)
    (root / "dstlib" / "sparse" / "new.py").write_text("")
    after_file = cache_key.source_hash(root)
    (root / "requirements.txt").write_text("torch==2.14.0\n")
    assert len({before, after_file, cache_key.source_hash(root)}) == 3
    assert cache_key.source_hash(ROOT) == cache_key.source_hash(ROOT)  # the real checkout: stable
