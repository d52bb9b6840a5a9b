"""ImageNet-1K (ILSVRC 2012) from class folders, the layout of torchvision's ``ImageFolder`` (SLaK's paper data).

ImageNet cannot be downloaded by a script (its licence needs an account at image-net.org), so the registry
entry ``imagenet`` has no URL: extract the official archives into the usual folders, one per class (the
validation images moved into class folders, e.g. with the ``valprep.sh`` script)::

    <data root>/imagenet/train/n01440764/n01440764_10026.JPEG ...   (1,281,167 images, 1,000 classes)
    <data root>/imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG ... (50,000 images)

Split ``"train"`` reads ``train/``, ``"test"`` reads ``val/`` (the test set of every ImageNet paper). Class
``c`` is the ``c``-th folder name of ``train/`` in sorted order, as in ``ImageFolder``. Every class needs
images in a folder of its name in both splits, and ``val/`` may hold no folder of another name: a class
folder missing or empty (an extraction cut short, or ``val/`` left flat as the official archive unpacks)
raises :class:`~dstlib.data.DatasetNotAvailable` naming the folder expected, before any training.

Unlike the in-memory sets, :func:`load_imagenet` returns a lazy map-style dataset (140 GB do not fit in
memory): each item is decoded on access, resized (shorter side to ``round(size / crop_ratio)``) and
centre-cropped to ``size x size`` (ConvNeXt's evaluation transform, ``crop_ratio`` 0.875 at 224), as a float
tensor ``(3, size, size)`` in [0, 1], with its label. :func:`dstlib.train.fit` accepts such a dataset
(``collate`` defaults to ``default_collate``); training augmentation goes through fit's ``augment`` hook.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dstlib import checks
from dstlib.data.registry import DatasetNotAvailable, DatasetSpec, register

DATASET = "imagenet"
FOLDERS = {"train": "train", "test": "val"}
EXTENSIONS = (".jpeg", ".jpg", ".png")
# Images of the ILSVRC 2012 training set (Russakovsky et al. 2015, IJCV, table 2; the train archive's count).
TRAIN_SAMPLES = 1_281_167


class ImageFolder(Dataset):
    """Images under ``folder/<class>/<file>``: item ``i`` is ``(image (3, size, size) in [0, 1], label)``.

    Args:
        folder: the split's folder.
        classes: class folder names in label order (default: the sorted sub-folders of ``folder``).
        size: output side; crop_ratio: crop side over the resized shorter side.

    Raises :class:`~dstlib.data.DatasetNotAvailable` naming ``folder/<class>`` when a class has no image
    there, and ``ValueError`` when ``folder`` has a class folder not in ``classes``.
    """

    def __init__(self, folder: Path, classes: list[str] | None = None, size: int = 224,
                 crop_ratio: float = 0.875) -> None:
        checks.integer("size", size, low=1)
        checks.number("crop_ratio", crop_ratio, low=0, high=1, low_open=True)
        folder = Path(folder)
        self.classes = classes if classes is not None else sorted(p.name for p in folder.iterdir() if p.is_dir())
        index = {name: c for c, name in enumerate(self.classes)}
        unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in index)
        if unknown:
            raise ValueError(f"{folder}: class folders {unknown[:5]} are not classes of the training set")
        self.items = [(path, index[path.parent.name]) for path in sorted(folder.glob("*/*"))
                      if path.suffix.lower() in EXTENSIONS and path.parent.name in index]
        found = {label for _, label in self.items}
        empty = [name for c, name in enumerate(self.classes) if c not in found]
        if empty:
            others = f" (and {len(empty) - 1} other class folder{'s' * (len(empty) > 2)})" if len(empty) > 1 else ""
            flat = sum(1 for path in folder.iterdir() if path.is_file() and path.suffix.lower() in EXTENSIONS)
            hint = (f"; {folder} holds {flat} images directly, not in class folders: move each into the folder of "
                    "its class (the official validation archive unpacks flat; its valprep.sh sorts it)") if flat else ""
            raise DatasetNotAvailable(f"{folder / empty[0]} is missing or holds no images{others}: each of the "
                                      f"{len(self.classes)} classes needs its images ({', '.join(EXTENSIONS)}) in "
                                      f"{folder}/<class>/{hint}")
        self.size, self.resize = size, round(size / crop_ratio)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = self.resize / min(image.size)
            width, height = max(self.size, round(image.width * scale)), max(self.size, round(image.height * scale))
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            left, top = (width - self.size) // 2, (height - self.size) // 2
            pixels = np.asarray(image.crop((left, top, left + self.size, top + self.size)))
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0), label


def load_imagenet(split: str, root: Path, download: bool = False, size: int = 224,
                  crop_ratio: float = 0.875) -> ImageFolder:
    """ImageNet-1K from ``root/imagenet/{train,val}/<wnid>/`` (see the module docstring), lazily decoded.

    Raises :class:`~dstlib.data.DatasetNotAvailable` naming the folders when they are missing.
    """
    base = Path(root) / DATASET
    train = base / FOLDERS["train"]
    folder = base / FOLDERS[split]
    if not (train.is_dir() and folder.is_dir()):
        raise DatasetNotAvailable(
            f"dataset {DATASET!r} is not on disk{' (it cannot be downloaded by a script)' if download else ''}. "
            f"Download ILSVRC2012 from https://image-net.org (an account is needed), extract it into class "
            f"folders {train}/<wnid>/*.JPEG and {base / FOLDERS['test']}/<wnid>/*.JPEG, or set DSTLIB_DATA to a "
            f"folder holding {DATASET}/train and {DATASET}/val.")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    return ImageFolder(folder, classes, size, crop_ratio)


register(DatasetSpec(DATASET, load_imagenet, "classification", 1000, (3, 224, 224), False,
                     "ImageNet-1K (ILSVRC 2012) from class folders train/ and val/, decoded lazily; obtained "
                     "by hand from image-net.org"))
