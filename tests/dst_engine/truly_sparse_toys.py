"""A tiny MLP and CNN, deterministic batches and a training loop shared by the truly sparse tests and their worker."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import dstlib.sparse.truly_sparse as ts

TOTAL_STEPS = 40
UPDATE_EVERY = 5
SAVE_AT = 19  # resume cases: checkpoint right before the update at step 20 (the loaded engine arms the capture)
CASES = {  # name: (prune, grow, optimizer)
    "rigl-sgd": ("magnitude", "gradient", "sgd"),
    "set-adam": ("set", "random", "adam"),
}


def mlp(seed: int = 0) -> nn.Module:
    """Linear(12->32) -> ReLU -> Linear(32->24) -> ReLU -> Linear(24->5)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 5))


def cnn(seed: int = 0) -> nn.Module:
    """The strides, paddings and groups of the book's CNNs on 1x8x8 images: Conv(1->6, 3x3, pad 1) -> ReLU ->
    Conv(6->8, 3x3, stride 2, pad 1, groups 2) -> ReLU -> Conv(8->8, 1x1, stride 2) -> ReLU -> mean -> Linear(8->5)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, 2, 1, groups=2, bias=False), nn.ReLU(),
        nn.Conv2d(8, 8, 1, 2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


NETS = {"mlp": (mlp, (12,)), "cnn": (cnn, (1, 8, 8))}  # name: (builder, input shape)


def batch(step: int, size: int = 8, net: str = "mlp") -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    x = torch.randn(size, *NETS[net][1], generator=generator)
    return x, torch.randint(0, 5, (size,), generator=generator)


def optimizer_for(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def truly_sparse_case(
    name: str, seed: int = 0, net: str = "mlp"
) -> tuple[nn.Module, torch.optim.Optimizer, ts.TrulySparseEngine]:
    prune, grow, kind = CASES[name]
    dense = NETS[net][0](seed)
    masks = ts.initial_masks(dense, 0.3, distribution="uniform", include=[nn.Linear, nn.Conv2d], seed=seed)
    model = ts.to_truly_sparse(dense, masks)
    optimizer = optimizer_for(model, kind)
    engine = ts.TrulySparseEngine(model, optimizer, prune=prune, grow=grow, update_every=UPDATE_EVERY,
                                  total_steps=TOTAL_STEPS, update_end=TOTAL_STEPS, drop_fraction=0.3, seed=seed)
    return model, optimizer, engine


def train(
    model: nn.Module, optimizer: torch.optim.Optimizer, engine: object, steps: range, net: str = "mlp"
) -> list[bool]:
    updates = []
    for step in steps:
        x, y = batch(step, net=net)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        updates.append(engine.step())
    return updates
