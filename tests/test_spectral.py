"""Tests of the Fourier filters and the radius-accuracy analysis."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch import nn

from dstlib.data.spectral import frequency_radius, high_pass, low_pass, radius_accuracy, spectral_centroid


def _images(*shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _cosine(size: int, u: int, v: int) -> torch.Tensor:
    """``cos(2 pi (u y + v x) / size)``, all energy at radius ``sqrt(u^2 + v^2)``: ``(1, 1, size, size)``."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    return torch.cos(2 * math.pi * (u * y + v * x) / size)[None, None]


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 33, 31), (16, 20)])
def test_low_plus_high_is_the_image(shape):
    images = _images(*shape)
    for radius in (0, 0.5, 1, 3.7, 8, 15, 100):
        assert torch.allclose(low_pass(images, radius) + high_pass(images, radius), images, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 33, 31)])
def test_full_radius_low_pass_is_identity_and_high_pass_is_zero(shape):
    images = _images(*shape)
    corner = float(frequency_radius(*shape[-2:]).max())
    assert math.isclose(corner, math.hypot(shape[-2] // 2, shape[-1] // 2))
    for radius in (corner, corner + 1):
        assert torch.allclose(low_pass(images, radius), images, atol=1e-5)
        assert torch.allclose(high_pass(images, radius), torch.zeros_like(images), atol=1e-5)
    assert not torch.allclose(low_pass(images, corner - 0.5), images, atol=1e-3)  # corners need r >= corner


def test_radius_zero_keeps_or_removes_only_the_mean():
    images = _images(2, 3, 32, 32)
    mean = images.mean((-2, -1), keepdim=True)
    assert torch.allclose(low_pass(images, 0), mean.expand_as(images), atol=1e-5)
    assert torch.allclose(high_pass(images, 0), images - mean, atol=1e-5)


def test_radius_is_in_frequency_index_units_and_inclusive():
    wave = _cosine(32, 3, 4)  # radius exactly 5
    assert torch.allclose(low_pass(wave, 5), wave, atol=1e-9)
    assert torch.allclose(low_pass(wave, 4.99), torch.zeros_like(wave), atol=1e-9)
    assert torch.allclose(high_pass(wave, 4.99), wave, atol=1e-9)
    assert torch.allclose(high_pass(wave, 5), torch.zeros_like(wave), atol=1e-9)


def test_energy_is_monotone_in_radius():
    images = _images(4, 3, 32, 32)
    radii = torch.linspace(0, 23, 47).tolist()
    low = torch.tensor([float(low_pass(images, r).square().sum()) for r in radii])
    high = torch.tensor([float(high_pass(images, r).square().sum()) for r in radii])
    assert bool((low.diff() >= -1e-3).all()) and bool((high.diff() <= 1e-3).all())
    assert float(high[-1]) < 1e-6 < float(low[0])


def test_dtype_shape_and_unclamped_output():
    images = torch.zeros(2, 1, 32, 32)
    images[..., 8:24, 8:24] = 1  # a square: its sharp edges ring outside [0, 1] after a low-pass
    out = low_pass(images, 4)
    assert out.shape == images.shape and out.dtype == torch.float32 and not out.is_complex()
    assert float(out.min()) < 0 and float(out.max()) > 1
    assert low_pass(images.double(), 4).dtype == torch.float64
    assert low_pass(images.half(), 4).dtype == torch.float16


@pytest.mark.parametrize("radius", [-1, float("nan"), float("inf"), "3", None, True])
def test_bad_radius(radius):
    with pytest.raises(ValueError, match="radius="):
        low_pass(_images(1, 1, 8, 8), radius)
    with pytest.raises(ValueError, match="radius="):
        high_pass(_images(1, 1, 8, 8), radius)


def test_bad_images():
    with pytest.raises(ValueError, match="images.dtype="):
        low_pass(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 2)
    with pytest.raises(ValueError, match=r"images=\(8,\)"):
        high_pass(torch.zeros(8), 2)


def test_spectral_centroid():
    assert torch.allclose(spectral_centroid(torch.ones(2, 3, 16, 16)), torch.zeros(2))
    waves = torch.cat([_cosine(32, 3, 4), _cosine(32, 0, 7)])
    assert torch.allclose(spectral_centroid(waves), torch.tensor([5.0, 7.0], dtype=torch.float32), atol=1e-4)


class _MeanBrightness(nn.Module):
    """Class 0 if the mean of an image exceeds 0.5, else class 1 (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((1, 2, 3))
        return torch.stack([mean, 1 - mean], 1)


def test_radius_accuracy_curves():
    generator = torch.Generator().manual_seed(1)
    bright = (torch.rand(5, 3, 32, 32, generator=generator) * 0.4 + 0.6)
    dark = torch.rand(5, 3, 32, 32, generator=generator) * 0.4
    images, targets = torch.cat([bright, dark]), torch.tensor([0] * 5 + [1] * 5)
    model = _MeanBrightness().train()
    low = radius_accuracy(model, images, targets, [0, 2, 30], mode="low", batch_size=3)
    high = radius_accuracy(model, images, targets, [0, 2, 30], mode="high", batch_size=4)
    assert isinstance(low, pd.DataFrame) and list(low.columns) == ["radius", "accuracy"]
    assert low["radius"].tolist() == [0.0, 2.0, 30.0]
    assert low["accuracy"].tolist() == [1.0, 1.0, 1.0]  # the mean survives every low-pass
    assert high["accuracy"].tolist() == [0.5, 0.5, 0.5]  # and no high-pass: all predicted dark
    assert model.training  # restored


def test_radius_accuracy_full_band_equals_plain_accuracy():
    generator = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    images = torch.rand(9, 3, 32, 32, generator=generator)
    targets = torch.randint(4, (9,), generator=generator)
    plain = float((model(images).argmax(1) == targets).float().mean())
    curve = radius_accuracy(model, images, targets, [23, 50], mode="low", batch_size=4)
    assert curve["accuracy"].tolist() == pytest.approx([plain, plain])


@pytest.mark.parametrize("kwargs, parameter", [
    ({"mode": "band"}, "mode="), ({"batch_size": 0}, "batch_size="), ({"radii": []}, "radii="),
    ({"radii": [1, -2]}, "radius="), ({"targets": torch.zeros(3, dtype=torch.long)}, "targets.shape="),
    ({"images": torch.rand(4, 32, 32)}, "images.shape="),
])
def test_radius_accuracy_bad_input(kwargs, parameter):
    arguments = {"images": torch.rand(4, 3, 32, 32), "targets": torch.zeros(4, dtype=torch.long),
                 "radii": [1, 2], "mode": "low", "batch_size": 2} | kwargs
    with pytest.raises(ValueError, match="allowed") as error:
        radius_accuracy(_MeanBrightness(), **arguments)
    assert parameter in str(error.value)
