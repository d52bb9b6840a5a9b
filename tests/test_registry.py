"""The dataset registry: offline datasets load and cache; real ones fail offline with a useful message."""

from pathlib import Path

import pytest
import torch

from dstlib import data
from dstlib.data import registry


def test_digits_shapes_range_and_split(tmp_path):
    train = data.load("digits", "train", root=tmp_path, size=32, channels=3)
    test = data.load("digits", "test", root=tmp_path, size=32, channels=3)
    assert train.tensors[0].shape == (1437, 3, 32, 32) and test.tensors[0].shape == (360, 3, 32, 32)
    assert train.tensors[0].min() >= 0 and train.tensors[0].max() <= 1
    assert set(test.tensors[1].tolist()) == set(range(10))
    assert list((tmp_path / "cache").glob("digits-*.pt"))  # cached under the data root


def test_cache_is_reused(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.ones(2)}

    first = registry.cached("demo", {"a": 1}, build, tmp_path)
    second = registry.cached("demo", {"a": 1}, build, tmp_path)
    registry.cached("demo", {"a": 2}, build, tmp_path)
    assert torch.equal(first["x"], second["x"]) and len(calls) == 2


def test_real_dataset_offline_says_what_to_download_and_where(tmp_path):
    with pytest.raises(data.DatasetNotAvailable) as error:
        data.load("cifar10", "train", root=tmp_path)
    message = str(error.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(tmp_path / "cifar10" / "cifar-10-python.tar.gz") in message
    assert "6d958be0" in message


def test_wrong_hash_is_refused(tmp_path):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(data.DatasetNotAvailable, match="sha256"):
        data.load("cifar10", "test", root=tmp_path)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"name": "mnist9"}, "dataset='mnist9'"),
    ({"name": "digits", "split": "val"}, "split='val'"),
    ({"name": "digits", "size": 12}, "size=12"),
])
def test_bad_arguments(kwargs, fragment, tmp_path):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=fragment):
        data.load(name, root=tmp_path, **kwargs)


def test_refused_or_failed_download_creates_no_dataset_folder(tmp_path, monkeypatch):
    import pooch

    def failing_retrieve(url, known_hash, fname, path, progressbar):  # offline: the folder, a partial file, then
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / (fname + ".part")).write_bytes(b"half")
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", failing_retrieve)
    with pytest.raises(data.DatasetNotAvailable, match="could not be downloaded"):
        data.load("cifar10", "train", root=tmp_path, download=True)
    with pytest.raises(data.DatasetNotAvailable, match="download=False"):
        data.load("cifar10", "train", root=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []  # no cifar10/, no partial file, no temporary folder


def test_download_lands_complete_in_the_dataset_folder(tmp_path, monkeypatch):
    import hashlib

    import pooch

    content = b"the archive"
    remote = registry.RemoteFile("https://example.org/a.tar.gz", hashlib.sha256(content).hexdigest(), "a.tar.gz")
    seen = []

    def retrieve(url, known_hash, fname, path, progressbar):
        seen.append(Path(path))
        (Path(path) / fname).write_bytes(content)
        return str(Path(path) / fname)

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    target = registry.fetch("demo", remote, tmp_path, download=True)
    assert target == tmp_path / "demo" / "a.tar.gz" and target.read_bytes() == content
    assert seen[0].parent == tmp_path and seen[0] != tmp_path / "demo"  # downloaded beside, then renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
