"""Fourier-domain filters for images and the "radius-accuracy" analysis of a classifier.

Conventions (used by every function here):

* The spectrum is the 2-D DFT of each ``H x W`` plane, centred with ``fftshift``, so the zero frequency
  sits at index ``(H // 2, W // 2)``.
* The *radius* of a frequency is its Euclidean distance from that centre in frequency-index units
  (:func:`frequency_radius`). A ``32 x 32`` image has radii from 0 (the mean) to ``sqrt(16^2 + 16^2)``
  (about 22.6, the corners).
* :func:`low_pass` keeps the frequencies with radius ``<= r`` (the circle is inclusive) and
  :func:`high_pass` keeps those with radius ``> r``, so ``low_pass(x, r) + high_pass(x, r) == x`` for every
  ``r``; ``low_pass(x, 0)`` is the per-plane mean and ``high_pass(x, 0)`` the image minus its mean.
* The masks are symmetric under ``f -> -f``, so the inverse DFT is real up to rounding; its real part is
  returned **unclamped** (a low-passed ``[0, 1]`` image can ring slightly outside ``[0, 1]``). Clamp it
  yourself if a consumer needs the range; the functions do not, so the two filters stay complementary.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from dstlib import checks

MODES = ("low", "high")


def frequency_radius(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Distance of every entry of a centred ``height x width`` spectrum from its centre: ``(H, W)`` float64.

    Float64, so that a radius given as a Python float compares exactly (``5.0`` keeps frequency ``(3, 4)``).
    """
    rows = torch.arange(height, device=device, dtype=torch.float64) - height // 2
    cols = torch.arange(width, device=device, dtype=torch.float64) - width // 2
    return torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise checks.invalid("images", shape, "a tensor of shape (..., H, W)")
    checks.require(images.is_floating_point(), "images.dtype", images.dtype, "a floating-point dtype")


def _centred_spectrum(images: torch.Tensor) -> torch.Tensor:
    return torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))


def _masked_inverse(spectrum: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifft2(torch.fft.ifftshift(spectrum * keep, dim=(-2, -1))).real


def _filter(images: torch.Tensor, radius: float, mode: str) -> torch.Tensor:
    _check_images(images)
    checks.number("radius", radius, low=0)
    inside = frequency_radius(*images.shape[-2:], device=images.device) <= radius
    keep = inside if mode == "low" else ~inside
    work = images if images.dtype == torch.float64 else images.float()  # FFTs need float32 or float64
    return _masked_inverse(_centred_spectrum(work), keep).to(images.dtype)


def low_pass(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep the frequencies of ``images`` ``(..., H, W)`` within ``radius`` of the centre (inclusive).

    Returns a real tensor of the same shape and dtype. ``radius >= frequency_radius(H, W).max()`` returns the
    images unchanged (up to rounding); ``radius = 0`` keeps only the mean of each plane.
    """
    return _filter(images, radius, "low")


def high_pass(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Remove the frequencies of ``images`` ``(..., H, W)`` within ``radius`` of the centre (inclusive).

    The complement of :func:`low_pass`: ``high_pass(x, r) == x - low_pass(x, r)``. ``radius = 0`` removes
    only the mean of each plane; ``radius >=`` the largest radius returns zeros.
    """
    return _filter(images, radius, "high")


def spectral_centroid(images: torch.Tensor) -> torch.Tensor:
    """Energy-weighted mean frequency radius of each image ``(N, ..., H, W)``: ``(N,)``.

    ``sum |F(f)|^2 * radius(f) / sum |F(f)|^2`` over all frequencies ``f`` and all planes of one image
    (channels pooled), in frequency-index units. White noise scores about the mean radius of the grid; a
    constant offset scores 0. Applied to ``corrupted - clean`` it measures how high-frequency a corruption is.
    """
    _check_images(images)
    checks.require(images.dim() >= 3, "images.shape", tuple(images.shape), "(N, ..., H, W)")
    power = _centred_spectrum(images.float()).abs().square().flatten(1, -3).sum(1)  # (N, H, W)
    radius = frequency_radius(*images.shape[-2:], device=images.device).to(power.dtype)
    return (power * radius).sum((-2, -1)) / power.sum((-2, -1)).clamp_min(torch.finfo(power.dtype).tiny)


@torch.no_grad()
def radius_accuracy(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, radii: Sequence[float],
                    mode: str = "low", batch_size: int = 256) -> pd.DataFrame:
    """Accuracy of ``model`` on ``images`` ``(N, C, H, W)`` after a low- or high-pass filter of each radius.

    ``mode="low"`` evaluates :func:`low_pass` images (high frequencies removed), ``mode="high"``
    :func:`high_pass` images (low frequencies removed): the radius-accuracy curves of the DST-robustness
    paper (Wu, Xiao et al., ICLR 2025, Sec. 5.2). The filtered images are not clamped. The model runs in
    eval mode on the device of its parameters (its training flag is restored afterwards); ``targets`` are
    class indices ``(N,)``. Returns one row per radius, in the given order, with columns ``radius`` and
    ``accuracy`` (a fraction in [0, 1]).
    """
    checks.one_of("mode", mode, MODES)
    checks.integer("batch_size", batch_size, low=1)
    radii = list(radii)
    checks.require(len(radii) > 0, "radii", radii, "a non-empty sequence of numbers >= 0")
    for radius in radii:
        checks.number("radius", radius, low=0)
    _check_images(images)
    checks.require(images.dim() == 4, "images.shape", tuple(images.shape), "(N, C, H, W)")
    checks.require(targets.shape == images.shape[:1], "targets.shape", tuple(targets.shape),
                   f"({images.shape[0]},)")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    distance = frequency_radius(*images.shape[-2:], device=device)
    correct = torch.zeros(len(radii), dtype=torch.long)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            y = targets[start:start + batch_size].to(device)
            spectrum = _centred_spectrum(x.float())
            for i, radius in enumerate(radii):
                keep = distance <= radius if mode == "low" else distance > radius
                logits = model(_masked_inverse(spectrum, keep).to(x.dtype))
                correct[i] += int((logits.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    accuracy = (correct.double() / max(images.shape[0], 1)).tolist()
    return pd.DataFrame({"radius": [float(r) for r in radii], "accuracy": accuracy})
