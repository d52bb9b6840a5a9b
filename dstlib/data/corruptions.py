"""The 15 common corruptions of Hendrycks & Dietterich (ICLR 2019), batched in torch on CPU or GPU.

``corrupt(images, name, severity)`` corrupts a whole batch ``(N, C, H, W)`` (``C`` = 1 or 3, ``H, W >= 32``,
floating point in ``[0, 1]``) on the device of ``images`` and returns a tensor of the same shape, dtype and
device, in ``[0, 1]``. The work is done in float32 with depthwise convolutions, ``grid_sample``, gathers
and matrix products on the device of ``images``.

Randomness: every random number comes from a CPU ``torch.Generator`` seeded with ``seed`` and is then
moved to the device (shot noise draws its Poisson counts on the CPU), so a seed gives the same corruption
on CPU and GPU (GPU float arithmetic can still differ in the last bits). Images are corrupted
independently, but the draws are made for the whole batch at once, so image ``i``'s noise depends on the
batch it came in.

Parameter tables (``params``):

* ``"cifar"`` (default): the parameters of ``make_cifar_c.py`` in Hendrycks' ``robustness`` repository,
  which produced CIFAR-10-C and CIFAR-100-C (32x32 images).
* ``"imagenet"``: the parameters of ``make_imagenet_c.py`` as implemented for arbitrary image sizes by
  the ``imagecorruptions`` package (Michaelis et al., 2019). Where that package departs from
  ``make_imagenet_c.py`` we follow the package: ``elastic_transform`` (the package's own size-relative
  version: no affine step, displacement ``250 * a * 0.005 * H`` smoothed with sigma ``0.01 * side``),
  ``frost`` (the photograph is enlarged 1.1x, more if the image is bigger) and ``motion_blur``/``snow``
  (the package's numpy version of ImageMagick's motion blur, which stops adding taps once a shift
  leaves the image).

Faithfulness, corruption by corruption (differences to the reference code are listed; all else follows
it). The references also truncate every result to uint8 (``np.uint8``, about -0.5/255 on average); we
return floats (:func:`corrupt_all` rounds to 8-bit levels).

* ``gaussian_noise``, ``shot_noise`` (Poisson), ``impulse_noise`` (salt and pepper per value, as
  ``skimage.util.random_noise``), ``brightness`` (the value channel of HSV raised, computed in RGB as
  ``x * V' / V``, exact), ``contrast``, ``pixelate`` (Pillow's BOX down-sampling and its nearest
  up-sampling reproduced as resampling matrices), ``defocus_blur`` (the same anti-aliased disk kernel,
  mirrored borders), ``zoom_blur`` (the same centre crops, bilinear zooms and averaging) and ``fog`` (the
  same diamond-square plasma fractal, map size the next power of two >= the image side): the same
  computation, with float outputs where the references round to 8 bits at intermediate steps.
* ``glass_blur``: the same Gaussian blurs and the same sequential local "swaps", raster order from the
  bottom-right, shifts in ``[-d, d - 1]``. In the references a swap assigns numpy views of RGB pixels and
  so *copies* the neighbour's value (the neighbour keeps its own); CIFAR-10-C and ImageNet-C were made
  that way and we reproduce it. The copies run as an index map for the whole batch, applied with one
  gather.
* ``motion_blur``: the references call ImageMagick's ``MotionBlurImage`` through Wand (CIFAR/ImageNet-C)
  or a numpy port of it (``imagecorruptions``). We implement the same one-sided Gaussian line kernel of
  ``2 * radius + 1`` taps, offsets rounded like ImageMagick's, edge pixels repeated; the random angle is
  drawn per image. This equals ``imagecorruptions``' port to float precision, including its early stop
  once a shift reaches the image size (which the "cifar" table never triggers on images >= 32 pixels);
  ImageMagick's own 8-bit quantisation is not reproduced.
* ``snow``: the same recipe (Gaussian snow layer, zoom, threshold, motion blur as above at an angle in
  [-135, -45] degrees, rounded to 8 bits, added with its 180-degree rotation, image brightened towards
  ``1.5 * grey + 0.5``); only the motion blur differs, as above. A zoomed layer longer than the image is
  trimmed as each reference does: centred for "cifar" (``make_cifar_c.py``), its start kept for "imagenet".
* ``frost``: blends the image with a random crop of one of the first five frost photographs bundled with
  the installed ``imagecorruptions`` package (``imagecorruptions/frost/frost1.png`` ...; the references pick
  among the first five of the six as well). Those files are read offline from the package's folder; the
  package must be installed. The photograph is resized with ``max(s, 1.1 H / h, 1.1 W / w)`` where ``s``
  is 0.2 (cifar, as ``make_cifar_c.py``) or 1.1 (imagenet, as ``imagecorruptions``), bilinear when
  shrinking and bicubic when enlarging, as the references' OpenCV calls.
* ``elastic_transform``: the random affine warp (cifar; mirrored borders as OpenCV's
  ``BORDER_REFLECT_101``) then the smoothed random displacement field (half-sample mirrored borders as
  scipy's ``reflect``), both bilinear with ``grid_sample``. Sizes in the cifar table are fractions of the
  image side (32 in Hendrycks' script), so other sizes scale.
* ``jpeg_compression``: a JPEG codec written in torch with libjpeg's choices as Pillow uses them:
  8-bit samples, YCbCr with 4:2:0 chroma (box down-sampling, "fancy" bilinear up-sampling), the standard
  quantisation tables scaled by ``quality`` as ``jpeg_set_quality``, 8x8 orthonormal DCT, rounding to the
  nearest; edge pixels repeated to a multiple of 16. libjpeg's integer DCT and fixed-point colour
  conversion are replaced by float arithmetic.

Grey images (``C = 1``) are corrupted as grey images (``brightness`` adds to the grey level, ``snow``
brightens towards ``1.5 * x + 0.5``, ``frost`` uses the luminance of the photograph, JPEG codes one
component), where ``imagecorruptions`` would return RGB.

:data:`CORRUPTIONS` is ordered from low to high frequency content by a measurement, not copied from a
paper: see its comment.

Checked in ``tests/test_corruptions.py`` against ``imagecorruptions`` 1.1.2 (``params="imagenet"``, same
32x32 photographs and digits): brightness, contrast, defocus, zoom and pixelate agree to >= 45 dB PSNR on
every image (measured 51-57 dB: the reference's uint8 truncation), JPEG to >= 33 dB (measured worst 38.6
dB, median above 50 dB: libjpeg's integer DCT rounds a few near-tie coefficients the other way); the
random ones agree in mean absolute change and in the spectral centroid of the change (within 4 standard
errors over several draws); the motion-blur kernel, the affine warp and the resized frost photographs
match the reference code, OpenCV's ``warpAffine`` and ``resize`` to float precision.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dstlib import checks
from dstlib.atomic import torch_save
from dstlib.data.spectral import spectral_centroid

SEVERITIES = (1, 2, 3, 4, 5)
PARAM_TABLES = ("cifar", "imagenet")
MIN_SIZE = 32
CACHE_VERSION = 2  # bump when an implementation changes, so corrupt_all's caches are rebuilt

CORRUPTION_FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}

# Low to high frequency content. We could not confirm the order of Figure 3 of the DST-robustness paper
# (nor Saikia et al., 2021, whose ordering it is said to follow), so this order is a measurement:
# corruptions sorted by the spectral centroid (energy-weighted mean frequency radius,
# :func:`dstlib.data.spectral.spectral_centroid`) of ``corrupted - clean``, averaged over severities 1-5
# and images, "cifar" table, seed 0, on 12 photographs bundled with scikit-image (astronaut, brick, camera,
# cat, clock, coffee, coins, grass, gravel, immunohistochemistry, moon, rocket; centre square, area-resized
# to 32x32). :func:`frequency_ranking` computes it and ``tests/test_corruptions.py`` checks it. Measured
# centroids (index units, corner = 22.6): brightness 0.1, frost 0.6, snow 1.6, fog 1.8, contrast 5.8, motion
# 8.1, zoom 8.2, elastic 8.4, glass 10.1, jpeg 11.8, defocus 12.2, the three noises 12.2-12.3, pixelate 12.5;
# the gaps inside the last group are small (its order can change with other images or seeds). It is
# consistent with Yin et al. (2019), who find noise and blur concentrated in high frequencies and fog and
# contrast in low frequencies.
CORRUPTIONS: tuple[str, ...] = (
    "brightness", "frost", "snow", "fog", "contrast", "motion_blur", "zoom_blur", "elastic_transform",
    "glass_blur", "jpeg_compression", "defocus_blur", "impulse_noise", "gaussian_noise", "shot_noise",
    "pixelate",
)

# One entry per severity 1..5. Zoom blur: (start, stop, step) of numpy's arange of zoom factors.
# Snow: (mean, std, zoom, threshold, blur radius, blur sigma, image weight). Frost: (image weight,
# frost weight, photograph scale). Fog: (strength, fractal decay). Glass: (sigma, max shift, iterations).
# Defocus: (disk radius, anti-alias sigma). Motion: (radius, sigma). Elastic: (displacement, smoothing
# sigma, affine jitter) as fractions of the image side.
_TABLES: dict[str, dict[str, tuple[Any, ...]]] = {
    "cifar": {
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01),
                      (1, 1.26, 0.01)),
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        "frost": ((1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2),
                  (0.75, 0.45, 0.2)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                              (0.1, 0.03, 0.03)),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
    },
    "imagenet": {
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                      (1, 1.31, 0.03)),
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                 (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                 (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        "frost": ((1, 0.4, 1.1), (0.8, 0.6, 1.1), (0.7, 0.7, 1.1), (0.65, 0.7, 1.1),
                  (0.6, 0.75, 1.1)),
        "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        "elastic_transform": tuple((250 * a * 0.005, 0.01, 0.0)
                                   for a in (0.05, 0.065, 0.085, 0.1, 0.12)),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
    },
}
# Which ``size`` samples of a zoomed layer that came out longer than the image the references keep (see
# :func:`_zoom_matrix`): ``make_cifar_c.py``'s ``clipped_zoom`` trims both ends ("centre"), the
# ``imagecorruptions`` callers cut the end off ("start"). They differ only for zoom factors of 1.5 and more,
# i.e. for snow (CIFAR severity 4: zoom 2.25 gives 34 samples for 32, of which the reference keeps 1..32).
_ZOOM_WINDOWS = {"cifar": "centre", "imagenet": "start"}
_ZOOMING = ("zoom_blur", "snow")
_FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as OpenCV's RGB2GRAY and JPEG


# ----------------------------------------------------------------------------------------------- helpers

def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def _grey(images: torch.Tensor) -> torch.Tensor:
    """Luma ``(N, 1, H, W)`` of RGB images (or the grey images themselves)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(_GREY_WEIGHTS, device=images.device, dtype=images.dtype)
    return torch.einsum("nchw,c->nhw", images, weights).unsqueeze(1)


def _padded_indices(size: int, pad: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source index of each of ``size + 2 * pad`` padded positions.

    ``mode``: ``"edge"`` repeats the border pixel, ``"reflect101"`` mirrors about it (OpenCV's default,
    torch's ``reflect``), ``"symmetric"`` mirrors including it (scipy's ``reflect``).
    """
    index = torch.arange(-pad, size + pad, device=device)
    if mode == "edge" or size == 1:
        return index.clamp(0, size - 1)
    period = 2 * size if mode == "symmetric" else 2 * size - 2
    index = index.remainder(period)
    mirrored = period - 1 - index if mode == "symmetric" else period - index
    return torch.where(index >= size, mirrored, index)


def _filter2d(images: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every plane of ``images`` ``(N, C, H, W)`` with ``kernel`` ``(kh, kw)`` (odd sizes)."""
    n, c, h, w = images.shape
    kh, kw = kernel.shape
    rows = _padded_indices(h, kh // 2, mode, images.device)
    cols = _padded_indices(w, kw // 2, mode, images.device)
    padded = images.index_select(2, rows).index_select(3, cols).reshape(1, n * c, h + kh - 1, w + kw - 1)
    weight = kernel.to(images)[None, None].expand(n * c, 1, kh, kw)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)  # depthwise: much faster on CPU


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    if sigma <= 0 or radius == 0:
        return torch.ones(1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _gaussian_blur(images: torch.Tensor, sigma_h: float, sigma_w: float, truncate: float,
                   mode: str) -> torch.Tensor:
    """Separable Gaussian blur with scipy's kernel radius ``int(truncate * sigma + 0.5)``."""
    ky = _gaussian_kernel(sigma_h, int(truncate * sigma_h + 0.5))
    kx = _gaussian_kernel(sigma_w, int(truncate * sigma_w + 0.5))
    return _filter2d(_filter2d(images, ky[:, None], mode), kx[None, :], mode)


def _arange(start: float, stop: float, step: float) -> list[float]:
    """numpy's float64 ``arange``, bit for bit: ``ceil((stop - start) / step)`` values (which can include
    ``stop``), ``start + i * delta`` with ``delta = (start + step) - start``."""
    delta = (start + step) - start
    return [start + i * delta for i in range(math.ceil((stop - start) / step))]


def _zoom_matrix(size: int, factor: float, window: str) -> torch.Tensor:
    """The references' ``clipped_zoom`` along one axis as a ``(size, size)`` matrix.

    Crop the centre ``ceil(size / factor)`` samples, zoom them linearly on scipy's corner-aligned grid to
    ``zoomed = round(crop * factor)`` samples (``>= size``) and keep ``size`` of them: from offset
    ``(zoomed - size) // 2`` with ``window="centre"`` (``make_cifar_c.py``), from offset 0 with
    ``window="start"`` (``imagecorruptions``). See :data:`_ZOOM_WINDOWS`.
    """
    crop = math.ceil(size / factor)
    start = (size - crop) // 2
    rows = torch.eye(size, dtype=torch.float64)[start:start + crop].T[None]  # (1, size, crop)
    zoomed = F.interpolate(rows, size=round(crop * factor), mode="linear", align_corners=True)[0]
    offset = (zoomed.shape[1] - size) // 2 if window == "centre" else 0
    return zoomed.T[offset:offset + size].float()


def _zoom_sum(images: torch.Tensor, factors: list[float], window: str) -> torch.Tensor:
    """Sum over ``factors`` of the centre zooms of ``images`` ``(N, C, H, W)``: ``sum_z A_z X B_z^T``.

    ``window`` as in :func:`_zoom_matrix`. The rows are put first, ``(H, N * C * W)``, so every product is
    one large matrix multiplication.
    """
    n, c, h, w = images.shape
    planes = images.permute(2, 0, 1, 3).reshape(h, n * c * w)
    total = torch.zeros((h * n * c, w), dtype=images.dtype, device=images.device)
    for factor in factors:
        rows, cols = _zoom_matrix(h, factor, window).to(images), _zoom_matrix(w, factor, window).to(images)
        total += (rows @ planes).view(h * n * c, w) @ cols.T
    return total.view(h, n, c, w).permute(1, 2, 0, 3)


def _motion_blur(images: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur of ``images`` ``(N, C, H, W)`` along ``angles`` ``(N,)`` (degrees).

    Tap ``i`` (0 .. 2 * radius) samples the image ``i`` pixels along the angle (offsets rounded as
    ImageMagick, borders repeated) with weight ``exp(-i^2 / (2 sigma^2))``, normalised over all taps;
    like ``imagecorruptions`` the taps stop once an offset reaches the image size.
    """
    n, c, h, w = images.shape
    width = 2 * radius + 1
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    radians = torch.deg2rad(angles.double().cpu())
    dy = -torch.ceil(taps[:, None] * torch.sin(radians)[None, :] - 0.5).long()  # (taps, N)
    dx = -torch.ceil(taps[:, None] * torch.cos(radians)[None, :] - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(0).bool()  # stop at the first tap outside
    tap_weights = (weights[:, None] * inside).float().to(images.device)
    rows = (torch.arange(h) - dy[:, :, None]).clamp(0, h - 1).to(images.device)  # (taps, N, H)
    cols = (torch.arange(w) - dx[:, :, None]).clamp(0, w - 1).to(images.device)  # (taps, N, W)
    flat = images.flatten(2)
    out = torch.zeros_like(flat)
    for i in range(int(inside.any(1).sum())):
        sources = (rows[i][:, :, None] * w + cols[i][:, None, :]).flatten(1)  # (N, H*W)
        out += tap_weights[i][:, None, None] * flat.gather(2, sources[:, None, :].expand(n, c, h * w))
    return out.view(n, c, h, w)


# ------------------------------------------------------------------------------------------ corruptions

def _gaussian_noise(x: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    return (x + scale * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)


def _shot_noise(x: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    counts = torch.poisson((x * photons).cpu(), generator=generator).to(x.device)
    return (counts / photons).clamp(0, 1)


def _impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    flipped = (torch.rand(x.shape, generator=generator) < amount).to(x.device)
    salt = (torch.rand(x.shape, generator=generator) < 0.5).to(x.device)
    return torch.where(flipped, salt.to(x.dtype), x)


def _disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """The references' anti-aliased disk: a binary disk, normalised, blurred by a 3x3 (5x5) Gaussian."""
    half = 8 if radius <= 8 else int(radius)
    coords = torch.arange(-half, half + 1, dtype=torch.float32)
    disk = ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius ** 2).float()
    disk = disk / disk.sum()
    size = 3 if radius <= 8 else 5
    blur = _gaussian_kernel(alias_sigma, size // 2)
    kernel = _filter2d(disk[None, None], blur[:, None], "reflect101")
    kernel = _filter2d(kernel, blur[None, :], "reflect101")[0, 0]
    support = int(kernel.abs().sum(0).nonzero().max()) - half  # trim the all-zero border (exact)
    return kernel[half - support:half + support + 1, half - support:half + support + 1]


def _defocus_blur(x: torch.Tensor, param: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    del generator
    return _filter2d(x, _disk_kernel(*param), "reflect101").clamp(0, 1)


def _glass_blur(x: torch.Tensor, param: tuple[float, int, int], generator: torch.Generator) -> torch.Tensor:
    sigma, delta, iterations = param
    n, c, h, w = x.shape
    blurred = torch.floor(_gaussian_blur(x, sigma, sigma, 4.0, "edge") * 255) / 255  # np.uint8 truncates
    positions = [(r, col) for r in range(h - delta, delta, -1) for col in range(w - delta, delta, -1)]
    here = torch.tensor([r * w + col for r, col in positions])
    shifts = torch.randint(-delta, delta, (iterations, len(positions), 2, n), generator=generator)
    there = (here[None, :, None] + shifts[:, :, 1] * w + shifts[:, :, 0]).numpy()  # (iterations, steps, N)
    # The references' "swap" ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` assigns numpy views of RGB
    # pixels, so it copies: (h, w) takes the current value of (h2, w2), which keeps its own. The copies
    # are sequential (a value can travel several steps), so they run as a loop over positions, each step
    # for the whole batch on an index map; numpy indexing keeps these tiny steps cheap.
    source = np.tile(np.arange(h * w)[:, None], (1, n))  # (H*W, N): original pixel now at each position
    batch = np.arange(n)
    for iteration in range(iterations):
        for step, position in enumerate(here.tolist()):
            source[position] = source[there[iteration, step], batch]
    index = torch.from_numpy(source.T.copy()).to(x.device)[:, None, :].expand(n, c, h * w)
    shuffled = blurred.flatten(2).gather(2, index).reshape(n, c, h, w)
    return _gaussian_blur(shuffled, sigma, sigma, 4.0, "edge").clamp(0, 1)


def _motion_blur_corruption(x: torch.Tensor, param: tuple[int, float],
                            generator: torch.Generator) -> torch.Tensor:
    angles = _uniform(generator, (x.shape[0],), -45.0, 45.0)
    return _motion_blur(x, param[0], param[1], angles).clamp(0, 1)


def _zoom_blur(x: torch.Tensor, param: tuple[float, float, float], generator: torch.Generator, *,
               window: str) -> torch.Tensor:
    del generator
    factors = _arange(*param)
    return ((x + _zoom_sum(x, factors, window)) / (len(factors) + 1)).clamp(0, 1)


def _snow(x: torch.Tensor, param: tuple[float, ...], generator: torch.Generator, *, window: str) -> torch.Tensor:
    mean, std, zoom, threshold, radius, sigma, weight = param
    n, _, h, w = x.shape
    layer = (mean + std * torch.randn((n, 1, h, w), generator=generator)).to(x.device)
    layer = _zoom_sum(layer, [zoom], window)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = _uniform(generator, (n,), -135.0, -45.0)
    layer = torch.round(_motion_blur(layer, radius, sigma, angles) * 255) / 255
    brightened = torch.maximum(x, _grey(x) * 1.5 + 0.5)
    x = weight * x + (1 - weight) * brightened
    return (x + layer + layer.flip(-2, -1)).clamp(0, 1)


@lru_cache(maxsize=1)
def _frost_photos() -> tuple[torch.Tensor, ...]:
    """The first five frost photographs of the installed ``imagecorruptions`` package, ``(3, h, w)`` uint8."""
    from PIL import Image

    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("frost needs the frost photographs of the imagecorruptions package: "
                                  "pip install imagecorruptions==1.1.2")
    folder = Path(spec.origin).parent / "frost"
    photos = []
    for name in _FROST_FILES:
        with Image.open(folder / name) as image:
            photos.append(torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1))
    return tuple(photos)


@lru_cache(maxsize=8)
def _frost_layers(base_scale: float, h: int, w: int) -> tuple[torch.Tensor, ...]:
    """The frost photographs resized for ``h x w`` images, float ``(3, fh, fw)`` in 0..255."""
    layers = []
    for photo in _frost_photos():
        ph, pw = photo.shape[-2:]
        scale = max(base_scale, 1.1 * h / ph, 1.1 * w / pw)
        if scale < 1:  # as cv2.resize(fx=scale) with INTER_LINEAR: no anti-aliasing
            resized = F.interpolate(photo[None].float(), scale_factor=scale, mode="bilinear",
                                    align_corners=False, recompute_scale_factor=False)
        else:  # as cv2.resize(dsize=ceil(size * scale)) with INTER_CUBIC
            size = (math.ceil(ph * scale), math.ceil(pw * scale))
            resized = F.interpolate(photo[None].float(), size=size, mode="bicubic", align_corners=False)
        layers.append(resized[0].round().clamp(0, 255))
    return tuple(layers)


def _frost(x: torch.Tensor, param: tuple[float, float, float], generator: torch.Generator) -> torch.Tensor:
    image_weight, frost_weight, base_scale = param
    n, c, h, w = x.shape
    layers = _frost_layers(base_scale, h, w)
    which = torch.randint(len(layers), (n,), generator=generator)
    offsets = torch.rand((n, 2), generator=generator)
    crops = torch.empty((n, 3, h, w))
    for k, layer in enumerate(layers):
        chosen = (which == k).nonzero().flatten()
        if chosen.numel() == 0:
            continue
        top = (offsets[chosen, 0] * (layer.shape[1] - h)).long()
        left = (offsets[chosen, 1] * (layer.shape[2] - w)).long()
        rows = top[:, None] + torch.arange(h)
        cols = left[:, None] + torch.arange(w)
        crops[chosen] = layer[:, rows[:, :, None], cols[:, None, :]].permute(1, 0, 2, 3)
    frost = _grey(crops) if c == 1 else crops
    return (image_weight * x + frost_weight * frost.to(x.device) / 255).clamp(0, 1)


def _plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """Diamond-square height maps ``(N, size, size)`` in [0, 1] (``size`` a power of two), as the references:
    each new point is the mean of its 4 neighbours plus uniform noise in ``[-wibble^2, wibble^2]``, with
    ``wibble`` starting at 100 and divided by ``decay`` at every halving of the step."""
    heights = torch.zeros((n, size, size), dtype=torch.float64)
    step, wibble = size, 100.0

    def noisy_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = heights[:, 0::step, 0::step]
        total = corners + corners.roll(-1, 1)
        heights[:, half::step, half::step] = noisy_mean(total + total.roll(-1, 2))
        centres = heights[:, half::step, half::step]
        corners = heights[:, 0::step, 0::step]
        heights[:, 0::step, half::step] = noisy_mean(centres + centres.roll(1, 1)
                                                     + corners + corners.roll(-1, 2))
        heights[:, half::step, 0::step] = noisy_mean(centres + centres.roll(1, 2)
                                                     + corners + corners.roll(-1, 1))
        step //= 2
        wibble /= decay
    heights -= heights.amin((1, 2), keepdim=True)
    return (heights / heights.amax((1, 2), keepdim=True)).float()


def _fog(x: torch.Tensor, param: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    strength, decay = param
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    fog = _plasma_fractal(n, size, decay, generator)[:, None, :h, :w].to(x.device)
    peak = x.amax((1, 2, 3), keepdim=True)
    return ((x + strength * fog) * peak / (peak + strength)).clamp(0, 1)


def _brightness(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    del generator
    value = x.amax(1, keepdim=True)  # HSV value; hue and saturation are kept, so RGB scales with V
    raised = (value + shift).clamp(max=1)
    return torch.where(value > 0, x * raised / value.clamp_min(1e-12), raised).clamp(0, 1)


def _contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    del generator
    means = x.mean((2, 3), keepdim=True)
    return ((x - means) * factor + means).clamp(0, 1)


def _pixel_coordinates(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of every pixel, float ``(H, W)`` each."""
    rows = torch.arange(h, dtype=torch.float32, device=device)
    cols = torch.arange(w, dtype=torch.float32, device=device)
    return torch.meshgrid(rows, cols, indexing="ij")


def _affine_warp(images: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Warp ``images`` ``(N, C, H, W)`` bilinearly; ``inverse`` ``(N, 3, 2)`` maps an output pixel
    ``(x, y, 1)`` to its source ``(x, y)`` (OpenCV's ``warpAffine`` with ``BORDER_REFLECT_101``)."""
    n, _, h, w = images.shape
    ys, xs = _pixel_coordinates(h, w, images.device)
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (H, W, 3)
    source = torch.einsum("hwk,nkj->nhwj", points, inverse.to(images))
    grid = torch.stack([2 * source[..., 0] / (w - 1) - 1, 2 * source[..., 1] / (h - 1) - 1], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def _displace(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Sample ``images`` ``(N, C, H, W)`` at ``(y + dy, x + dx)`` (``dy, dx``: ``(N, H, W)``, pixels),
    bilinear, mirrored about the outer pixel edges (scipy's ``map_coordinates(order=1, mode="reflect")``)."""
    n, _, h, w = images.shape
    ys, xs = _pixel_coordinates(h, w, images.device)
    grid = torch.stack([(2 * (xs + dx) + 1) / w - 1, (2 * (ys + dy) + 1) / h - 1], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _elastic_transform(x: torch.Tensor, param: tuple[float, float, float],
                       generator: torch.Generator) -> torch.Tensor:
    alpha, sigma, jitter = param
    n, _, h, w = x.shape
    side = min(h, w)
    if jitter > 0:  # random affine: three points moved by up to jitter * side each
        centre = torch.tensor([w // 2, h // 2], dtype=torch.float64)
        third = side // 3
        points = torch.stack([centre + third, centre + torch.tensor([third, -third]), centre - third])
        noise = torch.rand((n, 3, 2), generator=generator, dtype=torch.float64) * 2 - 1
        moved = torch.cat([points + noise * jitter * side, torch.ones((n, 3, 1), dtype=torch.float64)], 2)
        x = _affine_warp(x, torch.linalg.solve(moved, points.expand(n, 3, 2)).float())
    if alpha > 0:  # smooth random displacements
        fields = (torch.rand((n, 2, h, w), generator=generator) * 2 - 1).to(x.device)
        dy, dx = (alpha * side * _gaussian_blur(fields, sigma * h, sigma * w, 3.0, "symmetric")).unbind(1)
        x = _displace(x, dy, dx)
    return x.clamp(0, 1)


def _resample_matrix(size: int, factor: float) -> torch.Tensor:
    """Pillow's BOX resize of ``size`` samples to ``int(size * factor)``, then its NEAREST (equivalently
    BOX) resize back, as one ``(size, size)`` matrix."""
    small = int(size * factor)
    scale = size / small
    centres = (torch.arange(small, dtype=torch.float64) + 0.5) * scale
    relative = (torch.arange(size, dtype=torch.float64)[None, :] + 0.5 - centres[:, None]) * (1.0 / scale)
    down = ((relative > -0.5) & (relative <= 0.5)).double()  # Pillow's box filter at pixel centres
    down = down / down.sum(1, keepdim=True)
    nearest = torch.floor((torch.arange(size, dtype=torch.float64) + 0.5) * small / size).long()
    return down[nearest].float()


def _pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    del generator
    rows = _resample_matrix(x.shape[2], factor).to(x.device)
    cols = _resample_matrix(x.shape[3], factor).to(x.device)
    return torch.einsum("ih,nchw,jw->ncij", rows, x, cols).clamp(0, 1)


# The example quantisation tables of the JPEG standard (ITU-T T.81, Annex K), row by row.
_LUMA_TABLE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
               14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
               18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
               49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA_TABLE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


def _quantisation_table(base: tuple[int, ...], quality: int) -> torch.Tensor:
    """libjpeg's ``jpeg_set_quality`` scaling of a standard table (baseline: entries in 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    entries = [min(max((b * scale + 50) // 100, 1), 255) for b in base]
    return torch.tensor(entries, dtype=torch.float32).view(8, 8)


@lru_cache(maxsize=1)
def _dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II, ``(8, 8)``: JPEG's forward DCT of a block ``B`` is ``D @ B @ D.T``."""
    k = torch.arange(8, dtype=torch.float64)
    matrix = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix.float()


def _jpeg_plane(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Code and decode 8-bit planes ``(N, P, H, W)`` (``H, W`` multiples of 8) with one quantisation table."""
    n, p, h, w = planes.shape
    dct = _dct_matrix().to(planes.device)
    table = table.to(planes.device)
    blocks = (planes - 128).reshape(n, p, h // 8, 8, w // 8, 8).transpose(3, 4)
    coefficients = dct @ blocks @ dct.T
    levels = torch.sign(coefficients) * torch.floor(coefficients.abs() / table + 0.5)  # ties away from 0
    decoded = dct.T @ (levels * table) @ dct + 128
    return decoded.transpose(3, 4).reshape(n, p, h, w).round().clamp(0, 255)


def _jpeg_compression(x: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    del generator
    n, c, h, w = x.shape
    rows = torch.arange(h + (-h % 16), device=x.device).clamp(max=h - 1)  # repeat edges to whole MCUs
    cols = torch.arange(w + (-w % 16), device=x.device).clamp(max=w - 1)
    samples = torch.round(x * 255).index_select(2, rows).index_select(3, cols)
    luma_table = _quantisation_table(_LUMA_TABLE, quality)
    if c == 1:
        return (_jpeg_plane(samples, luma_table) / 255)[..., :h, :w]
    to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                          device=x.device)
    offset = torch.tensor([0.0, 128, 128], device=x.device)[:, None, None]
    ycc = (torch.einsum("kc,nchw->nkhw", to_ycc, samples) + offset).round()
    luma = _jpeg_plane(ycc[:, :1], luma_table)
    chroma = _jpeg_plane(F.avg_pool2d(ycc[:, 1:], 2).round(), _quantisation_table(_CHROMA_TABLE, quality))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False).round() - 128
    to_rgb = torch.tensor([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]], device=x.device)  # (Cb, Cr)
    rgb = luma + torch.einsum("kc,nchw->nkhw", to_rgb, chroma)
    return (rgb.round().clamp(0, 255) / 255)[..., :h, :w]


_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_corruption,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
RANDOM_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow",
                      "frost", "fog", "elastic_transform")


# -------------------------------------------------------------------------------------------- public API

def _check_options(seed: int, params: str) -> None:
    checks.one_of("params", params, PARAM_TABLES)
    checks.integer("seed", seed, low=0)


def _check_images(images: torch.Tensor) -> None:
    checks.require(isinstance(images, torch.Tensor), "images", type(images), "a torch.Tensor (N, C, H, W)")
    checks.require(images.dim() == 4, "images.shape", tuple(images.shape), "4-D (N, C, H, W)")
    checks.one_of("images.shape[1]", images.shape[1], (1, 3))
    checks.require(min(images.shape[2:]) >= MIN_SIZE, "images.shape[2:]", tuple(images.shape[2:]),
                   f"H and W >= {MIN_SIZE}")
    checks.require(images.is_floating_point(), "images.dtype", images.dtype,
                   "a floating-point dtype, values in [0, 1]")
    if images.numel():
        low, high = float(images.min()), float(images.max())
        checks.require(0 <= low and high <= 1, "images.min(), images.max()", (low, high), "values in [0, 1]")


def corrupt(images: torch.Tensor, name: str, severity: int, *, seed: int = 0,
            params: str = "cifar") -> torch.Tensor:
    """Corrupt a batch ``images`` ``(N, C, H, W)`` (floating, ``[0, 1]``, ``C`` in {1, 3}, ``H, W >= 32``).

    ``name`` is one of :data:`CORRUPTIONS`, ``severity`` in 1..5, ``params`` the parameter table
    (``"cifar"`` or ``"imagenet"``, see the module docstring), ``seed`` seeds the CPU generator of all
    random draws. Returns ``(N, C, H, W)`` in ``[0, 1]`` with the dtype and device of ``images``.
    """
    checks.one_of("name", name, CORRUPTIONS)
    checks.one_of("severity", severity, SEVERITIES)
    _check_options(seed, params)
    _check_images(images)
    if images.shape[0] == 0:
        return images.detach().clone()
    param = _TABLES[params][name][severity - 1]
    generator = torch.Generator().manual_seed(seed)
    options = {"window": _ZOOM_WINDOWS[params]} if name in _ZOOMING else {}
    return _FUNCTIONS[name](images.detach().float(), param, generator, **options).to(images.dtype)


def _cache_key(images: torch.Tensor, names: tuple[str, ...], severities: tuple[int, ...], seed: int,
               params: str) -> str:
    digest = hashlib.sha256()
    data = images.detach().cpu().contiguous()
    digest.update(json.dumps([list(data.shape), str(data.dtype), names, severities, seed, params,
                              CACHE_VERSION]).encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:20]


def _check_all(images: torch.Tensor, names: tuple[str, ...], severities: tuple[int, ...], seed: int,
               params: str) -> None:
    for name in names:
        checks.one_of("name", name, CORRUPTIONS)
    for severity in severities:
        checks.one_of("severity", severity, SEVERITIES)
    _check_options(seed, params)
    _check_images(images)


def corrupt_all(images: torch.Tensor, names: Iterable[str] = CORRUPTIONS,
                severities: Iterable[int] = SEVERITIES, seed: int = 0, params: str = "cifar",
                cache_dir: str | Path | None = None) -> dict[tuple[str, int], torch.Tensor]:
    """All ``(name, severity)`` corruptions of ``images`` ``(N, C, H, W)``: ``{(name, severity): tensor}``.

    Each entry is ``corrupt(images, name, severity, seed=seed, params=params)`` rounded to the 8-bit
    levels ``k / 255`` (what a saved benchmark such as CIFAR-10-C holds), as ``images``' dtype on its
    device. With ``cache_dir`` the results are stored once, as uint8, in
    ``cache_dir/corruptions-<key>.pt`` (written atomically) where the key hashes the images, names,
    severities, seed, parameter table and :data:`CACHE_VERSION`; a later call with the same inputs loads
    them instead of recomputing.
    """
    names, severities = tuple(names), tuple(severities)
    _check_all(images, names, severities, seed, params)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"corruptions-{_cache_key(images, names, severities, seed, params)}.pt"
        if path.exists():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            return {(name, severity): stored[f"{name}/{severity}"].to(images.device).to(images.dtype) / 255
                    for name in names for severity in severities}
    levels = {}
    for name in names:
        for severity in severities:
            out = corrupt(images, name, severity, seed=seed, params=params)
            levels[name, severity] = torch.round(out.float() * 255).to(torch.uint8)
    if path is not None:
        torch_save(path, {f"{name}/{severity}": level.cpu() for (name, severity), level in levels.items()})
    return {key: level.to(images.dtype) / 255 for key, level in levels.items()}


def frequency_ranking(images: torch.Tensor, names: Iterable[str] = CORRUPTIONS,
                      severities: Iterable[int] = SEVERITIES, seed: int = 0,
                      params: str = "cifar") -> pd.DataFrame:
    """How high-frequency each corruption is on ``images`` ``(N, C, H, W)``, lowest first.

    For every name, the :func:`~dstlib.data.spectral.spectral_centroid` of ``corrupt(...) - images``,
    averaged over the images and the severities. Returns a DataFrame with columns ``name`` and
    ``centroid`` (frequency-index units), sorted by ``centroid``; images a corruption leaves unchanged
    are ignored. This is how :data:`CORRUPTIONS` was ordered.
    """
    names, severities = tuple(names), tuple(severities)
    _check_all(images, names, severities, seed, params)
    rows = []
    for name in names:
        centroids = []
        for severity in severities:
            change = corrupt(images, name, severity, seed=seed, params=params).float() - images.float()
            changed = change.flatten(1).abs().amax(1) > 0
            centroids.append(spectral_centroid(change[changed]))
        rows.append({"name": name, "centroid": float(torch.cat(centroids).mean())})
    return pd.DataFrame(rows).sort_values("centroid", kind="stable").reset_index(drop=True)
