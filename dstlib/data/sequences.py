"""mnist1d: Greydanus' 1-D digits (10 templates, 40 samples long), generated offline.

``mnist1d.data.get_dataset()`` downloads a pickle from GitHub by default; this module only ever calls
``mnist1d.data.make_dataset`` (the generator), so nothing leaves the machine.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dstlib import checks
from dstlib.data.registry import DatasetSpec, cached, register

MNIST1D_CANONICAL_SAMPLES = 5000
MNIST1D_CANONICAL_SEED = 42


def load_mnist1d(split: str, root: Path, download: bool = False, num_samples: int = MNIST1D_CANONICAL_SAMPLES,
                 seed: int = MNIST1D_CANONICAL_SEED) -> TensorDataset:
    """mnist1d built by its own generator: the canonical arguments give 4,000 train / 1,000 test.

    ``num_samples`` (a multiple of 10, at least 20) is split 80/20 by the generator; ``seed`` seeds
    it (42 is the published dataset). Returns ``x: (N, 1, 40)`` float32 (standardised over the whole
    set by the generator) and ``y: (N,)`` int64 in 0..9. Python's and numpy's global random states are
    restored afterwards (the generator reseeds them).
    """
    del download  # generated locally
    checks.require(checks.is_number(num_samples, low=20, integer=True) and num_samples % 10 == 0, "num_samples",
                   num_samples, "a multiple of 10, >= 20")
    checks.integer("seed", seed, low=0)

    def build() -> dict[str, torch.Tensor]:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples, args.seed = num_samples, seed
        # The generator seeds and draws from the global random states; leave them as they were.
        python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
        try:
            data = make_dataset(args)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002

        def as_x(values: np.ndarray) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).unsqueeze(1)

        return {"train_x": as_x(data["x"]), "train_y": torch.tensor(data["y"], dtype=torch.int64),
                "test_x": as_x(data["x_test"]), "test_y": torch.tensor(data["y_test"], dtype=torch.int64)}

    tensors = cached("mnist1d", {"num_samples": num_samples, "seed": seed, "version": 1}, build, root)
    return TensorDataset(tensors[f"{split}_x"], tensors[f"{split}_y"])


register(DatasetSpec("mnist1d", load_mnist1d, "classification", 10, (1, 40), True,
                     "mnist1d (Greydanus 2020), generated offline; canonical 4,000 train / 1,000 test"))
