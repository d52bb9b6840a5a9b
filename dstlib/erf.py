"""Effective receptive field (ERF): how much each input pixel moves the centre of a network's last feature map.

Following Luo et al. (2016) and the script RepLKNet and SLaK use for their ERF figures: for each image, the
gradient of the (ReLU'd, channel-summed) central position of the final feature map with respect to the input,
ReLU'd and summed over input channels; averaged over images. A network whose large kernels are used sees
far pixels; one with small kernels, or with large kernels it has not learned to use, has a compact ERF.

* :func:`effective_receptive_field`: the ``(H, W)`` map.
* :func:`contribution_area`: the fraction of the image holding a share ``t`` of the total contribution,
  growing from the centre (RepLKNet's "high-contribution area ratio"); larger means a wider ERF.
* :func:`mean_distance`: the contribution-weighted mean distance from the centre, in pixels: one continuous
  number (the area ratio moves in steps of whole squares), convenient for comparisons over seeds.

Use trained models: SLaK and ConvNeXt blocks start near identity (layer scale 1e-6), so at initialisation
every ERF is that of the stem alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from dstlib import checks

Features = Callable[[nn.Module, Tensor], Tensor]


def default_features(model: nn.Module, x: Tensor) -> Tensor:
    """``model.features(x)``: the last feature map ``(B, C, h, w)`` before pooling (e.g. ``SLaKNet``)."""
    checks.require(hasattr(model, "features"), "model", type(model).__name__,
                   "a model with a features(x) -> (B, C, h, w) method, or pass features=")
    return model.features(x)


def effective_receptive_field(model: nn.Module, images: Tensor, *, features: Features = default_features,
                              batch_size: int = 64) -> Tensor:
    """The ERF of ``model`` averaged over ``images`` ``(N, C, H, W)``: a non-negative ``(H, W)`` tensor.

    For each image ``x``: ``relu(d/dx sum_c relu(f(x)[c, h//2, w//2]))`` summed over the input channels,
    with ``f = features(model, .)`` the last feature map ``(B, C', h, w)``. The model runs in eval mode
    (BatchNorm with running statistics, so images do not interact and are batched); its training flag and
    ``.grad`` are left as they were.
    """
    checks.require(isinstance(images, Tensor) and images.dim() == 4, "images", getattr(images, "shape", images),
                   "a (N, C, H, W) tensor")
    checks.integer("batch_size", batch_size, low=1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros(images.shape[-2:], dtype=torch.float64)
    try:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device).float().requires_grad_(True)
            out = features(model, x)
            centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2].relu().sum()
            (grad,) = torch.autograd.grad(centre, x)
            total += grad.relu().sum(dim=(0, 1)).double().cpu()
    finally:
        model.train(was_training)
    return (total / len(images)).float()


def contribution_area(erf: Tensor, share: float) -> float:
    """Fraction of the ``(H, W)`` map inside the smallest centred square holding ``share`` of its total.

    RepLKNet's high-contribution area ratio ``r(t)`` with ``t = share``; a wide ERF gives a large ratio.
    """
    checks.require(isinstance(erf, Tensor) and erf.dim() == 2, "erf", getattr(erf, "shape", erf), "a (H, W) tensor")
    checks.number("share", share, low=0, high=1, low_open=True)
    height, width = erf.shape
    total = float(erf.sum())
    if total == 0:
        return 0.0
    cy, cx = height // 2, width // 2
    for radius in range(max(height, width)):
        window = erf[max(0, cy - radius):cy + radius + 1, max(0, cx - radius):cx + radius + 1]
        if float(window.sum()) >= share * total:
            return window.numel() / erf.numel()
    return 1.0


def mean_distance(erf: Tensor) -> float:
    """Contribution-weighted mean Euclidean distance (pixels) of the ``(H, W)`` map from its centre
    ``(H // 2, W // 2)``, the position :func:`effective_receptive_field` differentiates; 0 for an all-zero map."""
    checks.require(isinstance(erf, Tensor) and erf.dim() == 2, "erf", getattr(erf, "shape", erf), "a (H, W) tensor")
    total = float(erf.sum())
    if total == 0:
        return 0.0
    rows = torch.arange(erf.shape[0], dtype=torch.float64) - erf.shape[0] // 2
    cols = torch.arange(erf.shape[1], dtype=torch.float64) - erf.shape[1] // 2
    distance = torch.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
    return float((distance * erf.double()).sum() / total)
