"""3D segmentation volumes: MONAI's synthetic spheres offline, and the MSD spleen CT set from disk.

``"synthetic_volumes"`` places random spheres with MONAI's ``create_test_image_3d`` and labels each
with a class. MONAI's own image is rescaled per volume by its maximum, so one class gets different
intensities in volumes that miss the highest class; here the image is rebuilt from the labels instead
(class ``c`` has intensity ``c / (num_classes - 1)``, plus Gaussian noise), so a class means the same
thing in every volume. A volume may still contain no sphere of some class.

``"msd_task09_spleen"`` is the Medical Segmentation Decathlon spleen task (41 labelled CT volumes).
Inputs are ``(N, 1, D, H, W)`` float32, targets ``(N, D, H, W)`` int64.
"""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import SPLITS, DatasetNotAvailable, DatasetSpec, RemoteFile, cached, fetch, register

SPHERES_PER_VOLUME = 5


def sphere_volume(size: int, num_classes: int, noise: float,
                  generator: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """One ``size``^3 volume: image ``(D, H, W)`` float32 and labels ``(D, H, W)`` int64 in 0..num_classes-1.

    Sphere radii are drawn from ``[max(2, size // 16), size // 4)`` (MONAI needs ``size > 2 * rad_max``).
    """
    from monai.data.synthetic import create_test_image_3d

    _, labels = create_test_image_3d(size, size, size, num_objs=SPHERES_PER_VOLUME, rad_max=size // 4,
                                     rad_min=max(2, size // 16), noise_max=0.0,
                                     num_seg_classes=num_classes - 1, random_state=generator)
    labels = labels.transpose(2, 0, 1).astype(np.int64)  # MONAI's (H, W, D) -> (D, H, W)
    image = labels / (num_classes - 1) + noise * generator.standard_normal(labels.shape)
    return image.astype(np.float32), labels


def load_synthetic_volumes(split: str, root: Path, download: bool = False, size: int = 32,
                           num_volumes: int = 16, num_classes: int = 2, noise: float = 0.5,
                           seed: int = 0) -> TensorDataset:
    """``num_volumes`` synthetic volumes of ``size``^3 voxels with ``num_classes`` classes (background 0).

    Volume ``i`` of a split is drawn from its own stream ``SeedSequence([seed, split, i])``, so train
    and test differ and a smaller ``num_volumes`` gives a prefix of a larger one. ``noise`` is the std
    of the Gaussian noise added to the class intensities in [0, 1]. Regenerated on every call (16
    volumes of 32^3 take about 0.1 s), not cached. Returns ``x: (N, 1, size, size, size)`` float32 and
    ``y: (N, size, size, size)`` int64.
    """
    del root, download  # generated locally
    checks.integer("size", size, low=16, high=256)
    checks.integer("num_volumes", num_volumes, low=1)
    checks.integer("num_classes", num_classes, low=2, high=16)  # background included
    checks.number("noise", noise, low=0, high=10)
    checks.integer("seed", seed, low=0)

    images, labels = [], []
    for index in range(num_volumes):
        stream = np.random.SeedSequence([seed, SPLITS.index(split), index])
        generator = np.random.RandomState(np.random.MT19937(stream))
        image, label = sphere_volume(size, num_classes, float(noise), generator)
        images.append(image)
        labels.append(label)
    return TensorDataset(torch.from_numpy(np.stack(images)).unsqueeze(1), torch.from_numpy(np.stack(labels)))


# The md5 MONAI publishes (monai.apps.DecathlonDataset); no sha256 is published for this archive.
SPLEEN_FILE = RemoteFile("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar",
                         "md5:410d4a301da4e5b2f6f86ec3ddba524e", "Task09_Spleen.tar")
SPLEEN_TEST_CASES = 9
SPLEEN_HU_WINDOW = (-57.0, 164.0)


def _read_nifti(data: bytes) -> np.ndarray:
    """A gzipped NIfTI file's voxels as float32 ``(D, H, W)`` (the file's ``(x, y, z)`` reversed)."""
    import nibabel

    image = nibabel.Nifti1Image.from_bytes(gzip.decompress(data))
    return np.asarray(image.get_fdata(dtype=np.float32)).transpose(2, 1, 0)


def _resize(volume: np.ndarray, size: int, mode: str) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(volume))[None, None]
    return F.interpolate(tensor, size=(size, size, size), mode=mode)[0, 0]


def read_spleen_archive(archive: Path, size: int) -> dict[str, torch.Tensor]:
    """Read the labelled cases of ``Task09_Spleen.tar``, resized to ``size``^3.

    CT values are clipped to the spleen window [-57, 164] HU and scaled to [0, 1] (trilinear
    resizing); labels are resized by nearest neighbour. Voxel spacing is ignored. Cases sorted by name;
    the last 9 are the test split (the split of MONAI's spleen tutorial).
    """
    low, high = SPLEEN_HU_WINDOW
    with tarfile.open(archive) as tar:
        members = {member.name: member for member in tar.getmembers() if member.isfile()}
        # The archive also holds macOS "._" resource-fork files beside the volumes.
        cases = sorted(name for name in members if "/imagesTr/" in name and name.endswith(".nii.gz")
                       and not Path(name).name.startswith("._"))
        if len(cases) <= SPLEEN_TEST_CASES:
            raise DatasetNotAvailable(f"{archive} holds {len(cases)} labelled cases, expected more than "
                                      f"{SPLEEN_TEST_CASES}; download {SPLEEN_FILE.url} again")
        images, labels = [], []
        for case in cases:
            image = _read_nifti(tar.extractfile(members[case]).read())
            label = _read_nifti(tar.extractfile(members[case.replace("/imagesTr/", "/labelsTr/")]).read())
            images.append(_resize((image.clip(low, high) - low) / (high - low), size, "trilinear"))
            labels.append(_resize(label, size, "nearest").round().to(torch.int64))
    x, y = torch.stack(images).unsqueeze(1), torch.stack(labels)
    cut = len(cases) - SPLEEN_TEST_CASES
    return {"train_x": x[:cut], "train_y": y[:cut], "test_x": x[cut:], "test_y": y[cut:]}


def load_msd_spleen(split: str, root: Path, download: bool = False, size: int = 64) -> TensorDataset:
    """MSD Task09 spleen CT (32 train / 9 test labelled volumes), resized to ``size``^3.

    The archive (1.5 GB) is read from ``root/msd_task09_spleen/Task09_Spleen.tar`` (fetched with
    ``download=True``), checked against MONAI's published md5. Reading NIfTI needs ``nibabel`` (not in
    requirements.txt). Returns ``x: (N, 1, size, size, size)`` float32 in [0, 1] and
    ``y: (N, size, size, size)`` int64 in {0, 1}.
    """
    checks.integer("size", size, low=16, high=256)
    archive = fetch("msd_task09_spleen", SPLEEN_FILE, Path(root), download)
    try:
        import nibabel  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError("reading the MSD NIfTI volumes needs nibabel, which is not installed: "
                                  "pip install nibabel==5.4.2") from error

    def build() -> dict[str, torch.Tensor]:
        return read_spleen_archive(archive, size)

    stat = archive.stat()
    params = {"size": size, "archive": [stat.st_size, stat.st_mtime_ns], "version": 1}
    tensors = cached("msd_task09_spleen", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


register(DatasetSpec("synthetic_volumes", load_synthetic_volumes, "segmentation", None, None, True,
                     "random labelled spheres in noise (MONAI create_test_image_3d), size^3 voxels"))
register(DatasetSpec("msd_task09_spleen", load_msd_spleen, "segmentation", 2, None, False,
                     "Medical Segmentation Decathlon Task09 spleen CT, 41 labelled volumes; needs nibabel",
                     (SPLEEN_FILE,)))
