"""Collective helpers for keeping masks identical on every rank (``torch.distributed``; no-ops otherwise).

The engine calls them only at construction and at topology updates, never per step: one all-reduce of the
gradient scores (when a rule uses gradients) and one broadcast of the new masks per update. Tensors are
coalesced into one flat buffer per call; with the NCCL backend the buffer goes through the current CUDA
device, with any other backend (gloo) through the CPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialized process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _flat(tensors: Sequence[Tensor], dtype: torch.dtype) -> Tensor:
    device = _comm_device()
    return torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in tensors])


def _scatter_back(flat: Tensor, tensors: Sequence[Tensor]) -> None:
    for tensor, chunk in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        tensor.copy_(chunk.view_as(tensor))


def broadcast_(tensors: Sequence[Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` (any shapes, bool or numeric) in place with rank ``src``'s values, in one
    broadcast (bool travels as uint8, numbers as float64 so integers up to 2**53 survive)."""
    if not is_distributed() or not tensors:
        return
    dtype = torch.uint8 if all(t.dtype == torch.bool for t in tensors) else torch.float64
    flat = _flat(tensors, dtype)
    dist.broadcast(flat, src=src)
    _scatter_back(flat, tensors)


def all_reduce_mean_(tensors: Sequence[Tensor]) -> None:
    """Replace float ``tensors`` (any shapes) in place by their mean over ranks, in one float32 all-reduce."""
    if not is_distributed() or not tensors:
        return
    flat = _flat(tensors, torch.float32)
    dist.all_reduce(flat)
    flat /= world_size()
    _scatter_back(flat, tensors)


def all_reduce_sum_(tensors: Sequence[Tensor]) -> None:
    """Replace ``tensors`` (any shapes) in place by their sum over ranks, in one float64 all-reduce."""
    if not is_distributed() or not tensors:
        return
    flat = _flat(tensors, torch.float64)
    dist.all_reduce(flat)
    _scatter_back(flat, tensors)


def checksum(tensors: Sequence[Tensor]) -> int:
    """A 63-bit SHA-256 digest of the tensors' values (bools as bytes), shapes included; local, no
    communication. Equal tensors give equal checksums on every device."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def assert_synced(tensors: Sequence[Tensor]) -> None:
    """Raise ``RuntimeError`` unless ``tensors`` hold the same values on every rank (compares
    :func:`checksum` with one all-gather); does nothing when not distributed."""
    if not is_distributed():
        return
    local = torch.tensor([checksum(tensors)], dtype=torch.int64, device=_comm_device())
    gathered = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(gathered, local)
    values = [int(g.item()) for g in gathered]
    if len(set(values)) > 1:
        raise RuntimeError(f"masks differ across ranks: checksums per rank {values}")
