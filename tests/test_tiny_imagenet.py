"""Tests of the Tiny ImageNet-200 loader on a tiny fixture in the real layout (written to tmp_path)."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dstlib.data import DatasetNotAvailable, load, names, spec, tiny_imagenet
from dstlib.data.registry import RemoteFile

WNIDS = ("n09999999", "n01443537", "n02124075")  # wnids.txt is not sorted; the labels follow sorted order
SORTED = sorted(WNIDS)
TRAIN_PER_CLASS = 4
VAL = (("val_0.JPEG", "n02124075"), ("val_1.JPEG", "n09999999"), ("val_2.JPEG", "n01443537"),
       ("val_3.JPEG", "n09999999"), ("val_4.JPEG", "n02124075"))
GREY = "val/images/val_3.JPEG"


def _value(index: int) -> int:
    """Grey level of fixture image ``index``: far apart, so JPEG rounding keeps them distinguishable."""
    return 20 + 12 * index


def _jpeg(value: int, grey: bool = False) -> bytes:
    """A flat 64x64 JPEG of ``value`` (a greyscale ``L`` image if ``grey``, else RGB)."""
    image = Image.new("L", (64, 64), value) if grey else Image.new("RGB", (64, 64), (value, value, value))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _files() -> dict[str, bytes]:
    """The fixture: paths relative to ``tiny-imagenet-200/`` and their bytes.

    Train image ``k`` of the ``c``-th sorted wnid has grey level ``_value(TRAIN_PER_CLASS * c + k)``;
    val image ``k`` has ``_value(12 + k)``.
    """
    files = {"wnids.txt": "".join(f"{w}\n" for w in WNIDS).encode(),
             "words.txt": "".join(f"{w}\tsomething\n" for w in WNIDS).encode()}
    for c, wnid in enumerate(SORTED):
        files[f"train/{wnid}/{wnid}_boxes.txt"] = b""
        for k in range(TRAIN_PER_CLASS):
            files[f"train/{wnid}/images/{wnid}_{k}.JPEG"] = _jpeg(_value(TRAIN_PER_CLASS * c + k))
    files["val/val_annotations.txt"] = "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in VAL).encode()
    for k, (name, _) in enumerate(VAL):
        files[f"val/images/{name}"] = _jpeg(_value(12 + k), grey=f"val/images/{name}" == GREY)
    files["test/images/test_0.JPEG"] = _jpeg(200)
    return files


def _write_folder(root: Path) -> Path:
    folder = root / "tinyimagenet" / "tiny-imagenet-200"
    for name, data in _files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def _write_zip(root: Path) -> str:
    """The fixture as ``root/tinyimagenet/tiny-imagenet-200.zip`` (with directory entries, like the real one);
    returns its md5."""
    path = root / "tinyimagenet" / "tiny-imagenet-200.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("tiny-imagenet-200/", b"")
        for name, data in _files().items():
            zipped.writestr(f"tiny-imagenet-200/{name}", data)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _check(train, test) -> None:
    x, y = train.tensors
    assert x.shape == (3 * TRAIN_PER_CLASS, 3, 64, 64) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [c for c in range(3) for _ in range(TRAIN_PER_CLASS)]
    expected = torch.tensor([_value(i) for i in range(3 * TRAIN_PER_CLASS)], dtype=torch.float32) / 255
    assert torch.allclose(x.mean(dim=(1, 2, 3)), expected, atol=2 / 255)

    x, y = test.tensors
    assert x.shape == (len(VAL), 3, 64, 64) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [SORTED.index(wnid) for _, wnid in VAL]
    expected = torch.tensor([_value(12 + k) for k in range(len(VAL))], dtype=torch.float32) / 255
    assert torch.allclose(x.mean(dim=(1, 2, 3)), expected, atol=2 / 255)
    grey = x[3]  # the greyscale JPEG comes back as three equal channels
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    for data in (train, test):
        assert data.tensors[0].min() >= 0 and data.tensors[0].max() <= 1


def test_registered_with_the_official_archive():
    assert "tinyimagenet" in names()
    entry = spec("tinyimagenet")
    assert entry.num_classes == 200 and entry.input_shape == (3, 64, 64) and not entry.offline
    remote = tiny_imagenet.TINYIMAGENET_FILE
    assert entry.files == (remote,) and remote.url == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    assert remote.checksum == "md5:90528d7ca1a48142e341f4ef8d21d0de" and remote.filename == "tiny-imagenet-200.zip"


def test_extracted_folder_is_read_and_cached(tmp_path):
    folder = _write_folder(tmp_path)
    train, test = load("tinyimagenet", "train", root=tmp_path), load("tinyimagenet", "test", root=tmp_path)
    _check(train, test)
    cache = sorted((tmp_path / "cache").glob("tinyimagenet-*.pt"))
    assert len(cache) == 2
    assert all(torch.load(path, weights_only=True)["x"].dtype == torch.uint8 for path in cache)
    shutil.rmtree(folder)  # the cache is enough from now on
    again = load("tinyimagenet", "train", root=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(train.tensors, again.tensors, strict=True))


def test_zip_is_checked_and_read(tmp_path, monkeypatch):
    digest = _write_zip(tmp_path)
    fixture = RemoteFile(tiny_imagenet.TINYIMAGENET_FILE.url, f"md5:{digest}", "tiny-imagenet-200.zip")
    monkeypatch.setattr(tiny_imagenet, "TINYIMAGENET_FILE", fixture)
    _check(load("tinyimagenet", "train", root=tmp_path), load("tinyimagenet", "test", root=tmp_path))
    assert not (tmp_path / "tinyimagenet" / "tiny-imagenet-200").exists()  # read in place, not extracted


def test_zip_with_wrong_md5_is_refused(tmp_path):
    _write_zip(tmp_path)  # not the real archive, so the official md5 does not match
    with pytest.raises(DatasetNotAvailable, match="md5"):
        load("tinyimagenet", "test", root=tmp_path)


def test_offline_error_names_url_and_destination(tmp_path):
    with pytest.raises(DatasetNotAvailable) as error:
        load("tinyimagenet", "train", root=tmp_path, download=False)
    message = str(error.value)
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in message and "90528d7c" in message
    assert str(tmp_path / "tinyimagenet" / "tiny-imagenet-200.zip") in message  # where to put the archive
    assert str(tmp_path / "tinyimagenet" / "tiny-imagenet-200") + " " in message  # or the extracted folder
    assert not (tmp_path / "cache").exists()


def test_unknown_wnid_in_annotations(tmp_path):
    folder = _write_folder(tmp_path)
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn00000000\t0\t0\t63\t63\n")
    with pytest.raises(ValueError, match="n00000000"):
        load("tinyimagenet", "test", root=tmp_path)


def test_image_of_the_wrong_size(tmp_path):
    folder = _write_folder(tmp_path)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, format="JPEG")
    (folder / "val" / "images" / "val_2.JPEG").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="val_2.JPEG is 32x32"):
        load("tinyimagenet", "test", root=tmp_path)
