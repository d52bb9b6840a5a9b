"""3-D segmentation datasets in the Medical Segmentation Decathlon layout: AMOS-CT, BTCV, MSD BraTS.

The layout, shared by the MSD tasks, AMOS 2022 and the BTCV copies prepared for nnU-Net and MONAI::

    <root>/<dataset>/<folder>/dataset.json        {"training": [{"image": ..., "label": ...}, ...],
                                                   optional "validation": [...] with labels (AMOS)}
    <root>/<dataset>/<folder>/imagesTr/*.nii.gz   images: (x, y, z) or (x, y, z, modality)
    <root>/<dataset>/<folder>/labelsTr/*.nii.gz   labels: (x, y, z) integers

Paths in ``dataset.json`` are relative to the folder (``./imagesTr/case.nii.gz``; AMOS keeps its validation
cases in ``imagesVa/`` and ``labelsVa/``), and every file it lists for the splits must be there: a missing one
is named before any volume is read. Split ``"test"`` is the labelled ``"validation"`` list when the file has
one (AMOS), otherwise the last :data:`TEST_FRACTION` of the ``"training"`` cases sorted by name
(:func:`train_cases`); ``"train"`` is the rest.

Every volume is resized to ``size``^3 (trilinear for images, nearest for labels; voxel spacing is
ignored, a CPU-scale simplification of nnU-Net's resampling) and normalised as nnU-Net does per
modality, simplified to one volume at a time: CT clipped to the abdominal window [-175, 250] HU and
scaled to [0, 1]; MRI z-scored per channel over the non-zero (brain) voxels. Reading needs ``nibabel``.
Results are cached under ``root/cache``. Inputs ``(N, C, size, size, size)`` float32, targets
``(N, size, size, size)`` int64.

AMOS and BTCV need a registration to download (AMOS: zenodo record 7262581, the file ``amos22.zip``;
BTCV: the Synapse "Multi-Atlas Labeling Beyond the Cranial Vault" challenge); put the extracted folder in
place. MSD BraTS (Task01) is fetched with ``download=True`` from the MSD mirror MONAI uses and extracted.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetNotAvailable, DatasetSpec, RemoteFile, cached, fetch, register

TEST_FRACTION = 0.2
CT_WINDOW = (-175.0, 250.0)  # the abdominal window of MONAI's BTCV tutorials
AMOS_FIRST_MRI_CASE = 500  # AMOS numbers CT cases below 500 and MRI cases from 500


@dataclass(frozen=True)
class NiftiDataset:
    """One dataset in the MSD layout: its registry ``name``, extracted ``folder``, imaging ``modality``
    (``"ct"`` or ``"mri"``), classes (background included), the archive (if it can be downloaded)
    and whether only AMOS's CT cases are kept."""

    name: str
    folder: str
    modality: str
    num_classes: int
    archive: RemoteFile | None = None
    ct_cases_only: bool = False


# md5 from MONAI's DecathlonDataset (monai/apps/datasets.py); the MSD publishes no sha256.
BRATS_FILE = RemoteFile("https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar",
                        "md5:240a19d752f0d9e9101544901065d872", "Task01_BrainTumour.tar")
DATASETS = {
    "amos22_ct": NiftiDataset("amos22_ct", "amos22", "ct", 16, ct_cases_only=True),
    "btcv": NiftiDataset("btcv", "BTCV", "ct", 14),
    "msd_task01_brats": NiftiDataset("msd_task01_brats", "Task01_BrainTumour", "mri", 4, archive=BRATS_FILE),
}


def read_nifti(path: Path) -> np.ndarray:
    """A NIfTI file's voxels as float32, ``(C, D, H, W)``: the file's ``(x, y, z[, c])`` axes reversed
    and the modality axis first (C = 1 for a 3-D file)."""
    import nibabel

    volume = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float32))
    checks.require(volume.ndim in (3, 4), "NIfTI shape", (str(path), volume.shape), "3 or 4 axes")
    if volume.ndim == 3:
        volume = volume[..., None]
    return np.ascontiguousarray(volume.transpose(3, 2, 1, 0))


def normalize(volume: np.ndarray, modality: str) -> np.ndarray:
    """``(C, D, H, W)`` intensities: CT window -> [0, 1], or MRI z-score per channel over non-zero voxels."""
    checks.one_of("modality", modality, ("ct", "mri"))
    if modality == "ct":
        low, high = CT_WINDOW
        return (volume.clip(low, high) - low) / (high - low)
    out = np.zeros_like(volume)
    for channel, image in enumerate(volume):
        inside = image != 0
        if inside.any():
            values = image[inside]
            out[channel][inside] = (values - values.mean()) / max(float(values.std()), 1e-8)
    return out


def _resize(volume: np.ndarray, size: int, mode: str) -> torch.Tensor:
    return F.interpolate(torch.from_numpy(volume)[None], size=(size,) * 3, mode=mode)[0]


def train_cases(labelled: int) -> int:
    """How many of ``labelled`` cases without a labelled validation list are the train split: all but the
    last :data:`TEST_FRACTION` (at least one held out)."""
    return labelled - max(1, round(TEST_FRACTION * labelled))


def _cases(folder: Path, spec: NiftiDataset) -> dict[str, list[dict[str, str]]]:
    """``{"train": [...], "test": [...]}`` entries of ``dataset.json`` (see the module docstring)."""
    listing = json.loads((folder / "dataset.json").read_text())
    training = sorted(listing.get("training", []), key=lambda case: case["image"])
    validation = sorted((c for c in listing.get("validation", []) if "label" in c), key=lambda case: case["image"])
    if spec.ct_cases_only:
        def is_ct(case: dict[str, str]) -> bool:
            digits = "".join(ch for ch in Path(case["image"]).name if ch.isdigit())
            return bool(digits) and int(digits) < AMOS_FIRST_MRI_CASE

        training, validation = [c for c in training if is_ct(c)], [c for c in validation if is_ct(c)]
    if validation:
        return {"train": training, "test": validation}
    cut = train_cases(len(training))
    checks.require(cut >= 1, "dataset.json training cases", len(training), "at least 2 labelled cases")
    return {"train": training[:cut], "test": training[cut:]}


def listed_cases(folder: Path, spec: NiftiDataset) -> dict[str, list[dict[str, str]]]:
    """The cases of both splits (see :func:`_cases`), once every image and label file ``dataset.json`` lists
    for them is on disk; a ``DatasetNotAvailable`` naming the first missing file otherwise."""
    cases = _cases(folder, spec)
    missing = [folder / case[key] for split in cases.values() for case in split for key in ("image", "label")
               if not (folder / case[key]).is_file()]
    if missing:
        raise DatasetNotAvailable(f"{missing[0]} is missing: {folder / 'dataset.json'} lists it ({len(missing)} listed "
                                  "file(s) missing in all); the folder needs every image and label its dataset.json "
                                  "lists, at the paths it gives relative to the folder (imagesTr/, labelsTr/, ...)")
    return cases


def read_folder(folder: Path, cases: dict[str, list[dict[str, str]]], spec: NiftiDataset,
                size: int) -> dict[str, torch.Tensor]:
    """Both splits' ``cases`` of an extracted dataset folder, resized to ``size``^3 and normalised."""
    tensors = {}
    for split, split_cases in cases.items():
        images, labels = [], []
        for case in split_cases:
            image = normalize(read_nifti(folder / case["image"]), spec.modality)
            images.append(_resize(image, size, "trilinear"))
            label = read_nifti(folder / case["label"])
            labels.append(_resize(label, size, "nearest")[0].round().to(torch.int64))
        tensors[f"{split}_x"], tensors[f"{split}_y"] = torch.stack(images), torch.stack(labels)
    return tensors


def extract_folder(archive: Path, member: str, destination: Path) -> None:
    """Unpack the folder ``member`` of the tar ``archive`` to ``destination``, which appears only once
    complete (unpacked beside it, then renamed)."""
    scratch = Path(tempfile.mkdtemp(prefix=".extract.", dir=destination.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")
        checks.require((scratch / member).is_dir(), "archive", str(archive), f"a tar holding the folder {member}/")
        os.replace(scratch / member, destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def dataset_folder(spec: NiftiDataset, root: Path, download: bool) -> Path:
    """The extracted folder of ``spec`` under ``root``, fetched and extracted first when it can be."""
    base = Path(root) / spec.name
    folder = base / spec.folder
    if (folder / "dataset.json").is_file():
        return folder
    if spec.archive is None:
        raise DatasetNotAvailable(f"dataset {spec.name!r} is not on disk: put the extracted folder at {folder} "
                                  "(it must hold dataset.json, imagesTr/ and labelsTr/); it needs a registration "
                                  "to download (see dstlib/data/nifti.py)")
    archive = fetch(spec.name, spec.archive, Path(root), download)
    extract_folder(archive, spec.folder, folder)
    return folder


def load_nifti_dataset(name: str, split: str, root: Path, download: bool = False, size: int = 96) -> TensorDataset:
    """Split ``split`` of the MSD-layout dataset ``name`` (see :data:`DATASETS`), resized to ``size``^3."""
    checks.integer("size", size, low=8, high=512)
    spec = DATASETS[name]
    folder = dataset_folder(spec, root, download)
    try:
        import nibabel  # noqa: F401
    except ImportError as error:
        raise ModuleNotFoundError("reading NIfTI volumes needs nibabel: pip install nibabel==5.4.2") from error
    cases = listed_cases(folder, spec)
    listing = folder / "dataset.json"
    params = {"size": size, "listing": [listing.stat().st_size, listing.stat().st_mtime_ns], "version": 1}
    tensors = cached(name, params, lambda: read_folder(folder, cases, spec, size), Path(root))
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


def _loader(name: str):
    def load(split: str, root: Path, download: bool = False, size: int = 96) -> TensorDataset:
        return load_nifti_dataset(name, split, root, download, size)

    load.__doc__ = f"{name}: see :func:`load_nifti_dataset`."
    return load


register(DatasetSpec("amos22_ct", _loader("amos22_ct"), "segmentation", 16, None, False,
                     "AMOS 2022 abdominal CT, 15 organs (extracted amos22/ folder; CT cases only)"))
register(DatasetSpec("btcv", _loader("btcv"), "segmentation", 14, None, False,
                     "BTCV multi-atlas abdomen CT, 13 organs (extracted folder in the MSD layout)"))
register(DatasetSpec("msd_task01_brats", _loader("msd_task01_brats"), "segmentation", 4, None, False,
                     "MSD Task01 brain tumour MRI (BraTS), 4 modalities, 3 tumour labels", (BRATS_FILE,)))
