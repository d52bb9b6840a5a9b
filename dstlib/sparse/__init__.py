"""The DST engine: sparse training of any PyTorch model with any optimizer and any training loop.

One call builds a method; one call per optimizer step drives it::

    import dstlib.sparse as sp
    engine = sp.RigL(model, optimizer, density=0.1, total_steps=10_000)  # or SET, MEST, GraNet, GMP, Static, ...
    for x, y in loader:
        optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()
        engine.step()                      # True when the topology changed
    engine.report()                        # per-layer DataFrame; attrs: density, itop_rate, memory_bytes
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "engine": engine.state_dict()}, path)   # masks are buffers: "conv1.weight_mask"

Modules: :mod:`~dstlib.sparse.engine` (``SparseEngine``), :mod:`~dstlib.sparse.presets`,
:mod:`~dstlib.sparse.core` (what both engines share), :mod:`~dstlib.sparse.rules` (prune and grow rules),
:mod:`~dstlib.sparse.schedules`, :mod:`~dstlib.sparse.selection`, :mod:`~dstlib.sparse.distributions`,
:mod:`~dstlib.sparse.criteria`, :mod:`~dstlib.sparse.granularity`, :mod:`~dstlib.sparse.metrics`,
:mod:`~dstlib.sparse.distributed`, :mod:`~dstlib.sparse.prune_at_init` (SNIP, GraSP, SynFlow, LTH/OMP),
:mod:`~dstlib.sparse.flops` (RigL-convention FLOPs), :mod:`~dstlib.sparse.export` (CSR inference).
"""

from dstlib.sparse.distributions import DISTRIBUTIONS, allocate, layer_densities
from dstlib.sparse.engine import SparseEngine
from dstlib.sparse.export import to_sparse_csr
from dstlib.sparse.flops import FlopsReport, flops
from dstlib.sparse.granularity import GRANULARITIES, Element, Kernel, RegionGroups
from dstlib.sparse.metrics import itop_rate
from dstlib.sparse.presets import DSFF, DSN, GMP, MEST, METHODS, SET, GraNet, RigL, SLaK, Static, create
from dstlib.sparse.prune_at_init import grasp, lottery_ticket, magnitude_prune, snip, snip_ratios, synflow
from dstlib.sparse.rules import (
    GROW_RULES,
    PRUNE_RULES,
    GradientGrow,
    GrowRule,
    MagnitudePrune,
    MESTPrune,
    MomentumGrow,
    PruneRule,
    RandomGrow,
    SETPrune,
)
from dstlib.sparse.schedules import DropFraction, Schedule, cubic_density
from dstlib.sparse.selection import DEFAULT_SPARSE_TYPES, sparse_parameters

__all__ = [
    "DEFAULT_SPARSE_TYPES",
    "DISTRIBUTIONS",
    "DSFF",
    "DSN",
    "GMP",
    "GRANULARITIES",
    "GROW_RULES",
    "MEST",
    "METHODS",
    "PRUNE_RULES",
    "SET",
    "SLaK",
    "DropFraction",
    "Element",
    "FlopsReport",
    "GradientGrow",
    "GraNet",
    "GrowRule",
    "Kernel",
    "MESTPrune",
    "MagnitudePrune",
    "MomentumGrow",
    "PruneRule",
    "RandomGrow",
    "RegionGroups",
    "RigL",
    "SETPrune",
    "Schedule",
    "SparseEngine",
    "Static",
    "allocate",
    "create",
    "cubic_density",
    "flops",
    "grasp",
    "itop_rate",
    "layer_densities",
    "lottery_ticket",
    "magnitude_prune",
    "snip",
    "snip_ratios",
    "sparse_parameters",
    "synflow",
    "to_sparse_csr",
]
