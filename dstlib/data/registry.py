"""The dataset registry: one name per dataset, offline builders and real downloads behind one call.

Two kinds of entries:

* **generated / bundled** (``offline=True``): built on this machine from data that ships with a pip
  package (sklearn digits, mnist1d, sktime's UCR sets, eSpeak NG speech, MONAI volumes). Deterministic
  by seed and cached under :func:`data_root` keyed by the builder's parameters.
* **remote** (``offline=False``): real benchmark files with a URL and a sha256 (or md5) checksum. They are used when the
  file is already in place; otherwise :func:`fetch` downloads it only when ``download=True`` and raises
  :class:`DatasetNotAvailable` naming the URL, the hash and the destination when it cannot.

Every loader returns a :class:`torch.utils.data.TensorDataset` of ``(inputs, targets)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.atomic import atomic_write

SPLITS = ("train", "test")


class DatasetNotAvailable(FileNotFoundError):
    """A real dataset is not on disk and cannot be downloaded (offline, or ``download=False``)."""


HASH_ALGORITHMS = ("sha256", "md5")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a real dataset: where it comes from, its checksum and its file name.

    ``checksum`` is ``"<algorithm>:<hex digest>"`` with algorithm ``sha256`` or ``md5`` (some archives
    only publish an md5), or a bare sha256 hex digest.
    """

    url: str
    checksum: str
    filename: str

    def __post_init__(self) -> None:
        checks.require(self.algorithm in HASH_ALGORITHMS, "checksum", self.checksum,
                       f"'<algorithm>:<hex digest>' with algorithm one of {', '.join(HASH_ALGORITHMS)}, "
                       "or a bare sha256 hex digest")

    @property
    def algorithm(self) -> str:
        return self.checksum.partition(":")[0] if ":" in self.checksum else "sha256"

    @property
    def digest(self) -> str:
        return self.checksum.rpartition(":")[2]

    @property
    def label(self) -> str:
        """``"sha256 <hex>"`` for messages."""
        return f"{self.algorithm} {self.digest}"


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry.

    ``load(split, root, download, **options) -> TensorDataset`` builds or reads the split.
    ``input_shape`` excludes the batch dimension, e.g. ``(3, 32, 32)``; ``None`` when it depends on
    the options.
    """

    name: str
    load: Callable[..., TensorDataset]
    task: str
    num_classes: int | None
    input_shape: tuple[int, ...] | None
    offline: bool
    description: str
    files: tuple[RemoteFile, ...] = field(default=())


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (a name can be registered once)."""
    checks.require(spec.name not in _REGISTRY, "spec.name", spec.name, "a name not registered yet")
    _REGISTRY[spec.name] = spec
    return spec


# Modules whose import registers datasets (one per line).
_BUILTIN_MODULES = (
    "dstlib.data.images",
    "dstlib.data.sequences",
    "dstlib.data.timeseries",
    "dstlib.data.speech",
    "dstlib.data.volumes",
    "dstlib.data.nifti",
    "dstlib.data.cifar_c",
    "dstlib.data.tiny_imagenet",
    "dstlib.data.long_range",
    "dstlib.data.image_folder",
)


def _ensure_builtin_datasets() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """Names of every registered dataset, sorted."""
    _ensure_builtin_datasets()
    return sorted(_REGISTRY)


def spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; a ``ValueError`` lists the allowed names otherwise."""
    _ensure_builtin_datasets()
    checks.one_of("dataset", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def load(name: str, split: str = "train", *, root: str | os.PathLike | None = None, download: bool = False,
         **options: Any) -> TensorDataset:
    """Load ``split`` of dataset ``name`` as a ``TensorDataset(inputs, targets)``.

    ``root`` defaults to :func:`data_root`. ``download=True`` lets remote datasets be fetched.
    ``options`` go to the dataset's builder (for example ``size=32`` for digits).
    """
    entry = spec(name)
    checks.one_of("split", split, SPLITS)
    return entry.load(split=split, root=Path(root) if root is not None else data_root(), download=download,
                      **options)


def data_root() -> Path:
    """Where datasets and caches live: ``$DSTLIB_DATA`` if set, else the repository's ``data/``."""
    env = os.environ.get("DSTLIB_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data"


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (``sha256`` or ``md5``) of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(dataset: str, remote: RemoteFile, root: Path, download: bool) -> Path:
    """Path of ``remote`` under ``root/dataset``, downloading it with pooch only if ``download``.

    A file already in place is used only if its checksum matches. Raises :class:`DatasetNotAvailable`
    with the URL, checksum and destination when the file is missing and cannot be fetched. The download
    goes to a temporary folder under ``root`` and is renamed into ``root/dataset`` once complete and
    checked, so a refused or failed download never creates ``root/dataset`` nor leaves a partial file.
    """
    folder = Path(root) / dataset
    target = folder / remote.filename
    if target.exists():
        actual = file_hash(target, remote.algorithm)
        if actual != remote.digest:
            raise DatasetNotAvailable(
                f"{target} exists but its {remote.algorithm} is {actual}, expected {remote.digest}. "
                f"Delete it and download {remote.url} again.")
        return target
    how = (f"Download {remote.url} ({remote.label}) and place it at {target}, "
           f"or set DSTLIB_DATA to a folder holding {dataset}/{remote.filename}.")
    if not download:
        raise DatasetNotAvailable(f"dataset {dataset!r} is not on disk and download=False. {how}")
    import pooch

    Path(root).mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".download.{dataset}.", dir=root))
    try:
        try:
            fetched = pooch.retrieve(remote.url, known_hash=f"{remote.algorithm}:{remote.digest}",
                                     fname=remote.filename, path=scratch, progressbar=False)
        except Exception as error:  # network errors come in many types; all mean the same to the reader
            raise DatasetNotAvailable(f"dataset {dataset!r} could not be downloaded ({error}). {how}") from error
        folder.mkdir(exist_ok=True)
        os.replace(fetched, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def cached(dataset: str, params: dict[str, Any], build: Callable[[], dict[str, torch.Tensor]],
           root: Path) -> dict[str, torch.Tensor]:
    """Return ``build()``'s tensors, cached under ``root/cache`` keyed by ``dataset`` and ``params``.

    The cache file is written atomically, so an interrupted build never leaves a corrupt cache.
    """
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(root) / "cache" / f"{dataset}-{key}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    tensors = build()
    atomic_write(path, lambda tmp: torch.save(tensors, tmp))
    return tensors
