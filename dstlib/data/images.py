"""Image datasets: sklearn digits (offline, real handwriting) and CIFAR-10/100 (real, downloaded).

All image tensors are float32 in ``[0, 1]`` with shape ``(N, C, H, W)``; targets are int64 ``(N,)``.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetSpec, RemoteFile, cached, fetch, register

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


def _read_cifar_archive(archive: Path, members: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read pickled CIFAR batches ``members`` out of the python-version tarball, in order."""
    images, labels = [], []
    with tarfile.open(archive, "r:gz") as tar:
        by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for member in members:
            handle = tar.extractfile(by_name[member])
            batch = pickle.load(handle, encoding="latin1")  # noqa: S301 - sha256-verified archive
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(images)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(labels))


def load_cifar10(split: str, root: Path, download: bool = False) -> TensorDataset:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB, 10 classes) from the official python tarball."""
    archive = fetch("cifar10", CIFAR10_FILE, root, download)
    members = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return TensorDataset(*_read_cifar_archive(archive, members, "labels"))


def load_cifar100(split: str, root: Path, download: bool = False) -> TensorDataset:
    """CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB, 100 fine classes) from the official tarball."""
    archive = fetch("cifar100", CIFAR100_FILE, root, download)
    return TensorDataset(*_read_cifar_archive(archive, [split], "fine_labels"))


register(DatasetSpec("digits", load_digits, "classification", 10, None, True,
                     "sklearn handwritten digits, 1,437 train / 360 test, resized to 8, 16 or 32 px"))
register(DatasetSpec("cifar10", load_cifar10, "classification", 10, (3, 32, 32), False,
                     "CIFAR-10, 50,000 / 10,000 colour images", (CIFAR10_FILE,)))
register(DatasetSpec("cifar100", load_cifar100, "classification", 100, (3, 32, 32), False,
                     "CIFAR-100, 50,000 / 10,000 colour images, 100 classes", (CIFAR100_FILE,)))
