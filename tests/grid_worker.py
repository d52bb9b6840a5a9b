"""Run a two-point chapter grid in a fresh process; ``crash`` dies (exit 3) in epoch 3 of the second point,
after the checkpoint of epoch 2 was written.

Used by tests/test_experiments.py: ``python grid_worker.py OUT crash|resume``. Prints, as its last line,
JSON with the epochs trained in this process and the final metrics of every point.
"""

import json
import sys

from dstlib import experiments
from dstlib.callbacks import EpochEndHook, Sparsity
from dstlib.experiments import dst_from_scratch as chapter

out, mode = sys.argv[1], sys.argv[2]
trained: list[int] = []
real_fit = chapter.fit


def fit(*args, callbacks, **kwargs):
    sparse = any(isinstance(callback, Sparsity) for callback in callbacks)

    def hook(epoch, model, engine):
        trained.append(epoch)
        if mode == "crash" and sparse and epoch == 3:
            sys.exit(3)

    return real_fit(*args, callbacks=[*callbacks, EpochEndHook(hook)], **kwargs)


chapter.fit = fit
config = experiments.resolve("dst_from_scratch", "smoke", methods=["dense", "static"], densities=[0.5], seeds=[0],
                             epochs=3, out_dir=out, workers=1)  # epochs counted in this process
result = experiments.run(chapter, config)
metrics = {r["params"]["method"]: [r["metrics"]["test_accuracy"], [h["train_loss"] for h in r["history"]]]
           for r in result.records}
print(json.dumps({"trained_epochs": trained, "metrics": metrics}))
