"""Chapter 2, "DST vs dense: robustness to image corruptions" (Wu, Xiao et al., ICLR 2025).

Each run trains one network (dense, or SET / RigL / MEST / GraNet at one sparsity) with one seed and
measures

* clean test accuracy;
* robustness accuracy: the mean accuracy over every (corruption, severity) pair of the corrupted test
  set, the protocol of Hendrycks & Dietterich's CIFAR-10-C; and the accuracy of each pair;
* radius-accuracy curves: accuracy on clean test images low-pass or high-pass filtered at radius r in
  the 2-D Fourier domain (the paper's spectral analysis).

On digits the corrupted test set is made here by :mod:`dstlib.data.corruptions` (cached); on CIFAR it
is the real CIFAR-10-C / CIFAR-100-C benchmark.
"""

from __future__ import annotations

from typing import Any

import torch

from dstlib import data, models
from dstlib.config import ChapterSpec, Config, Knob
from dstlib.data import corruptions, spectral
from dstlib.data.augment import random_crop_flip
from dstlib.experiments.common import (
    DENSE_ONCE,
    SPARSITY_KNOBS,
    ChapterResult,
    Outcome,
    densities_of,
    engine_factory,
    grid,
    main_process_first,
    run_point,
)
from dstlib.train import evaluate, fit, predict

CHAPTER_METHODS = ("dense", "set", "rigl", "mest", "granet")
BENCHMARKS = {"cifar10": "cifar10c", "cifar100": "cifar100c"}

KNOBS = {
    "dataset": Knob("training data: digits at 32x32 RGB (offline) or CIFAR-10 / CIFAR-100 (download)", str,
                    choices=("digits", "cifar10", "cifar100")),
    "model": Knob("network, from dstlib.models", str,
                  choices=("cnn_small_s2", "cnn_small", "resnet20", "vgg16", "resnet34")),
    "methods": Knob("methods to compare", str, choices=CHAPTER_METHODS, is_list=True),
    "sparsities": Knob("fractions of weights removed in the sparse layers", float, low=0.0, high=1.0,
                       high_open=True, is_list=True),
    "corruptions": Knob("corruption types, from dstlib.data.corruptions.CORRUPTIONS", str,
                        choices=corruptions.CORRUPTIONS, is_list=True),
    "severities": Knob("corruption severities", int, choices=(1, 2, 3, 4, 5), is_list=True),
    "eval_images": Knob("test images used for the corrupted and filtered evaluations (0 = all)", int, low=0),
    "radii": Knob("Fourier radii of the radius-accuracy curves", int, low=0, is_list=True),
    "epochs": Knob("training epochs per run", int, low=1),
    "batch_size": Knob("mini-batch size", int, low=1),
    "lr": Knob("peak learning rate of SGD with Nesterov momentum, cosine-annealed", float, low=0.0, low_open=True),
    "weight_decay": Knob("L2 weight decay", float, low=0.0),
    "augment": Knob("random crop (pad 4) and horizontal flip, as on CIFAR (not for digits)", bool),
    "download": Knob("allow downloading real datasets", bool),
    **SPARSITY_KNOBS,
}

_COMMON = {"device": "auto", "out_dir": None, "progress": False, "methods": list(CHAPTER_METHODS),
           "corruptions": list(corruptions.CORRUPTIONS), "distribution": "erk", "weight_decay": 5e-4,
           "drop_fraction": 0.5}
_DIGITS = {**_COMMON, "dataset": "digits", "model": "cnn_small_s2", "augment": False, "download": False,
           "radii": [1, 2, 4, 8, 12, 16]}

SPEC = ChapterSpec(
    name="corruption_robustness",
    title="DST vs dense: robustness to image corruptions",
    notebook="book/02_corruption_robustness.ipynb",
    paper="wu2025dst_robustness",
    knobs=KNOBS,
    profiles={
        "smoke": {**_DIGITS, "methods": ["dense", "rigl"], "sparsities": [0.5], "seeds": [0],
                  "corruptions": ["gaussian_noise", "defocus_blur", "contrast"], "severities": [1, 5],
                  "eval_images": 64, "epochs": 1, "batch_size": 64, "lr": 0.05, "update_every": 10,
                  "radii": [2, 8, 16]},
        "tutorial": {**_DIGITS, "sparsities": [0.1, 0.3, 0.5, 0.7], "seeds": [0, 1, 2, 3, 4],
                     "severities": [1, 2, 3, 4, 5], "eval_images": 240, "epochs": 6, "batch_size": 64,
                     "lr": 0.05, "update_every": 20},
        # CIFAR-10-C with VGG-16 (the paper's Table for CIFAR-10); CIFAR-100-C with ResNet-34 is
        # `--set dataset=cifar100 --set model=resnet34`. Schedule: the authors' ITOP/GraNet CIFAR
        # defaults (SGD 0.1, Nesterov, wd 5e-4, batch 128, 250 epochs), ERK, dT = 1000 steps, drop 0.5.
        "paper": {**_COMMON, "dataset": "cifar10", "model": "vgg16", "sparsities": [0.1, 0.3, 0.5, 0.7],
                  "seeds": [0, 1, 2], "severities": [1, 2, 3, 4, 5], "eval_images": 0, "epochs": 250,
                  "batch_size": 128, "lr": 0.1, "update_every": 1000, "augment": True, "download": True,
                  "radii": [1, 2, 4, 6, 8, 10, 12, 14, 16]},
    },
)


def load_data(config: Config):
    """Train and test splits (images in [0, 1], ``(N, 3, 32, 32)``; rank 0 first under ``torchrun``)."""
    options = {"size": 32, "channels": 3} if config.dataset == "digits" else {"download": config.download}
    with main_process_first():
        return data.load(config.dataset, "train", **options), data.load(config.dataset, "test", **options)


def evaluation_subset(test_set, config: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``eval_images`` test images of a fixed seeded permutation (all of them for 0)."""
    x, y = test_set.tensors
    if config.eval_images == 0 or config.eval_images >= len(y):
        return x, y
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: config.eval_images]
    return x[order], y[order]


def corrupted_test_sets(config: Config, test_set) -> dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]:
    """``{(corruption, severity): (images, targets)}``: generated here for digits, read from the
    CIFAR-C benchmark files for CIFAR."""
    if config.dataset == "digits":
        x, y = evaluation_subset(test_set, config)
        sets = corruptions.corrupt_all(x, names=config.corruptions, severities=config.severities, seed=0,
                                       cache_dir=data.data_root() / "cache" / "corruptions")
        return {key: (images, y) for key, images in sets.items()}
    out = {}
    for name in config.corruptions:
        for severity in config.severities:
            split = data.load(BENCHMARKS[config.dataset], "test", download=config.download, corruption=name,
                              severity=severity)
            out[(name, severity)] = evaluation_subset(split, config)
    return out


def robustness_metrics(model: torch.nn.Module, corrupted: dict) -> dict[str, Any]:
    """Accuracy on every (corruption, severity) set and their mean, the robustness accuracy."""
    per_set = {f"{name}/{severity}": evaluate(model, tensors)["accuracy"]
               for (name, severity), tensors in corrupted.items()}
    return {"robustness_accuracy": sum(per_set.values()) / len(per_set), "corruption_accuracy": per_set}


def filtered_test_sets(images: torch.Tensor, radii: list[int]) -> dict[tuple[str, int], torch.Tensor]:
    """``{("low_pass" | "high_pass", r): images filtered at radius r}`` for the radius-accuracy curves."""
    return {(f"{mode}_pass", r): (spectral.low_pass if mode == "low" else spectral.high_pass)(images, r)
            for mode in ("low", "high") for r in radii}


def spectral_metrics(model: torch.nn.Module, filtered: dict[tuple[str, int], torch.Tensor],
                     targets: torch.Tensor) -> dict[str, dict[str, float]]:
    """Radius-accuracy curves of ``model``: ``{"low_pass": {r: acc}, "high_pass": {r: acc}}``."""
    curves: dict[str, dict[str, float]] = {"low_pass": {}, "high_pass": {}}
    for (mode, radius), images in filtered.items():
        curves[mode][str(radius)] = float((predict(model, images).argmax(1) == targets).float().mean())
    return curves


def train_one(params: dict[str, Any], checkpoint, config: Config, train_set, test_set, corrupted, filtered,
              targets) -> Outcome:
    """Train and evaluate one (method, sparsity, seed)."""
    num_classes = int(train_set.tensors[1].max()) + 1
    fitted = fit(lambda: models.build(config.model, in_channels=3, num_classes=num_classes), train_set,
                 epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
                 sparsity=engine_factory(params["method"], params["density"], config, params["seed"]),
                 augment=random_crop_flip if config.augment else None, seed=params["seed"], device=config.device,
                 progress=config.progress, checkpoint=checkpoint, resume=True)
    metrics = {"clean_accuracy": evaluate(fitted.model, test_set)["accuracy"],
               **robustness_metrics(fitted.model, corrupted),
               **spectral_metrics(fitted.model, filtered, targets)}
    return Outcome(metrics, fitted.history)


def run(config: Config) -> ChapterResult:
    """Train every (method, sparsity, seed) of ``config``; return the records."""
    train_set, test_set = load_data(config)
    with main_process_first():
        corrupted = corrupted_test_sets(config, test_set)
    images, targets = evaluation_subset(test_set, config)
    filtered = filtered_test_sets(images, config.radii)
    result = ChapterResult(config)
    for point in grid({"seed": config.seeds, "method": config.methods, "density": densities_of(config)}, DENSE_ONCE):
        record, _ = run_point(config, point, lambda params, checkpoint: train_one(
            params, checkpoint, config, train_set, test_set, corrupted, filtered, targets))
        result.records.append(record)
    return result
