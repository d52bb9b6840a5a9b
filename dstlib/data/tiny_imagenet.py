"""Tiny ImageNet-200 (the Stanford CS231n subset of ImageNet): 200 classes, 64x64 RGB JPEGs.

The official archive ``tiny-imagenet-200.zip`` holds one folder ``tiny-imagenet-200/`` with ``wnids.txt``
(the 200 WordNet ids), ``train/<wnid>/images/<wnid>_<k>.JPEG`` (500 per class), ``val/images/val_<k>.JPEG``
with their labels in ``val/val_annotations.txt`` (tab-separated: file, wnid, 4 box coordinates) and an
unlabelled ``test/`` (not used). Split ``"train"`` is the 100,000 training images and ``"test"`` the 10,000
official validation images, the usual test set in papers. Class ``c`` is the ``c``-th wnid of ``wnids.txt``
in sorted order, the order of an ``ImageFolder`` over ``train/``.

Where the loader looks, under ``root`` (default :func:`dstlib.data.data_root`):

1. ``root/tinyimagenet/tiny-imagenet-200/``: the extracted folder (it must hold ``wnids.txt``).
2. ``root/tinyimagenet/tiny-imagenet-200.zip``: the archive, checked and read without extracting it.
   With ``download=True`` it is downloaded first (248 MB).

The decoded images of each split are cached as uint8 under ``root/cache`` (about 1.2 GB for ``"train"``),
so the JPEGs are decoded once. Checksum: Stanford publishes none; the md5 is the one carried by
torchvision-style loaders, for instance ContinualAI/avalanche
(``avalanche/benchmarks/datasets/tiny_imagenet/tiny_imagenet.py``). No sha256 could be confirmed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from dstlib.data.registry import DatasetNotAvailable, DatasetSpec, RemoteFile, cached, fetch, register

DATASET = "tinyimagenet"
FOLDER = "tiny-imagenet-200"
IMAGE_SIZE = 64
TINYIMAGENET_FILE = RemoteFile("http://cs231n.stanford.edu/tiny-imagenet-200.zip",
                               "md5:90528d7ca1a48142e341f4ef8d21d0de", "tiny-imagenet-200.zip")


@contextmanager
def _open_source(root: Path, download: bool) -> Iterator[tuple[set[str], Callable[[str], bytes]]]:
    """The files under ``tiny-imagenet-200/`` (paths relative to it, ``/``-separated) and a reader of one.

    Reads the extracted folder if it holds ``wnids.txt``, else the checked archive (downloaded first if
    ``download``); raises :class:`DatasetNotAvailable` naming both places when neither is there.
    """
    folder = Path(root) / DATASET / FOLDER
    if (folder / "wnids.txt").is_file():
        names = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
        yield names, lambda name: (folder / name).read_bytes()
        return
    try:
        archive = fetch(DATASET, TINYIMAGENET_FILE, Path(root), download)
    except DatasetNotAvailable as error:
        raise DatasetNotAvailable(f"{error} Or put the extracted folder at {folder} (it must hold "
                                  f"wnids.txt, train/ and val/).") from error
    prefix = FOLDER + "/"
    with zipfile.ZipFile(archive) as zipped:
        names = {name.removeprefix(prefix) for name in zipped.namelist()
                 if name.startswith(prefix) and not name.endswith("/")}
        yield names, lambda name: zipped.read(prefix + name)


def _items(split: str, names: set[str], read: Callable[[str], bytes]) -> list[tuple[str, int]]:
    """``(file, class index)`` of every image of ``split``: train sorted by path, test in annotation order."""
    index = {wnid: c for c, wnid in enumerate(sorted(read("wnids.txt").decode().split()))}

    def label(wnid: str, where: str) -> int:
        if wnid not in index:
            raise ValueError(f"{where}: wnid {wnid!r} is not in wnids.txt")
        return index[wnid]

    if split == "train":
        parts = [name.split("/") for name in sorted(names)]
        return [("/".join(p), label(p[1], "/".join(p))) for p in parts
                if len(p) == 4 and p[0] == "train" and p[2] == "images" and p[3].endswith(".JPEG")]
    rows = [line.split("\t") for line in read("val/val_annotations.txt").decode().splitlines() if line.strip()]
    return [(f"val/images/{row[0]}", label(row[1], f"val/val_annotations.txt, {row[0]}")) for row in rows]


def _decode(data: bytes, name: str) -> np.ndarray:
    """One JPEG as uint8 ``(64, 64, 3)``; greyscale (and any other mode) is converted to RGB."""
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB"))
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"{name} is {pixels.shape[1]}x{pixels.shape[0]}; expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    return pixels


def load_tiny_imagenet(split: str, root: Path, download: bool = False) -> TensorDataset:
    """Tiny ImageNet-200: ``"train"`` (100,000 images) or ``"test"`` (the 10,000 official val images).

    Returns ``x: (N, 3, 64, 64)`` float32 in [0, 1] and ``y: (N,)`` int64 in 0..199 (the index of the
    class's wnid in sorted ``wnids.txt``). ``download=True`` fetches the 248 MB archive if it is missing.
    """

    def build() -> dict[str, torch.Tensor]:
        with _open_source(root, download) as (names, read):
            items = _items(split, names, read)
            images = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
            for i, (name, _) in enumerate(items):
                images[i] = _decode(read(name), f"{FOLDER}/{name}")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return {"x": x, "y": torch.tensor([c for _, c in items], dtype=torch.int64)}

    tensors = cached(DATASET, {"split": split, "version": 1}, build, root)
    return TensorDataset(tensors["x"].float().div_(255.0), tensors["y"])


register(DatasetSpec(DATASET, load_tiny_imagenet, "classification", 200, (3, IMAGE_SIZE, IMAGE_SIZE), False,
                     "Tiny ImageNet-200, 100,000 train / 10,000 test (the official val set), 64x64 colour "
                     "images, 200 classes", (TINYIMAGENET_FILE,)))
