"""Tests of the torch corruption suite: contracts, invariants and agreement with the reference package.

The reference is ``imagecorruptions`` 1.1.2 (which implements the ImageNet-C parameters, so it is compared
with ``params="imagenet"``), made importable by the compatibility shim of environment.md (pitfall 6),
applied here only. Test images: photographs bundled with scikit-image and sklearn digits, at 32x32.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dstlib.data.corruptions as C
from dstlib.data.corruptions import (
    CORRUPTION_FAMILIES,
    CORRUPTIONS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    corrupt,
    corrupt_all,
    frequency_ranking,
)
from dstlib.data.spectral import spectral_centroid

RANKING_PHOTOS = ("astronaut", "brick", "camera", "cat", "clock", "coffee", "coins", "grass", "gravel",
                  "immunohistochemistry", "moon", "rocket")


@functools.cache
def _photos(names: tuple[str, ...], size: int = 32) -> torch.Tensor:
    """scikit-image's bundled photographs: centre square, area-resized, 8-bit levels, RGB ``(N, 3, S, S)``."""
    import skimage.data

    images = []
    for name in names:
        image = np.asarray(getattr(skimage.data, name)())
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        h, w = image.shape[:2]
        side = min(h, w)
        square = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        tensor = torch.from_numpy(square.copy()).permute(2, 0, 1)[None].float() / 255
        images.append(F.interpolate(tensor, size=(size, size), mode="area"))
    return (torch.cat(images) * 255).round() / 255


@functools.cache
def _digits(count: int) -> torch.Tensor:
    """The first sklearn digits, bilinearly upsampled to 32x32, 8-bit levels, RGB ``(count, 3, 32, 32)``."""
    from sklearn.datasets import load_digits

    digits = torch.tensor(load_digits().images[:count], dtype=torch.float32)[:, None] / 16
    digits = F.interpolate(digits, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    return ((digits * 255).round() / 255).repeat(1, 3, 1, 1)


def _images() -> torch.Tensor:
    """4 photographs and 2 digits: ``(6, 3, 32, 32)``."""
    return torch.cat([_photos(("astronaut", "cat", "coffee", "rocket")), _digits(2)])


@functools.lru_cache(maxsize=1)
def _reference():
    """``imagecorruptions`` with the compat shim: ``pkg_resources``, ``np.float_``, ``multichannel``."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: os.path.join(
            os.path.dirname(importlib.util.find_spec(package).origin), name)
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # noqa: NPY201 - the alias the reference still uses
    with warnings.catch_warnings():  # it imports scipy.ndimage.interpolation, deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        import imagecorruptions
        import imagecorruptions.corruptions as module
    from skimage.filters import gaussian

    def gaussian_compat(image, sigma=1, multichannel=None, **options):
        if multichannel:
            options["channel_axis"] = -1
        return gaussian(image, sigma=sigma, **options)

    module.gaussian = gaussian_compat
    return imagecorruptions, module


def _reference_corrupt(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """The reference on ``images`` ``(N, 3, H, W)`` (as uint8), back as float ``(N, 3, H, W)``."""
    package, _ = _reference()
    np.random.seed(seed)  # noqa: NPY002 - the reference draws from numpy's global generator
    arrays = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
    out = np.stack([package.corrupt(a, severity=severity, corruption_name=name) for a in arrays])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, ...)`` tensors in [0, 1]."""
    mse = (a - b).double().pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-20))


# ----------------------------------------------------------------------------------------------- contracts

def test_names_and_families():
    assert len(CORRUPTIONS) == len(set(CORRUPTIONS)) == 15
    members = [name for family in CORRUPTION_FAMILIES.values() for name in family]
    assert sorted(members) == sorted(CORRUPTIONS)
    assert set(CORRUPTION_FAMILIES) == {"noise", "blur", "weather", "digital"}
    assert set(RANDOM_CORRUPTIONS) < set(CORRUPTIONS)


@pytest.mark.parametrize("kwargs, parameter", [
    ({"name": "rain"}, "name="),
    ({"severity": 0}, "severity="),
    ({"severity": 6}, "severity="),
    ({"severity": True}, "severity="),
    ({"params": "tiny"}, "params="),
    ({"seed": -1}, "seed="),
    ({"images": torch.rand(3, 32, 32)}, "images.shape="),
    ({"images": torch.rand(1, 2, 32, 32)}, "images.shape[1]="),
    ({"images": torch.rand(1, 3, 31, 32)}, "images.shape[2:]="),
    ({"images": torch.rand(1, 3, 32, 16)}, "images.shape[2:]="),
    ({"images": torch.full((1, 3, 32, 32), 1.5)}, "values"),
    ({"images": torch.full((1, 3, 32, 32), -0.1)}, "values"),
    ({"images": torch.zeros((1, 3, 32, 32), dtype=torch.uint8)}, "images.dtype="),
    ({"images": np.zeros((1, 3, 32, 32))}, "images="),
])
def test_bad_input_raises_value_error_naming_the_parameter(kwargs, parameter):
    arguments = {"images": torch.rand(1, 3, 32, 32), "name": "fog", "severity": 1} | kwargs
    images = arguments.pop("images")
    with pytest.raises(ValueError, match="allowed") as error:
        corrupt(images, **arguments)
    assert parameter in str(error.value)
    with pytest.raises(ValueError, match="allowed"):
        corrupt_all(images, names=[arguments["name"]], severities=[arguments["severity"]],
                    seed=arguments.get("seed", 0), params=arguments.get("params", "cifar"))


@pytest.mark.parametrize("params", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_range_device(name, params):
    rgb = torch.rand(2, 3, 32, 40)  # non-square
    grey = _digits(1)[:, :1]
    for images in (rgb, grey, rgb.double()):
        out = corrupt(images, name, 5, params=params)
        assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(corrupt(rgb, name, 5, params=params), rgb)  # it did something


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_by_seed(name):
    images = _images()[:3]
    first, again = corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=7)
    assert torch.equal(first, again)
    other = corrupt(images, name, 3, seed=8)
    assert torch.equal(first, other) == (name not in RANDOM_CORRUPTIONS)


def _change(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    return float((corrupted - clean).abs().mean())


def _decorrelation(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    """1 - Pearson correlation of each corrupted image with its clean image, averaged."""
    a = clean.flatten(1) - clean.flatten(1).mean(1, keepdim=True)
    b = corrupted.flatten(1) - corrupted.flatten(1).mean(1, keepdim=True)
    return float((1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)).mean())


def _locality(clean: torch.Tensor, corrupted: torch.Tensor) -> float:
    return float(spectral_centroid(corrupted - clean).mean())


def _more_shuffling(params: str) -> tuple[tuple[int, int], ...]:
    """Severity pairs of glass_blur whose (sigma, max shift, iterations) grow, the shuffling strictly."""
    table = dict(zip(SEVERITIES, C._TABLES[params]["glass_blur"], strict=True))
    return tuple((a, b) for a in SEVERITIES for b in SEVERITIES
                 if all(y >= x for x, y in zip(table[a], table[b], strict=True))
                 and table[b][1:] != table[a][1:])


CONSECUTIVE = tuple(zip(SEVERITIES, SEVERITIES[1:], strict=False))
# Which measure grows with severity, and between which severities. Mean |corrupted - clean| by default.
# Exceptions, where Hendrycks' tables are not monotone in pixel change (checked on these images under
# mean |change|, 1 - SSIM and 1 - correlation alike, so it is the table, not the implementation):
# * frost, fog: they blend the image with a layer; the tables raise the layer's weight relative to the
#   image's, but frost severity 4 lowers the image weight at an equal frost weight (the image gets darker,
#   the change smaller). 1 - correlation with the clean image (how much of the image is left) grows.
# * elastic_transform, "cifar": the random affine jitter shrinks (8% -> 3% of the side) while the local
#   displacement grows, so the change shrinks and only its locality grows: the spectral centroid of the
#   change.
# * glass_blur: a wider Gaussian also smooths the shuffled pixels back towards the image, and the tables
#   trade blur width, shift distance and iterations against each other ("cifar" 3 and 5 change an image
#   less than 2 and 4; "imagenet" 3 more than 4). Between two severities with at least as wide a blur,
#   at least as large shifts and at least as many iterations, and more shuffling, the change grows.
# * snow, "imagenet": severity 3 raises the flake threshold from 0.5 to 0.9, so it can change an image less
#   than severity 2; every other step grows.
MONOTONE = {
    ("cifar", "frost"): (_decorrelation, CONSECUTIVE),
    ("imagenet", "frost"): (_decorrelation, CONSECUTIVE),
    ("cifar", "fog"): (_decorrelation, CONSECUTIVE),
    ("imagenet", "fog"): (_decorrelation, CONSECUTIVE),
    ("cifar", "elastic_transform"): (_locality, CONSECUTIVE),
    **{(params, "glass_blur"): (_change, _more_shuffling(params)) for params in ("cifar", "imagenet")},
    ("imagenet", "snow"): (_change, ((1, 2), (1, 3), (2, 4), (3, 4), (4, 5))),
}


@pytest.mark.parametrize("params", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_monotone(name, params):
    images = _images()
    measure, pairs = MONOTONE.get((params, name), (_change, CONSECUTIVE))
    value = {s: np.mean([measure(images, corrupt(images, name, s, seed=seed, params=params))
                         for seed in (0, 1)]) for s in SEVERITIES}
    for weaker, stronger in pairs:
        assert value[stronger] >= value[weaker] - 1e-6, (weaker, stronger, value)
    assert value[5] > value[1]


# ------------------------------------------------------------------------------- agreement with reference

# The reference truncates its float result to uint8 (about -0.5/255 on average, alone worth ~53 dB), so
# the deterministic corruptions must agree to >= 45 dB on every image and severity. JPEG: libjpeg's integer
# DCT can round a coefficient that lies within ~0.002 of a quantisation boundary the other way, which
# changes a whole 8x8 block by a quantisation step (up to ~20 levels at quality 7); such blocks are rare
# (measured worst image 38.6 dB, median above 50 dB), so every image must reach 33 dB and the median 45 dB.
@pytest.mark.parametrize("name, worst, median", [
    ("brightness", 45, 45), ("contrast", 45, 45), ("defocus_blur", 45, 45), ("zoom_blur", 45, 45),
    ("pixelate", 45, 45), ("jpeg_compression", 33, 45),
])
def test_deterministic_corruptions_match_reference(name, worst, median):
    images = _images()
    for severity in SEVERITIES:
        psnr = _psnr(corrupt(images, name, severity, params="imagenet"),
                     _reference_corrupt(images, name, severity, seed=0))
        assert float(psnr.min()) >= worst and float(psnr.median()) >= median, (severity, psnr)


def test_jpeg_grey_matches_pillow():
    from io import BytesIO

    from PIL import Image

    images = _photos(("camera", "coins", "moon"))[:, :1]
    for severity, quality in enumerate(C._TABLES["cifar"]["jpeg_compression"], start=1):
        decoded = []
        for image in (images[:, 0] * 255).round().byte().numpy():
            buffer = BytesIO()
            Image.fromarray(image, mode="L").save(buffer, "JPEG", quality=quality)
            decoded.append(np.asarray(Image.open(buffer), dtype=np.float32) / 255)
        reference = torch.from_numpy(np.stack(decoded))[:, None]
        assert float(_psnr(corrupt(images, "jpeg_compression", severity), reference).min()) >= 33


@pytest.mark.parametrize("radius, sigma", [(6, 1.0), (9, 2.5), (15, 8.0), (20, 15.0)])
def test_motion_blur_kernel_matches_reference(radius, sigma):
    """The line kernel, offsets, border handling and early stop (radius 20 on 32 pixels) at fixed angles."""
    _, module = _reference()
    images = _images()[:4] * 255
    angles = torch.tensor([-44.0, -10.3, 0.0, 37.5])
    ours = C._motion_blur(images, radius, sigma, angles).permute(0, 2, 3, 1).double().numpy()
    for i in range(4):
        image = images[i].permute(1, 2, 0).double().numpy()
        expected = module._motion_blur(image, radius, sigma, float(angles[i]))
        np.testing.assert_allclose(ours[i], expected, atol=1e-3)


def test_affine_warp_matches_opencv():
    """The affine step of the "cifar" elastic transform, against OpenCV's warpAffine (BORDER_REFLECT_101)."""
    import cv2

    images = _images()[:4]
    matrix = np.array([[1.05, 0.08, -1.5], [-0.06, 0.97, 2.0]], dtype=np.float32)
    expected = np.stack([cv2.warpAffine(image.permute(1, 2, 0).numpy(), matrix, (32, 32),
                                        borderMode=cv2.BORDER_REFLECT_101) for image in images])
    inverse = torch.from_numpy(cv2.invertAffineTransform(matrix).T.copy()).expand(4, 3, 2)
    ours = C._affine_warp(images, inverse).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_snow_zoom_at_cifar_severity_4_keeps_the_centre_window():
    """Zoom 2.25 of 32 samples: the centre 15 (8..22) spread over 34 points ``8 + 14 k / 33``; make_cifar_c.py
    keeps points 1..32 (a centred trim), imagecorruptions points 0..31."""
    zoom = C._TABLES["cifar"]["snow"][3][2]
    assert zoom == 2.25
    ramp = torch.arange(32, dtype=torch.float32)
    k = torch.arange(32, dtype=torch.float32)
    torch.testing.assert_close(C._zoom_matrix(32, zoom, "centre") @ ramp, 8 + 14 * (k + 1) / 33)
    torch.testing.assert_close(C._zoom_matrix(32, zoom, "start") @ ramp, 8 + 14 * k / 33)


@pytest.mark.parametrize("size", [32, 45])
@pytest.mark.parametrize("factor", [1.0, 1.03, 1.25, 1.75, 2.25, 4.5])
def test_zoom_matrix_is_scipy_zoom_of_the_centre_crop_in_each_references_window(size, factor):
    """Crop ``ceil(size / factor)`` centre samples, scipy's linear zoom; the centre window ("cifar") or the
    first ``size`` samples ("imagenet")."""
    from scipy.ndimage import zoom

    values = np.random.default_rng(0).random(size)
    crop = int(np.ceil(size / factor))
    top = (size - crop) // 2
    zoomed = zoom(values[top:top + crop], factor, order=1)
    trim = (len(zoomed) - size) // 2
    for window, expected in (("centre", zoomed[trim:trim + size]), ("start", zoomed[:size])):
        ours = C._zoom_matrix(size, factor, window).double().numpy() @ values
        np.testing.assert_allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("params, scale", [("cifar", 0.2), ("imagenet", 1.1)])
def test_frost_layers_match_opencv(params, scale):
    """The frost photographs resized as make_cifar_c.py (fx=0.2, linear), imagecorruptions (1.1, cubic)."""
    import cv2

    package, _ = _reference()
    folder = os.path.join(os.path.dirname(package.__file__), "frost")
    for name, layer in zip(C._FROST_FILES, C._frost_layers(scale, 32, 32), strict=True):
        photo = cv2.imread(os.path.join(folder, name))
        if scale < 1:
            expected = cv2.resize(photo, (0, 0), fx=scale, fy=scale)
        else:
            size = (int(np.ceil(photo.shape[1] * scale)), int(np.ceil(photo.shape[0] * scale)))
            expected = cv2.resize(photo, dsize=size, interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(layer.permute(1, 2, 0).numpy(), expected[..., ::-1], atol=1)


def test_frost_blends_a_window_of_a_frost_photograph():
    """On black images, frost returns ``weight * crop``: every crop is a window of one of the five photos."""
    import cv2

    image_weight, frost_weight, scale = C._TABLES["imagenet"]["frost"][4]
    out = corrupt(torch.zeros(6, 3, 32, 32), "frost", 5, params="imagenet", seed=3)
    layers = [layer.permute(1, 2, 0).numpy().astype(np.float32) for layer in C._frost_layers(scale, 32, 32)]
    for crop in (out * 255 / frost_weight).permute(0, 2, 3, 1).numpy().astype(np.float32):
        best = min(float(cv2.matchTemplate(layer, crop, cv2.TM_SQDIFF).min()) for layer in layers)
        assert best / crop.size < 0.01  # mean squared difference in 8-bit levels: float rounding only


# Random corruptions: the same statistics from both, over several draws. For every severity, the mean
# (over draws) of each image's mean |change| and of each image's spectral centroid of the change (where the
# change sits in frequency) must agree within 4 standard errors of the difference of the two means, plus
# a floor for the reference's uint8 truncation: 0.004 on the change, 2% on the centroid.
FLOORS = {"change": (0.004, 0.0), "centroid": (0.0, 0.02)}  # (absolute, relative to the reference)


def _statistics(corrupted: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    change = (corrupted - clean).double()
    return {"change": change.abs().flatten(1).mean(1), "centroid": spectral_centroid(change)}


@pytest.mark.parametrize("name, images, draws", [
    ("gaussian_noise", 6, 3), ("shot_noise", 6, 3), ("impulse_noise", 6, 3), ("motion_blur", 6, 4),
    ("snow", 6, 4), ("fog", 6, 4), ("elastic_transform", 6, 3), ("glass_blur", 2, 3), ("frost", 6, 6),
])
def test_random_corruptions_match_reference_statistics(name, images, draws):
    clean = _images()[:images]
    repeated = clean.repeat(draws, 1, 1, 1)
    for severity in SEVERITIES:
        ours = torch.cat([corrupt(clean, name, severity, seed=d, params="imagenet") for d in range(draws)])
        reference = torch.cat([_reference_corrupt(clean, name, severity, seed=d) for d in range(draws)])
        ours, reference = _statistics(ours, repeated), _statistics(reference, repeated)
        for statistic, (absolute, relative) in FLOORS.items():
            a, b = ours[statistic], reference[statistic]
            error = float(torch.sqrt(a.var() / len(a) + b.var() / len(b)))
            gap = abs(float(a.mean() - b.mean()))
            bound = 4 * error + absolute + relative * float(b.mean())
            assert gap <= bound, (severity, statistic, float(a.mean()), float(b.mean()), error)


# ---------------------------------------------------------------------------------- corrupt_all and order

def test_corrupt_all_matches_corrupt_and_caches(tmp_path, monkeypatch):
    images = _images()[:2]
    names, severities = ("fog", "pixelate"), (1, 4)
    results = corrupt_all(images, names, severities, seed=3, cache_dir=tmp_path)
    assert sorted(results) == [(n, s) for n in names for s in severities]
    for (name, severity), out in results.items():
        expected = torch.round(corrupt(images, name, severity, seed=3) * 255) / 255
        assert out.dtype == images.dtype and torch.allclose(out, expected, atol=1e-6)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # one file, no temporary left behind

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(C, "corrupt", fail)
    cached = corrupt_all(images, names, severities, seed=3, cache_dir=tmp_path)
    assert all(torch.equal(cached[key], results[key]) for key in results)
    with pytest.raises(AssertionError, match="recomputed"):  # another seed is another key
        corrupt_all(images, names, severities, seed=4, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="recomputed"):  # other images are another key
        corrupt_all(images.flip(0), names, severities, seed=3, cache_dir=tmp_path)


def test_corruptions_are_ordered_by_measured_frequency():
    """The measurement behind the order of CORRUPTIONS, recomputed; ties within 0.2 index units allowed."""
    ranking = frequency_ranking(_photos(RANKING_PHOTOS), seed=0, params="cifar").set_index("name")
    centroids = ranking.loc[list(CORRUPTIONS), "centroid"].to_numpy()
    assert np.all(np.diff(centroids) >= -0.2), dict(zip(CORRUPTIONS, centroids.round(2), strict=True))
    low, high = set(CORRUPTIONS[:5]), set(CORRUPTIONS[-5:])
    assert {"fog", "contrast", "brightness"} <= low
    assert {"gaussian_noise", "shot_noise", "impulse_noise"} <= high
