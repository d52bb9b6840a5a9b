"""Batched data augmentation on tensors (CPU or GPU), driven by a seeded generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """CIFAR-style augmentation of ``images`` ``(N, C, H, W)``: zero-pad by ``padding``, crop back to
    ``H x W`` at a random offset per image, and mirror half of the images left-right if ``flip``.

    Random numbers come from ``generator`` (a CPU generator), so the result is reproducible.
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device)[None, :])  # (N, H)
    cols = (dx[:, None] + torch.arange(w, device=images.device)[None, :])  # (N, W)
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
