"""Multi-process mask checks, run by ``torchrun --standalone --nproc_per_node=2 ddp_worker.py OUT.json``.

Every rank starts from a different model initialisation, a different engine seed and different data, so
nothing is identical by accident. For each case it checks, on every rank, that the masks have the same
checksum everywhere after init and after every update, and counts the collectives the engine issues: one
broadcast of the seed and one of the masks at init, then at most one broadcast (and, for gradient rules,
one all-reduce) per update, none per step. Rank 0 writes a summary to OUT.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from engine_toys import PRESETS, conv_net, train
from torch.nn.parallel import DistributedDataParallel

CASES = {  # name: (preset, options, wrap the model in DDP)
    "set-ddp": ("SET", {}, True),
    "rigl-ddp": ("RigL", {}, True),
    "granet-kernel-ddp": ("GraNet", {"granularity": "kernel"}, True),
    "rigl-no-ddp": ("RigL", {"grad_steps": 2}, False),
}
STEPS = 16


class CollectiveCounter:
    """Wraps ``dist.broadcast`` / ``dist.all_reduce`` to count calls and note which broadcasts changed data."""

    def __init__(self) -> None:
        self.calls = {"broadcast": 0, "all_reduce": 0}
        self.broadcast_changed: list[bool] = []
        self._broadcast, self._all_reduce = dist.broadcast, dist.all_reduce
        dist.broadcast, dist.all_reduce = self.broadcast, self.all_reduce

    def broadcast(self, tensor: torch.Tensor, *args, **kwargs):
        self.calls["broadcast"] += 1
        before = tensor.clone()
        result = self._broadcast(tensor, *args, **kwargs)
        self.broadcast_changed.append(not torch.equal(before, tensor))
        return result

    def all_reduce(self, tensor: torch.Tensor, *args, **kwargs):
        self.calls["all_reduce"] += 1
        return self._all_reduce(tensor, *args, **kwargs)


def run_case(name: str, rank: int) -> dict:
    preset, options, wrap = CASES[name]
    counter = CollectiveCounter()
    model = conv_net(seed=rank)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = PRESETS[preset](
        model, optimizer, density=0.3, total_steps=24, update_every=4, drop_fraction=0.5, seed=rank, **options
    )
    init_calls = dict(counter.calls)
    engine.assert_synced()
    checksums = [engine.mask_checksum()]
    net = DistributedDataParallel(model) if wrap else model
    if wrap:  # DDP must not re-broadcast the masks at every forward: the engine syncs them per update
        assert not [n for n in net.named_module_buffers if n.endswith("_mask")], net.named_module_buffers

    def after(step: int, updated: bool) -> None:
        if updated:
            engine.assert_synced()
            checksums.append(engine.mask_checksum())

    updates = train(net, optimizer, engine, range(STEPS), seed=rank, after_step=after)
    dist.broadcast, dist.all_reduce = counter._broadcast, counter._all_reduce
    needs_grad = engine.grow in ("gradient", "momentum") or engine.prune == "mest"
    assert init_calls == {"broadcast": 2, "all_reduce": 0}, init_calls
    assert counter.calls["broadcast"] == 2 + len(updates), counter.calls
    assert counter.calls["all_reduce"] == (len(updates) if needs_grad else 0), counter.calls
    if wrap:  # after the seed (first broadcast), every rank computed the same masks: broadcasts were no-ops
        assert not any(counter.broadcast_changed[1:]), f"{name}: ranks computed different masks"
    return {"updates": len(updates), "checksums": checksums, "calls": counter.calls}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    summary = {name: run_case(name, rank) for name in CASES}
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, summary)
    if rank == 0:
        assert all(g == summary for g in gathered), "ranks disagree on checksums or collective counts"
        out.write_text(json.dumps(summary))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
