"""Time-series classification sets: UCR/UEA problems (sktime's bundled copies, the archives on disk), motifs.

Three registry entries; the problem is chosen by ``problem=`` (``load("ucr", problem="GunPoint")``; not
``name=``, which is the registry name itself):

* ``"ucr"``: a UCR/UEA problem from sktime's bundled copy when there is one, else from the archive on disk.
* ``"ucr_archive"``: a problem of the full UCR 2018 (128 univariate) or UEA 2018 (30 multivariate) archive,
  always read from disk (never sktime's copy), for the ``paper`` profile.
* ``"motifs"``: a synthetic task whose classes are decided by motifs of very different widths
  (:func:`load_motifs`), so that the receptive field matters by construction.

Where a UCR/UEA problem comes from, in order:

1. ``"ucr"`` only: sktime 1.2.0 bundles ACSF1, ArrowHead, BasicMotions, GunPoint, ItalyPowerDemand,
   JapaneseVowels, OSULeaf, PLAID and UnitTest; they are read with ``load_UCR_UEA_dataset`` from the
   package folder (it never downloads a bundled problem).
2. ``<Name>_TRAIN.{tsv,ts,txt}`` and ``_TEST.*`` in the first of these folders under ``root/ucr`` that holds
   both: ``<Name>/`` (one problem put there by hand), ``UCRArchive_2018/<Name>/`` (:data:`UCR_ARCHIVE_ZIP`
   unzipped into ``root/ucr``; a password-protected zip, password ``someone`` as stated on
   :data:`UCR_ARCHIVE_URL`) and ``Multivariate_ts/<Name>/`` (:data:`UEA_ARCHIVE_ZIP` unzipped into
   ``root/ucr``). Formats: ``.tsv`` (UCR 2018: one series per line, label first, tab separated, trailing
   ``NaN`` padding for varying lengths), ``.ts`` (UEA, read with sktime's ``load_from_tsfile``) or the
   older whitespace/comma separated ``.txt``. Neither archive publishes a checksum, so none is checked and
   the zips are not read directly: only the extracted folders.
3. Otherwise :class:`DatasetNotAvailable` says where to download the archives and where to put them (and
   which split file is missing when only the other one is there).

:data:`UCR_85_SIZES` holds the archive's published sizes of the 85 problems of the UCR 2015 archive (what
a run on each costs, see the DSN chapter; the fixtures' lengths and classes).

Values are kept as the archive ships them by default (``normalize="none"``, as DSN loads them: the UCR
2015 series were z-normalised by the archive itself, the UEA series are not, and neither is re-normalised);
``normalize="series"`` z-normalises every series and channel on its own. Labels become 0..K-1 by sorting
the K label names of train and test together (numerically when every name is a number), so both splits
agree. Inputs are ``(N, C, L)`` float32 (C channels), targets ``(N,)`` int64.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import SPLITS, DatasetNotAvailable, DatasetSpec, cached, register

UCR_ARCHIVE_URL = "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/"
UCR_ARCHIVE_ZIP = UCR_ARCHIVE_URL + "UCRArchive_2018.zip"
UEA_ARCHIVE_ZIP = "https://www.timeseriesclassification.com/aeon-toolkit/Archives/Multivariate2018_ts.zip"
ARCHIVE_FOLDERS = ("", "UCRArchive_2018", "Multivariate_ts")
ARCHIVE_SUFFIXES = (".tsv", ".ts", ".txt")
NORMALIZATIONS = ("none", "series")
UNEQUAL_LENGTH = ("pad", "error")
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")


class ProblemSize(NamedTuple):
    """A problem's row in the UCR archive's summary: training and test series, classes, series length."""

    train: int
    test: int
    classes: int
    length: int


# The 85 univariate problems of the UCR 2015 archive, which DSN evaluates: the first 85 rows of the UCR 2018
# archive's DataSummary.csv (published with the archive, UCR_ARCHIVE_URL; Dau et al. 2019), in its order and
# with its 2018 names. Train, test and classes agree with sktime 1.2.0's precomputed tags of every problem.
UCR_85_SIZES = {
    "Adiac": ProblemSize(390, 391, 37, 176), "ArrowHead": ProblemSize(36, 175, 3, 251),
    "Beef": ProblemSize(30, 30, 5, 470), "BeetleFly": ProblemSize(20, 20, 2, 512),
    "BirdChicken": ProblemSize(20, 20, 2, 512), "Car": ProblemSize(60, 60, 4, 577), "CBF": ProblemSize(30, 900, 3, 128),
    "ChlorineConcentration": ProblemSize(467, 3840, 3, 166), "CinCECGTorso": ProblemSize(40, 1380, 4, 1639),
    "Coffee": ProblemSize(28, 28, 2, 286), "Computers": ProblemSize(250, 250, 2, 720),
    "CricketX": ProblemSize(390, 390, 12, 300), "CricketY": ProblemSize(390, 390, 12, 300),
    "CricketZ": ProblemSize(390, 390, 12, 300), "DiatomSizeReduction": ProblemSize(16, 306, 4, 345),
    "DistalPhalanxOutlineAgeGroup": ProblemSize(400, 139, 3, 80),
    "DistalPhalanxOutlineCorrect": ProblemSize(600, 276, 2, 80), "DistalPhalanxTW": ProblemSize(400, 139, 6, 80),
    "Earthquakes": ProblemSize(322, 139, 2, 512), "ECG200": ProblemSize(100, 100, 2, 96),
    "ECG5000": ProblemSize(500, 4500, 5, 140), "ECGFiveDays": ProblemSize(23, 861, 2, 136),
    "ElectricDevices": ProblemSize(8926, 7711, 7, 96), "FaceAll": ProblemSize(560, 1690, 14, 131),
    "FaceFour": ProblemSize(24, 88, 4, 350), "FacesUCR": ProblemSize(200, 2050, 14, 131),
    "FiftyWords": ProblemSize(450, 455, 50, 270), "Fish": ProblemSize(175, 175, 7, 463),
    "FordA": ProblemSize(3601, 1320, 2, 500), "FordB": ProblemSize(3636, 810, 2, 500),
    "GunPoint": ProblemSize(50, 150, 2, 150), "Ham": ProblemSize(109, 105, 2, 431),
    "HandOutlines": ProblemSize(1000, 370, 2, 2709), "Haptics": ProblemSize(155, 308, 5, 1092),
    "Herring": ProblemSize(64, 64, 2, 512), "InlineSkate": ProblemSize(100, 550, 7, 1882),
    "InsectWingbeatSound": ProblemSize(220, 1980, 11, 256), "ItalyPowerDemand": ProblemSize(67, 1029, 2, 24),
    "LargeKitchenAppliances": ProblemSize(375, 375, 3, 720), "Lightning2": ProblemSize(60, 61, 2, 637),
    "Lightning7": ProblemSize(70, 73, 7, 319), "Mallat": ProblemSize(55, 2345, 8, 1024),
    "Meat": ProblemSize(60, 60, 3, 448), "MedicalImages": ProblemSize(381, 760, 10, 99),
    "MiddlePhalanxOutlineAgeGroup": ProblemSize(400, 154, 3, 80),
    "MiddlePhalanxOutlineCorrect": ProblemSize(600, 291, 2, 80), "MiddlePhalanxTW": ProblemSize(399, 154, 6, 80),
    "MoteStrain": ProblemSize(20, 1252, 2, 84), "NonInvasiveFetalECGThorax1": ProblemSize(1800, 1965, 42, 750),
    "NonInvasiveFetalECGThorax2": ProblemSize(1800, 1965, 42, 750), "OliveOil": ProblemSize(30, 30, 4, 570),
    "OSULeaf": ProblemSize(200, 242, 6, 427), "PhalangesOutlinesCorrect": ProblemSize(1800, 858, 2, 80),
    "Phoneme": ProblemSize(214, 1896, 39, 1024), "Plane": ProblemSize(105, 105, 7, 144),
    "ProximalPhalanxOutlineAgeGroup": ProblemSize(400, 205, 3, 80),
    "ProximalPhalanxOutlineCorrect": ProblemSize(600, 291, 2, 80), "ProximalPhalanxTW": ProblemSize(400, 205, 6, 80),
    "RefrigerationDevices": ProblemSize(375, 375, 3, 720), "ScreenType": ProblemSize(375, 375, 3, 720),
    "ShapeletSim": ProblemSize(20, 180, 2, 500), "ShapesAll": ProblemSize(600, 600, 60, 512),
    "SmallKitchenAppliances": ProblemSize(375, 375, 3, 720), "SonyAIBORobotSurface1": ProblemSize(20, 601, 2, 70),
    "SonyAIBORobotSurface2": ProblemSize(27, 953, 2, 65), "StarLightCurves": ProblemSize(1000, 8236, 3, 1024),
    "Strawberry": ProblemSize(613, 370, 2, 235), "SwedishLeaf": ProblemSize(500, 625, 15, 128),
    "Symbols": ProblemSize(25, 995, 6, 398), "SyntheticControl": ProblemSize(300, 300, 6, 60),
    "ToeSegmentation1": ProblemSize(40, 228, 2, 277), "ToeSegmentation2": ProblemSize(36, 130, 2, 343),
    "Trace": ProblemSize(100, 100, 4, 275), "TwoLeadECG": ProblemSize(23, 1139, 2, 82),
    "TwoPatterns": ProblemSize(1000, 4000, 4, 128), "UWaveGestureLibraryAll": ProblemSize(896, 3582, 8, 945),
    "UWaveGestureLibraryX": ProblemSize(896, 3582, 8, 315), "UWaveGestureLibraryY": ProblemSize(896, 3582, 8, 315),
    "UWaveGestureLibraryZ": ProblemSize(896, 3582, 8, 315), "Wafer": ProblemSize(1000, 6164, 2, 152),
    "Wine": ProblemSize(57, 54, 2, 234), "WordSynonyms": ProblemSize(267, 638, 25, 270),
    "Worms": ProblemSize(181, 77, 5, 900), "WormsTwoClass": ProblemSize(181, 77, 2, 900),
    "Yoga": ProblemSize(300, 3000, 2, 426),
}


def sktime_bundled_folder(name: str) -> Path | None:
    """sktime's folder holding ``<name>_TRAIN.ts``, or ``None`` (found without importing sktime)."""
    found = importlib.util.find_spec("sktime")
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(found.submodule_search_locations[0]) / "datasets" / "data" / name
    return folder if (folder / f"{name}_TRAIN.ts").is_file() else None


def archive_files(root: Path, name: str) -> dict[str, Path] | None:
    """``{"train": path, "test": path}`` of problem ``name`` in the first archive folder holding both, else ``None``.

    Looks in ``root/ucr/<name>``, ``root/ucr/UCRArchive_2018/<name>`` and ``root/ucr/Multivariate_ts/<name>``
    for ``<name>_TRAIN<suffix>`` and ``<name>_TEST<suffix>``, suffixes in the order of :data:`ARCHIVE_SUFFIXES`.
    """
    for subfolder in ARCHIVE_FOLDERS:
        folder = Path(root) / "ucr" / subfolder / name
        for suffix in ARCHIVE_SUFFIXES:
            files = {part: folder / f"{name}_{part.upper()}{suffix}" for part in SPLITS}
            if all(path.is_file() for path in files.values()):
                return files
    return None


def half_archive(root: Path, name: str) -> tuple[Path, Path] | None:
    """``(found, missing)``: the first split file of problem ``name`` on disk whose partner (the other split,
    same folder and suffix) is not, in the order :func:`archive_files` looks; ``None`` when there is none."""
    for subfolder in ARCHIVE_FOLDERS:
        folder = Path(root) / "ucr" / subfolder / name
        for suffix in ARCHIVE_SUFFIXES:
            train, test = (folder / f"{name}_{part.upper()}{suffix}" for part in SPLITS)
            if train.is_file() != test.is_file():
                return (train, test) if train.is_file() else (test, train)
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


def _missing_message(name: str, root: Path, bundled_first: bool) -> str:
    folder = Path(root) / "ucr"
    where = " is not bundled with sktime and" if bundled_first else ""
    half = half_archive(root, name)
    found = f"{half[0]} exists but {half[1]} does not (both splits are needed). " if half else ""
    ucr, uea = folder / "UCRArchive_2018" / name / name, folder / "Multivariate_ts" / name / name
    return (f"UCR/UEA problem {name!r}{where} is not on disk: {found}Univariate (UCR 2018): download "
            f"{UCR_ARCHIVE_ZIP} (password protected, password 'someone' as stated on {UCR_ARCHIVE_URL}) and run "
            f"'unzip -P someone UCRArchive_2018.zip -d {folder}' so that "
            f"{ucr}_TRAIN.tsv and {ucr}_TEST.tsv exist. Multivariate (UEA 2018): "
            f"download {UEA_ARCHIVE_ZIP} and run 'unzip Multivariate2018_ts.zip -d {folder}' so that "
            f"{uea}_TRAIN.ts and {uea}_TEST.ts exist. A single problem can also go "
            f"in {folder / name}/ ({name}_TRAIN.tsv, .ts or .txt). Neither archive publishes a checksum, so no "
            "sha256 is checked and only extracted folders are read. Or set DSTLIB_DATA to a folder holding ucr/.")


def _load_problem(split: str, root: Path, problem: str, normalize: str, unequal_length: str,
                  bundled_first: bool) -> TensorDataset:
    """The body of :func:`load_ucr` and :func:`load_ucr_archive`; ``bundled_first`` tries sktime's copy first."""
    checks.require(isinstance(problem, str) and _NAME_PATTERN.fullmatch(problem) is not None, "problem", problem,
                   "a UCR/UEA problem name such as 'GunPoint'")
    checks.one_of("normalize", normalize, NORMALIZATIONS)
    checks.one_of("unequal_length", unequal_length, UNEQUAL_LENGTH)

    bundled = sktime_bundled_folder(problem) if bundled_first else None
    if bundled is not None:
        source: dict[str, object] = {"sktime": str(bundled)}
    else:
        files = archive_files(root, problem)
        if files is None:
            raise DatasetNotAvailable(_missing_message(problem, root, bundled_first))
        source = {part: [str(path), path.stat().st_size, path.stat().st_mtime_ns] for part, path in files.items()}

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

    # One cache for both entries: the source (sktime's folder or the archive files) is part of the key.
    params = {"problem": problem, "normalize": normalize, "unequal_length": unequal_length, "source": source,
              "version": 1}
    tensors = cached("ucr", params, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


def load_ucr(split: str, root: Path, download: bool = False, problem: str = "GunPoint", normalize: str = "none",
             unequal_length: str = "pad") -> TensorDataset:
    """One UCR/UEA problem, sktime's bundled copy first: ``x: (N, C, L)`` float32, ``y: (N,)`` int64 in 0..K-1.

    ``normalize="none"`` (default) keeps the values as shipped; ``"series"`` z-normalises every series and
    channel on its own. Unequal-length problems (JapaneseVowels, PLAID) are zero-padded at the end, after
    normalisation, to the longest series of both splits (``unequal_length="pad"``) or rejected
    (``"error"``). ``download`` is ignored: the archives are a manual download.
    """
    del download
    return _load_problem(split, root, problem, normalize, unequal_length, bundled_first=True)


def load_ucr_archive(split: str, root: Path, download: bool = False, problem: str = "GunPoint",
                     normalize: str = "none", unequal_length: str = "pad") -> TensorDataset:
    """One problem of the UCR 2018 / UEA 2018 archive as extracted under ``root/ucr`` (never sktime's copy).

    Same options and tensors as :func:`load_ucr`: ``x: (N, C, L)`` float32, ``y: (N,)`` int64 in 0..K-1 (K classes).
    ``download`` is ignored: the archives are a manual download (no published checksum).
    """
    del download
    return _load_problem(split, root, problem, normalize, unequal_length, bundled_first=False)


register(DatasetSpec("ucr", load_ucr, "classification", None, None, True,
                     "a UCR/UEA time-series problem chosen by problem= (sktime's bundled sets offline, "
                     f"others from the archives under root/ucr/); archive: {UCR_ARCHIVE_URL}"))
register(DatasetSpec("ucr_archive", load_ucr_archive, "classification", None, None, False,
                     "a problem of the UCR 2018 / UEA 2018 archive chosen by problem=, read from the extracted "
                     f"archive under root/ucr/ (no published checksum); archives: {UCR_ARCHIVE_ZIP}, "
                     f"{UEA_ARCHIVE_ZIP}"))


NARROW_WIDTH = 5
WIDE_WIDTH = 40
MOTIF_NORM = 6.0
MOTIF_CLASSES = (2, 3, 4)


def motif_classes(num_classes: int = 4) -> tuple[tuple[int, int], ...]:
    """``(width, sign)`` of the motif of each class: ``(5, +1), (40, +1), (5, -1), (40, -1)``, the first
    ``num_classes`` of them. Classes 0 and 1 (and 2 and 3) differ only by the motif's width."""
    checks.one_of("num_classes", num_classes, MOTIF_CLASSES)
    return tuple((WIDE_WIDTH if c % 2 else NARROW_WIDTH, -1 if c >= 2 else 1) for c in range(num_classes))


def motif(width: int, sign: int) -> np.ndarray:
    """The ``(width,)`` motif: ``sign`` times one period of a sine sampled at ``t + 0.5``, L2 norm :data:`MOTIF_NORM`.

    Zero mean and antisymmetric: sign +1 is a positive lobe followed by a negative one, sign -1 the reverse.
    """
    wave = sign * np.sin(2 * np.pi * (np.arange(width) + 0.5) / width)
    return MOTIF_NORM * wave / np.linalg.norm(wave)


def load_motifs(split: str, root: Path, download: bool = False, num_series: int = 400, length: int = 128,
                noise: float = 1.0, num_classes: int = 4, seed: int = 0) -> TensorDataset:
    """Synthetic multi-scale motifs: ``x: (num_series / 2, 1, length)`` float32, ``y: (num_series / 2,)`` int64.

    How the classes are built (everything drawn from ``numpy.random.default_rng(seed)``):

    * Class ``c`` has one motif ``(width, sign) = motif_classes(num_classes)[c]``: width 5 for even ``c``,
      40 for odd ``c``; sign +1 for ``c < 2``, -1 otherwise. The motif (:func:`motif`) is one period of a
      sine (zero mean); sign -1 is the time reversal of sign +1 (the same two lobes in the other order).
      Every motif has L2 norm 6, so the narrow one is a spike (peak 3.6) and the wide one is faint (peak
      1.3), standing out of unit noise only when summed over its 40 samples.
    * Series ``i`` is ``noise * N(0, 1)`` noise of ``length`` samples plus the motif of its class, added at
      a start drawn uniformly in ``0..length - width``.
    * Labels: ``num_series / 2`` series per split, classes balanced (counts differ by at most one), in random
      order; the first half of the draws is ``"train"``, the second half ``"test"`` (a fixed split).

    Why the receptive field matters: classes 0 and 1 differ only by the width of the motif, classes 1 and
    3 only by the order of the wide motif's lobes. A window spanning both wide lobes (20-40 samples) sees
    that order with the matched-filter signal-to-noise ratio ``6 / noise``; a window of a few samples sees
    it only through the slope between the lobes, 0.21 per sample against noise of standard deviation
    ``noise``. Telling class 0 from 2 needs a resolution of a few samples. A matched filter knowing the
    four motifs classifies 99.7% of the series at ``noise=1``, ``length=128``. Generated in
    milliseconds, so not cached. ``download`` is ignored.
    """
    del download
    classes = motif_classes(num_classes)
    checks.require(checks.is_number(num_series, low=2 * num_classes, integer=True) and num_series % 2 == 0,
                   "num_series", num_series, f"an even integer >= {2 * num_classes} (2 * num_classes)")
    checks.integer("length", length, low=WIDE_WIDTH)
    checks.number("noise", noise, low=0)
    checks.integer("seed", seed, low=0)

    rng = np.random.default_rng(seed)
    half = num_series // 2
    labels = np.concatenate([rng.permutation(np.arange(half) % num_classes) for _ in SPLITS])
    x = noise * rng.standard_normal((num_series, length))
    widths = np.array([classes[label][0] for label in labels])
    starts = rng.integers(0, length - widths + 1)
    for row, (label, start) in enumerate(zip(labels, starts, strict=True)):
        width, sign = classes[label]
        x[row, start:start + width] += motif(width, sign)
    rows = {"train": slice(0, half), "test": slice(half, num_series)}[split]
    return TensorDataset(torch.from_numpy(x[rows, None].astype(np.float32)),
                         torch.from_numpy(labels[rows].astype(np.int64)))


register(DatasetSpec("motifs", load_motifs, "classification", None, None, True,
                     "synthetic multi-scale motifs: Gaussian noise with one motif of width 5 or 40 and either "
                     "lobe order; the class is (width, order), so the receptive field matters by construction"))
