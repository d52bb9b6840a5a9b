"""3D volumes: MONAI spheres with class-consistent intensities; the MSD spleen archive from disk."""

import gzip
import hashlib
import io
import sys
import tarfile

import numpy as np
import pytest
import torch

import dstlib.data as data
from dstlib.data import volumes
from dstlib.data.registry import RemoteFile


def test_shapes_dtypes_and_classes(tmp_path):
    options = {"size": 16, "num_volumes": 3, "num_classes": 4}
    x, y = data.load("synthetic_volumes", "train", root=tmp_path, **options).tensors
    assert x.shape == (3, 1, 16, 16, 16) and x.dtype == torch.float32
    assert y.shape == (3, 16, 16, 16) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) <= 3 and (y > 0).any()


def test_a_class_has_the_same_intensity_in_every_volume(tmp_path):
    x, y = data.load("synthetic_volumes", "train", root=tmp_path, num_volumes=6, num_classes=4, noise=0.1,
                     seed=2).tensors
    for volume in range(6):
        for label in y[volume].unique().tolist():
            mean = float(x[volume, 0][y[volume] == label].mean())
            assert abs(mean - label / 3) < 0.05, (volume, label, mean)


def test_deterministic_by_seed_prefix_stable_and_splits_differ(tmp_path):
    def volumes_of(split="train", **options):
        return data.load("synthetic_volumes", split, root=tmp_path, size=16, **options).tensors

    first, again = volumes_of(num_volumes=4, seed=1), volumes_of(num_volumes=4, seed=1)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(volumes_of(num_volumes=2, seed=1)[1], first[1][:2])
    assert not torch.equal(volumes_of(num_volumes=4, seed=2)[1], first[1])
    assert not torch.equal(volumes_of("test", num_volumes=4, seed=1)[1], first[1])


@pytest.mark.parametrize(("option", "value"), [("size", 8), ("size", 16.0), ("num_volumes", 0),
                                               ("num_classes", 1), ("noise", -0.1), ("seed", -1)])
def test_bad_options_name_the_parameter(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        data.load("synthetic_volumes", "train", root=tmp_path, **{option: value})


def test_missing_spleen_archive_names_url_md5_and_destination(tmp_path):
    with pytest.raises(data.DatasetNotAvailable) as raised:
        data.load("msd_task09_spleen", "train", root=tmp_path)
    message = str(raised.value)
    assert volumes.SPLEEN_FILE.url in message and volumes.SPLEEN_FILE.digest in message and "md5" in message
    assert str(tmp_path / "msd_task09_spleen" / "Task09_Spleen.tar") in message


def test_spleen_without_nibabel_says_so(tmp_path, monkeypatch):
    archive = tmp_path / "msd_task09_spleen" / "Task09_Spleen.tar"
    archive.parent.mkdir()
    archive.write_bytes(b"placeholder")
    checksum = "md5:" + hashlib.md5(b"placeholder", usedforsecurity=False).hexdigest()
    monkeypatch.setattr(volumes, "SPLEEN_FILE", RemoteFile(volumes.SPLEEN_FILE.url, checksum, archive.name))
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    with pytest.raises(ModuleNotFoundError, match="nibabel"):
        data.load("msd_task09_spleen", "train", root=tmp_path)


def test_spleen_archive_reader_on_a_tiny_fixture(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    archive = tmp_path / "Task09_Spleen.tar"
    generator = np.random.default_rng(0)
    with tarfile.open(archive, "w") as tar:
        def add(name, array):
            payload = gzip.compress(nibabel.Nifti1Image(array, np.eye(4)).to_bytes())
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        for case in range(11):
            label = np.zeros((8, 8, 4), dtype=np.uint8)
            label[2:6, 2:6, 1:3] = 1
            image = np.where(label == 1, 150.0, -1000.0) + generator.normal(0, 1, label.shape)
            add(f"Task09_Spleen/imagesTr/spleen_{case:02d}.nii.gz", image.astype(np.float32))
            add(f"Task09_Spleen/labelsTr/spleen_{case:02d}.nii.gz", label)
        add("Task09_Spleen/imagesTr/._spleen_00.nii.gz", np.zeros((2, 2, 2), dtype=np.float32))
    tensors = volumes.read_spleen_archive(archive, size=16)
    assert tensors["train_x"].shape == (2, 1, 16, 16, 16) and tensors["test_y"].shape == (9, 16, 16, 16)
    x, y = tensors["train_x"][0, 0], tensors["train_y"][0]
    assert set(y.unique().tolist()) == {0, 1}
    # 150 HU -> (150 + 57) / 221 = 0.94 and -1000 HU -> 0 in the [-57, 164] window (edges blur when resized)
    assert 0.9 < float(x[y == 1].max()) < 0.97 and float(x[y == 0].min()) == 0.0
    assert float(x[y == 1].mean()) > float(x[y == 0].mean()) + 0.3
