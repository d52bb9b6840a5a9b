"""Image datasets: sklearn digits (offline, real handwriting) and CIFAR-10/100 (real: the extracted
pickles or the downloaded tarball).

All image tensors are float32 in ``[0, 1]`` with shape ``(N, C, H, W)``; targets are int64 ``(N,)``.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetNotAvailable, DatasetSpec, RemoteFile, cached, fetch, register

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits(split: str, root: Path, download: bool = False, size: int = 16,
                channels: int = 1) -> TensorDataset:
    """The 1,797 sklearn handwritten digits (8x8, 17 grey levels), resized to ``size`` x ``size``.

    ``size`` in {8, 16, 32}: bilinear upsampling (32 is the CIFAR resolution the corruption suite
    expects). ``channels`` in {1, 3}: 3 repeats the grey channel to mimic RGB input. The split is a
    fixed stratified 80/20 split, the same on every machine. Returns ``x: (N, channels, size, size)``
    in [0, 1] and ``y: (N,)`` in 0..9.
    """
    del download  # bundled with scikit-learn
    checks.one_of("size", size, (8, 16, 32))
    checks.one_of("channels", channels, (1, 3))

    def build() -> dict[str, torch.Tensor]:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split

        bunch = sklearn_digits()
        images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp(0.0, 1.0)
        targets = torch.tensor(bunch.target, dtype=torch.int64)
        train_idx, test_idx = train_test_split(np.arange(len(targets)), test_size=DIGITS_TEST_FRACTION,
                                               stratify=bunch.target, random_state=DIGITS_SPLIT_SEED)
        return {"train_x": images[train_idx], "train_y": targets[train_idx],
                "test_x": images[test_idx], "test_y": targets[test_idx]}

    tensors = cached("digits", {"size": size, "version": 1}, build, root)
    x = tensors[f"{split}_x"]
    return TensorDataset(x.repeat(1, channels, 1, 1) if channels > 1 else x, tensors[f"{split}_y"])


CIFAR10_FILE = RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                          "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                          "cifar-10-python.tar.gz")
CIFAR100_FILE = RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                           "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                           "cifar-100-python.tar.gz")


# Training samples of CIFAR-10 and CIFAR-100 (each holds 50,000 training and 10,000 test images).
CIFAR_TRAIN_SAMPLES = 50_000


@dataclass(frozen=True)
class CifarLayout:
    """One CIFAR dataset on disk: its checked archive and the folder the archive unpacks to, which holds
    one pickled batch per member name (``data`` uint8 ``(n, 3072)`` and the labels under ``label_key``)."""

    dataset: str
    remote: RemoteFile
    folder: str
    members: dict[str, tuple[str, ...]]
    label_key: str


CIFAR10 = CifarLayout("cifar10", CIFAR10_FILE, "cifar-10-batches-py",
                      {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}, "labels")
CIFAR100 = CifarLayout("cifar100", CIFAR100_FILE, "cifar-100-python", {"train": ("train",), "test": ("test",)},
                       "fine_labels")


def _batch_arrays(batch: dict, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
            np.asarray(batch[label_key], dtype=np.int64))


def _read_cifar_folder(folder: Path, members: tuple[str, ...], label_key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pickled batches ``members`` of an extracted folder, in order; a missing one is named."""
    batches = []
    for member in members:
        path = folder / member
        if not path.is_file():
            raise DatasetNotAvailable(f"{path} is missing: the extracted folder {folder} needs "
                                      f"{', '.join(members)} (the layout the official tarball unpacks to)")
        with open(path, "rb") as handle:
            batches.append(_batch_arrays(pickle.load(handle, encoding="latin1"), label_key))  # noqa: S301 - the official batches
    return batches


def _read_cifar_archive(archive: Path, members: tuple[str, ...], label_key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pickled batches ``members`` out of the python-version tarball, in order."""
    with tarfile.open(archive, "r:gz") as tar:
        by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        return [_batch_arrays(pickle.load(tar.extractfile(by_name[member]), encoding="latin1"), label_key)  # noqa: S301 - sha256-verified archive
                for member in members]


def load_cifar(layout: CifarLayout, split: str, root: Path, download: bool) -> TensorDataset:
    """``split`` of ``layout`` under ``root/<dataset>/``: from the extracted folder
    ``<folder>/<member>`` pickles when that folder exists (what torchvision users have on disk), else from
    the sha256-checked tarball ``<filename>`` (downloaded first if ``download``)."""
    checks.one_of("split", split, tuple(layout.members))
    folder = Path(root) / layout.dataset / layout.folder
    members = layout.members[split]
    if folder.is_dir():
        batches = _read_cifar_folder(folder, members, layout.label_key)
    else:
        try:
            archive = fetch(layout.dataset, layout.remote, root, download)
        except DatasetNotAvailable as error:
            raise DatasetNotAvailable(f"{error} Or put the extracted folder at {folder} (for split "
                                      f"{split!r} it needs {', '.join(members)}).") from error
        batches = _read_cifar_archive(archive, members, layout.label_key)
    x = torch.from_numpy(np.concatenate([images for images, _ in batches])).float() / 255.0
    return TensorDataset(x, torch.from_numpy(np.concatenate([labels for _, labels in batches])))


def load_cifar10(split: str, root: Path, download: bool = False) -> TensorDataset:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB, 10 classes): the extracted
    ``root/cifar10/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) or the
    official python tarball ``root/cifar10/cifar-10-python.tar.gz`` (:func:`load_cifar`)."""
    return load_cifar(CIFAR10, split, root, download)


def load_cifar100(split: str, root: Path, download: bool = False) -> TensorDataset:
    """CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB, 100 fine classes): the extracted
    ``root/cifar100/cifar-100-python/`` (``train``, ``test``) or the official tarball
    ``root/cifar100/cifar-100-python.tar.gz`` (:func:`load_cifar`)."""
    return load_cifar(CIFAR100, split, root, download)


register(DatasetSpec("digits", load_digits, "classification", 10, None, True,
                     "sklearn handwritten digits, 1,437 train / 360 test, resized to 8, 16 or 32 px"))
register(DatasetSpec("cifar10", load_cifar10, "classification", 10, (3, 32, 32), False,
                     "CIFAR-10, 50,000 / 10,000 colour images", (CIFAR10_FILE,)))
register(DatasetSpec("cifar100", load_cifar100, "classification", 100, (3, 32, 32), False,
                     "CIFAR-100, 50,000 / 10,000 colour images, 100 classes", (CIFAR100_FILE,)))
