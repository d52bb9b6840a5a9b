"""UCR / UEA time-series classification sets: sktime's bundled copies offline, the UCR archive from disk.

One registry entry, ``"ucr"``, with the problem chosen by ``problem=`` (``load("ucr", problem="GunPoint")``;
not ``name=``, which is the registry name itself).
Where a problem comes from, in order:

1. sktime 1.2.0 bundles ACSF1, ArrowHead, BasicMotions, GunPoint, ItalyPowerDemand, JapaneseVowels,
   OSULeaf, PLAID and UnitTest; they are read with ``load_UCR_UEA_dataset`` from the package folder
   (it never downloads a bundled problem).
2. Otherwise ``root/ucr/<Name>/<Name>_TRAIN.{tsv,ts,txt}`` and ``_TEST.*``: the UCR 2018 archive layout
   (``.tsv``: one series per line, label first, tab separated, trailing ``NaN`` padding for
   varying lengths), the UEA ``.ts`` format, or the older whitespace/comma separated ``.txt``.
3. Otherwise :class:`DatasetNotAvailable` says where to download the archive and where to put it.

Labels become 0..C-1 by sorting the label names of train and test together (numerically when every
name is a number), so both splits agree. Inputs are ``(N, C, L)`` float32.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import SPLITS, DatasetNotAvailable, DatasetSpec, cached, register

UCR_ARCHIVE_URL = "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/"
ARCHIVE_SUFFIXES = (".tsv", ".ts", ".txt")
NORMALIZATIONS = ("series", "none")
UNEQUAL_LENGTH = ("pad", "error")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")


def sktime_bundled_folder(name: str) -> Path | None:
    """sktime's folder holding ``<name>_TRAIN.ts``, or ``None`` (found without importing sktime)."""
    found = importlib.util.find_spec("sktime")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(found.submodule_search_locations[0]) / "datasets" / "data" / name
    return folder if (folder / f"{name}_TRAIN.ts").is_file() else None


def archive_file(root: Path, name: str, split: str) -> Path | None:
    """``root/ucr/<name>/<name>_<SPLIT>`` with the first suffix of :data:`ARCHIVE_SUFFIXES` found."""
    for suffix in ARCHIVE_SUFFIXES:
        path = Path(root) / "ucr" / name / f"{name}_{split.upper()}{suffix}"
        if path.is_file():
            return path
    return None


def read_delimited(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Read a UCR ``.tsv``/``.txt`` file: per line a label, then the values (tab, comma or space separated).

    Returns one ``(1, L_i)`` float64 array per series (trailing ``NaN`` padding removed) and the labels.
    """
    series, labels = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        fields = [field for field in re.split(r"[\s,]+", line.strip()) if field]
        if not fields:
            continue
        values = np.array(fields[1:], dtype=np.float64)
        last = np.flatnonzero(~np.isnan(values))
        values = values[: last[-1] + 1] if last.size else values[:0]
        if values.size == 0 or np.isnan(values).any():
            raise ValueError(f"{path}, line {number}: a series must have values and no missing value (NaN) "
                             "before its end; fill gaps before loading")
        labels.append(_label_name(fields[0]))
        series.append(values[None, :])
    return series, labels


def _label_name(field: str) -> str:
    """``"1.0000000e+00"`` (the UCR 2015 files) and ``"1"`` name the same class."""
    try:
        value = float(field)
    except ValueError:
        return field
    return str(int(value)) if value.is_integer() else field


def _read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Read a ``.ts`` file with sktime: one ``(C, L_i)`` array per series, and the labels."""
    from sktime.datasets import load_from_tsfile

    frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    return _nested_to_arrays(frame), [_label_name(str(label)) for label in labels]


def _nested_to_arrays(frame) -> list[np.ndarray]:
    """sktime's nested DataFrame (a pd.Series per cell) -> one ``(C, L_i)`` array per row."""
    arrays = []
    for row in frame.itertuples(index=False):
        channels = [np.asarray(cell, dtype=np.float64) for cell in row]
        if len({len(channel) for channel in channels}) != 1:
            raise ValueError("channels of one series have different lengths; not supported")
        arrays.append(np.stack(channels))
    return arrays


def _read_bundled(name: str, split: str) -> tuple[list[np.ndarray], list[str]]:
    from sktime.datasets import load_UCR_UEA_dataset

    # nested_univ also holds unequal-length problems (numpy3D raises on JapaneseVowels and PLAID).
    frame, labels = load_UCR_UEA_dataset(name, split=split, return_type="nested_univ", return_X_y=True)
    return _nested_to_arrays(frame), [_label_name(str(label)) for label in labels]


def _read_archive(path: Path) -> tuple[list[np.ndarray], list[str]]:
    return _read_ts(path) if path.suffix == ".ts" else read_delimited(path)


def class_order(labels: list[str]) -> list[str]:
    """Sorted distinct label names: numerically when all are numbers, else as strings."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def znormalize(series: np.ndarray) -> np.ndarray:
    """Per-channel z-normalisation of one ``(C, L)`` series; a constant channel becomes zeros."""
    std = series.std(axis=1, keepdims=True)
    return (series - series.mean(axis=1, keepdims=True)) / np.where(std > 1e-8, std, 1.0)


def _stack(series: list[np.ndarray], length: int) -> torch.Tensor:
    """Zero-pad each ``(C, L_i)`` at the end to ``length`` and stack into ``(N, C, length)`` float32."""
    out = np.zeros((len(series), series[0].shape[0], length), dtype=np.float32)
    for index, values in enumerate(series):
        out[index, :, : values.shape[1]] = values
    return torch.from_numpy(out)


def _missing_message(name: str, root: Path) -> str:
    folder = Path(root) / "ucr" / name
    return (f"UCR/UEA problem {name!r} is not bundled with sktime and not on disk. Download the UCR "
            f"archive (UCRArchive_2018.zip) from {UCR_ARCHIVE_URL} (a manual download: the zip is password "
            "protected, the password is in the briefing document on that page, so no sha256 is checked) and "
            f"unpack it so that {folder}/{name}_TRAIN.tsv and {name}_TEST.tsv exist (UEA .ts files from "
            "timeseriesclassification.com work too), or set DSTLIB_DATA to a folder holding "
            f"ucr/{name}/.")


def load_ucr(split: str, root: Path, download: bool = False, problem: str = "GunPoint",
             normalize: str = "series", unequal_length: str = "pad") -> TensorDataset:
    """One UCR/UEA classification problem: ``x: (N, C, L)`` float32 and ``y: (N,)`` int64 in 0..C-1.

    ``normalize="series"`` z-normalises every series and channel on its own (the UCR convention);
    ``"none"`` keeps the raw values. Unequal-length problems (JapaneseVowels, PLAID) are zero-padded at
    the end, after normalisation, to the longest series of both splits (``unequal_length="pad"``) or
    rejected (``"error"``). ``download`` is ignored: the UCR archive is a manual download.
    """
    del download
    checks.require(isinstance(problem, str) and _NAME_PATTERN.fullmatch(problem) is not None, "problem", problem,
                   "a UCR/UEA problem name such as 'GunPoint'")
    checks.one_of("normalize", normalize, NORMALIZATIONS)
    checks.one_of("unequal_length", unequal_length, UNEQUAL_LENGTH)

    bundled = sktime_bundled_folder(problem)
    if bundled is not None:
        source: dict[str, object] = {"sktime": str(bundled)}
    else:
        files = {part: archive_file(root, problem, part) for part in SPLITS}
        if any(path is None for path in files.values()):
            raise DatasetNotAvailable(_missing_message(problem, root))
        source = {part: [str(path), path.stat().st_size, path.stat().st_mtime_ns]
                  for part, path in files.items()}

    def build() -> dict[str, torch.Tensor]:
        parts = {part: _read_bundled(problem, part) if bundled is not None else _read_archive(files[part])
                 for part in SPLITS}
        classes = class_order([label for _, labels in parts.values() for label in labels])
        index = {label: position for position, label in enumerate(classes)}
        lengths = {values.shape[1] for series, _ in parts.values() for values in series}
        if len(lengths) > 1 and unequal_length == "error":
            raise checks.invalid("unequal_length", unequal_length,
                                 f"'pad' only: UCR/UEA problem {problem!r} has series of lengths "
                                 f"{min(lengths)}..{max(lengths)}; unequal_length='pad' zero-pads them at the end")
        tensors = {}
        for part, (series, labels) in parts.items():
            if normalize == "series":
                series = [znormalize(values) for values in series]
            tensors[f"{part}_x"] = _stack(series, max(lengths))
            tensors[f"{part}_y"] = torch.tensor([index[label] for label in labels], dtype=torch.int64)
        return tensors

    params = {"problem": problem, "normalize": normalize, "unequal_length": unequal_length, "source": source,
              "version": 1}
    tensors = cached("ucr", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


register(DatasetSpec("ucr", load_ucr, "classification", None, None, True,
                     "a UCR/UEA time-series problem chosen by problem= (sktime's bundled sets offline, "
                     f"others from the UCR archive under root/ucr/); archive: {UCR_ARCHIVE_URL}"))
