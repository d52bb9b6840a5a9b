"""Resume a checkpoint in a fresh process: ``python resume_worker.py DIR THREADS``.

For every case of ``engine_toys.RESUME_CASES``: build the model, optimizer and engine anew, load
``DIR/<case>.pt`` (model, optimizer and engine state, saved at the case's step), train to the end and
save ``DIR/<case>.final.pt`` (model state dict and engine masks).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from engine_toys import RESUME_CASES, RESUME_STEPS, resume_case, train


def main(directory: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    for name in RESUME_CASES:
        model, optimizer, engine, save_at = resume_case(name)
        checkpoint = torch.load(directory / f"{name}.pt")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        engine.load_state_dict(checkpoint["engine"])
        train(model, optimizer, engine, range(save_at, RESUME_STEPS))
        torch.save({"model": model.state_dict(), "masks": engine.masks}, directory / f"{name}.final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
