"""Tests of the CIFAR-10-C / CIFAR-100-C loaders on tiny fixtures in the real layout (written to tmp_path)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dstlib.data import DatasetNotAvailable, load, names, spec
from dstlib.data.cifar_c import CIFAR10C, CIFAR10C_FILE, CIFAR100C, CorruptedSet, load_corrupted
from dstlib.data.registry import RemoteFile

PER_SEVERITY = 4
FIXTURE_CORRUPTIONS = ("fog", "gaussian_noise")


def _arrays() -> dict[str, np.ndarray]:
    """2 corruptions x 5 severities x 4 images, uint8 ``(20, 32, 32, 3)``; pixel = 40 * corruption index
    + 10 * (severity - 1) + image; labels ``(20,)`` = 7 * image mod 10, repeated per severity."""
    arrays = {}
    for c, corruption in enumerate(FIXTURE_CORRUPTIONS):
        values = np.array([40 * c + 10 * s + i for s in range(5) for i in range(PER_SEVERITY)], np.uint8)
        arrays[f"{corruption}.npy"] = np.broadcast_to(values[:, None, None, None], (20, 32, 32, 3)).copy()
    arrays["labels.npy"] = np.tile((7 * np.arange(PER_SEVERITY)) % 10, 5).astype(np.uint8)
    return arrays


def _write_folder(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, array in _arrays().items():
        np.save(folder / name, array)


def _write_tar(path: Path, folder_name: str) -> str:
    """The fixture as ``path`` (a tar holding ``folder_name/*.npy``, like the real archive); its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, array in _arrays().items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check(data, corruption_index: int, severity: int) -> None:
    x, y = data.tensors
    assert x.shape == (PER_SEVERITY, 3, 32, 32) and x.dtype == torch.float32
    expected = (40 * corruption_index + 10 * (severity - 1) + torch.arange(PER_SEVERITY)).float() / 255
    assert torch.allclose(x, expected[:, None, None, None].expand_as(x))
    assert y.dtype == torch.int64 and y.tolist() == [(7 * i) % 10 for i in range(PER_SEVERITY)]


def test_registered_with_real_sources():
    assert {"cifar10c", "cifar100c"} <= set(names())
    entry = spec("cifar10c")
    assert entry.num_classes == 10 and entry.input_shape == (3, 32, 32) and not entry.offline
    assert entry.files == (CIFAR10C_FILE,) and CIFAR10C_FILE.algorithm == "sha256" and len(CIFAR10C_FILE.digest) == 64
    assert CIFAR10C_FILE.url == "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar"
    assert spec("cifar100c").num_classes == 100
    assert CIFAR100C.remote.url == "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar"
    assert CIFAR100C.remote.algorithm == "md5" and len(CIFAR100C.remote.digest) == 32


@pytest.mark.parametrize("dataset, folder", [("cifar10c", "CIFAR-10-C"), ("cifar100c", "CIFAR-100-C")])
def test_extracted_folder_is_read(tmp_path, dataset, folder):
    _write_folder(tmp_path / dataset / folder)
    for c, corruption in enumerate(FIXTURE_CORRUPTIONS):
        for severity in (1, 3, 5):
            data = load(dataset, "test", root=tmp_path, corruption=corruption, severity=severity)
            _check(data, c, severity)


@pytest.mark.parametrize("dataset", ["cifar10c", "cifar100c"])
def test_offline_error_names_url_and_destination(tmp_path, dataset):
    source = CIFAR10C if dataset == "cifar10c" else CIFAR100C
    with pytest.raises(DatasetNotAvailable) as error:
        load(dataset, "test", root=tmp_path, corruption="fog", severity=2)
    message = str(error.value)
    assert source.remote.url in message
    assert str(tmp_path / dataset / source.remote.filename) in message  # where to put the archive
    assert str(tmp_path / dataset / source.folder) in message  # or the unpacked folder


def test_archive_with_sha256_is_checked_and_unpacked_once(tmp_path):
    archive = tmp_path / "tiny" / "TINY-C.tar"
    digest = _write_tar(archive, "TINY-C")
    source = CorruptedSet("tiny", "TINY-C", RemoteFile("https://example.org/TINY-C.tar", digest, "TINY-C.tar"))
    _check(load_corrupted(source, "test", tmp_path, corruption="gaussian_noise", severity=4), 1, 4)
    assert sorted(p.name for p in (tmp_path / "tiny" / "TINY-C").iterdir()) == sorted(_arrays())
    archive.unlink()  # the unpacked folder is enough from now on
    _check(load_corrupted(source, "test", tmp_path, corruption="fog", severity=2), 0, 2)


def test_archive_with_wrong_checksum_is_refused(tmp_path):
    archive = tmp_path / "tiny" / "TINY-C.tar"
    _write_tar(archive, "TINY-C")
    by_sha = CorruptedSet("tiny", "TINY-C", RemoteFile("https://example.org/TINY-C.tar", "0" * 64, "TINY-C.tar"))
    with pytest.raises(DatasetNotAvailable, match="sha256"):
        load_corrupted(by_sha, "test", tmp_path, corruption="fog", severity=1)
    by_md5 = CorruptedSet("tiny", "TINY-C", RemoteFile("https://example.org/TINY-C.tar", "md5:" + "0" * 32,
                                                       "TINY-C.tar"))
    with pytest.raises(DatasetNotAvailable, match="md5"):
        load_corrupted(by_md5, "test", tmp_path, corruption="fog", severity=1)
    right_md5 = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    by_md5 = CorruptedSet("tiny", "TINY-C", RemoteFile("https://example.org/TINY-C.tar", "md5:" + right_md5,
                                                       "TINY-C.tar"))
    _check(load_corrupted(by_md5, "test", tmp_path, corruption="fog", severity=5), 0, 5)


def test_corruption_missing_from_the_files(tmp_path):
    _write_folder(tmp_path / "cifar10c" / "CIFAR-10-C")
    with pytest.raises(DatasetNotAvailable, match="contrast"):
        load("cifar10c", "test", root=tmp_path, corruption="contrast", severity=1)


@pytest.mark.parametrize("options, parameter", [
    ({"split": "train"}, "split="), ({"corruption": None}, "corruption="),
    ({"corruption": "rain"}, "corruption="),
    ({"severity": 0}, "severity="), ({"severity": None}, "severity="), ({"severity": True}, "severity="),
])
def test_bad_options(tmp_path, options, parameter):
    arguments = {"split": "test", "corruption": "fog", "severity": 1} | options
    split = arguments.pop("split")
    with pytest.raises(ValueError, match="allowed") as error:
        load_corrupted(CIFAR10C, split, tmp_path, **arguments)
    assert parameter in str(error.value)
