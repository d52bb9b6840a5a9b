"""CIFAR-10-C and CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): the real corrupted test sets.

Each archive holds a folder (``CIFAR-10-C/`` or ``CIFAR-100-C/``) with one ``<corruption>.npy`` per
corruption, uint8 ``(50000, 32, 32, 3)``: the 10,000 test images at severity 1, then at severity 2, ... 5;
and ``labels.npy`` ``(50000,)``, the labels repeated for each severity. Besides the 15 common corruptions
of :data:`dstlib.data.corruptions.CORRUPTIONS` the archives hold the 4 "extra" ones
(:data:`EXTRA_CORRUPTIONS`).

Where the loaders look, under ``root`` (default :func:`dstlib.data.data_root`):

1. ``root/cifar10c/CIFAR-10-C/<corruption>.npy`` and ``labels.npy`` (``cifar100c`` / ``CIFAR-100-C`` for
   CIFAR-100-C): an extracted folder, for instance one downloaded and unpacked by hand.
2. ``root/cifar10c/CIFAR-10-C.tar``: the archive, checked and then unpacked once into the folder above.
   With ``download=True`` CIFAR-10-C's archive (2.9 GB) is downloaded first.

Checksums: CIFAR-10-C's sha256 is the one recorded by TensorFlow Datasets (``url_checksums/
cifar10_corrupted.txt``; 2,918,471,680 bytes). For CIFAR-100-C only Zenodo's md5 is published
(``11f0ed0f1191edbf9fa23466ae6021d3``, 2,918,473,216 bytes), which the registry's ``fetch`` checks the
same way (a placed or downloaded archive must match it).
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.atomic import atomic_write
from dstlib.data.corruptions import CORRUPTIONS, SEVERITIES
from dstlib.data.registry import DatasetNotAvailable, DatasetSpec, RemoteFile, fetch, register

EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
FILE_CORRUPTIONS = CORRUPTIONS + EXTRA_CORRUPTIONS

CIFAR10C_FILE = RemoteFile("https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
                           "c72763e101c723b7c507b96205f7e938912a5d587376173b825850cf3cb876a7",
                           "CIFAR-10-C.tar")


@dataclass(frozen=True)
class CorruptedSet:
    """Where one -C set comes from: registry name, folder inside the archive, and the archive itself."""

    dataset: str
    folder: str
    remote: RemoteFile


CIFAR10C = CorruptedSet("cifar10c", "CIFAR-10-C", CIFAR10C_FILE)
CIFAR100C = CorruptedSet("cifar100c", "CIFAR-100-C",
                         RemoteFile("https://zenodo.org/records/3555552/files/CIFAR-100-C.tar",
                                    "md5:11f0ed0f1191edbf9fa23466ae6021d3", "CIFAR-100-C.tar"))


def _check_options(split: str, corruption: str | None, severity: int | None) -> None:
    checks.require(split == "test", "split", split, "'test' only (the -C sets are test sets)")
    checks.one_of("corruption", corruption, FILE_CORRUPTIONS)
    checks.one_of("severity", severity, SEVERITIES)


def _archive(source: CorruptedSet, root: Path, download: bool) -> Path:
    """The checked archive of ``source`` under ``root/<dataset>/``; :class:`DatasetNotAvailable` otherwise."""
    return fetch(source.dataset, source.remote, root, download)


def _extract(archive: Path, folder: Path) -> None:
    """Unpack every ``.npy`` of ``archive`` into ``folder`` (flat), each file written atomically."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".npy")):
                continue
            source = tar.extractfile(member)
            target = folder / Path(member.name).name  # flat: no path from the archive is trusted

            def write(tmp: Path, source=source) -> None:
                with open(tmp, "wb") as out:
                    for chunk in iter(lambda: source.read(1 << 20), b""):
                        out.write(chunk)

            atomic_write(target, write)


def _read(folder: Path, corruption: str, severity: int) -> TensorDataset:
    images = np.load(folder / f"{corruption}.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or len(images) % len(SEVERITIES) \
            or len(labels) != len(images):
        raise ValueError(f"{folder / (corruption + '.npy')} has shape {images.shape} and {len(labels)} "
                         f"labels; expected (5 * n, 32, 32, 3) and 5 * n labels")
    per_severity = len(images) // len(SEVERITIES)
    rows = slice((severity - 1) * per_severity, severity * per_severity)
    x = torch.from_numpy(np.array(images[rows])).permute(0, 3, 1, 2).float() / 255.0  # copied from the mmap
    return TensorDataset(x.contiguous(), torch.from_numpy(np.array(labels[rows], dtype=np.int64)))


def load_corrupted(source: CorruptedSet, split: str, root: Path, download: bool = False,
                   corruption: str | None = None, severity: int | None = None) -> TensorDataset:
    """``split="test"`` of ``source`` under ``corruption`` at ``severity`` (1..5).

    Reads ``root/<dataset>/<folder>/`` if it holds ``<corruption>.npy`` and ``labels.npy``; otherwise
    unpacks the checked archive ``root/<dataset>/<filename>`` there first (downloading it if ``download``).
    Returns ``x: (n, 3, 32, 32)`` float in [0, 1] and ``y: (n,)`` int64, where
    ``n`` is a fifth of the file's rows (10,000 for the real sets).
    """
    _check_options(split, corruption, severity)
    folder = Path(root) / source.dataset / source.folder
    needed = [folder / f"{corruption}.npy", folder / "labels.npy"]
    if not all(path.exists() for path in needed):
        try:
            archive = _archive(source, Path(root), download)
        except DatasetNotAvailable as error:
            raise DatasetNotAvailable(f"{error} Or put the unpacked folder at {folder} (this needs "
                                      f"{needed[0].name} and {needed[1].name} there).") from error
        _extract(archive, folder)
        missing = [path.name for path in needed if not path.exists()]
        if missing:
            raise DatasetNotAvailable(f"dataset {source.dataset!r}: {archive} holds no {', '.join(missing)}")
    return _read(folder, corruption, severity)


def load_cifar10c(split: str, root: Path, download: bool = False, corruption: str | None = None,
                  severity: int | None = None) -> TensorDataset:
    """CIFAR-10-C: the 10,000 CIFAR-10 test images under ``corruption`` at ``severity`` (1..5).

    ``x: (10000, 3, 32, 32)`` in [0, 1], ``y: (10000,)``. ``download=True`` fetches the 2.9 GB archive.
    """
    return load_corrupted(CIFAR10C, split, root, download, corruption, severity)


def load_cifar100c(split: str, root: Path, download: bool = False, corruption: str | None = None,
                   severity: int | None = None) -> TensorDataset:
    """CIFAR-100-C: the 10,000 CIFAR-100 test images (fine labels) under ``corruption`` at ``severity``.

    ``x: (10000, 3, 32, 32)`` in [0, 1], ``y: (10000,)``. ``download=True`` fetches the 2.9 GB archive
    (md5-checked: Zenodo publishes no sha256).
    """
    return load_corrupted(CIFAR100C, split, root, download, corruption, severity)


register(DatasetSpec("cifar10c", load_cifar10c, "classification", 10, (3, 32, 32), False,
                     "CIFAR-10-C: the CIFAR-10 test set under 19 corruptions x 5 severities "
                     "(options corruption=..., severity=...)", (CIFAR10C_FILE,)))
register(DatasetSpec("cifar100c", load_cifar100c, "classification", 100, (3, 32, 32), False,
                     "CIFAR-100-C: the CIFAR-100 test set under 19 corruptions x 5 severities "
                     "(options corruption=..., severity=...)", (CIFAR100C.remote,)))
