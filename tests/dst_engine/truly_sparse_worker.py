"""Resume a truly sparse checkpoint in a fresh process: ``python truly_sparse_worker.py DIR THREADS``.

For every net of ``truly_sparse_toys.NETS`` and case of ``CASES``: build model, optimizer and engine anew, load
``DIR/<net>-<case>.pt`` (saved after ``SAVE_AT`` steps), train to ``TOTAL_STEPS``, save ``DIR/<net>-<case>.final.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from truly_sparse_toys import CASES, NETS, SAVE_AT, TOTAL_STEPS, train, truly_sparse_case


def main(directory: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    for net in NETS:
        for name in CASES:
            model, optimizer, engine = truly_sparse_case(name, seed=1, net=net)  # another seed: all from disk
            checkpoint = torch.load(directory / f"{net}-{name}.pt")
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            engine.load_state_dict(checkpoint["engine"])
            train(model, optimizer, engine, range(SAVE_AT, TOTAL_STEPS), net)
            torch.save({"model": model.state_dict(), "masks": engine.masks}, directory / f"{net}-{name}.final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
