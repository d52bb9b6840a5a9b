"""``fit`` on a fixed toy problem, alone or under ``torchrun``; rank 0 writes the curve and weights as JSON.

Used by tests/test_train.py: ``python fit_worker.py OUT.json`` and ``torchrun --nproc_per_node=2
fit_worker.py OUT.json`` must give the same numbers (a global batch of 16 split 8 + 8, a sparse engine).
"""

import json
import sys
from functools import partial

import torch
from torch import nn

from dstlib import sparse, train
from dstlib.callbacks import Record, Sparsity
from dstlib.optimisation import Optimisation


def model():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))


generator = torch.Generator().manual_seed(0)
x = torch.randn(70, 1, 4, 4, generator=generator)
y = torch.randint(0, 3, (70,), generator=generator)
engine = partial(sparse.RigL, density=0.5, distribution="uniform", update_every=3, seed=0)
result = train.fit(model, (x, y), epochs=3, batch_size=16, optim=Optimisation(lr=0.1), seed=5, device="cpu",
                   callbacks=[Record(["loss"]), Sparsity(lambda m, o, t: engine(m, o, total_steps=t))])
context = train.distributed_context()
if context.is_main:
    with open(sys.argv[1], "w") as handle:
        json.dump({"world_size": context.world_size, "steps": result.steps,
                   "losses": [h["train_loss"] for h in result.history],
                   "weights": torch.cat([p.detach().flatten() for p in result.model.parameters()]).tolist(),
                   "sample_losses": result.per_sample["loss"][-1].tolist()}, handle)
