"""Chapter 7, "Large kernels with sparsity" (SLaK, Liu et al., ICLR 2023).

Each run trains one ConvNeXt-style network (:class:`dstlib.models.large_kernel.SLaKNet`) with one seed in
one *kernel variant* and measures its test accuracy, parameters, FLOPs, throughput and effective receptive
field (ERF):

* ``small``: dense 7x7 depthwise kernels (ConvNeXt);
* ``large``: dense M x M kernels, M about the feature-map size ("naively" enlarged);
* ``decomposed``: M x N + N x M + N x N branches, each with its BatchNorm (SLaK's decomposition);
* ``slak``: decomposed, ``width_factor`` wider and sparse, trained with :class:`dstlib.sparse.SLaK` (SNIP
  layer ratios at ``1 - sparsity``, magnitude prune and random regrowth every ``update_every`` steps).

Runs of one seed share the data order. The tutorial uses the two-marks task (:mod:`dstlib.data.long_range`:
the label is where one mark lies relative to another, far away), on which a network has to see far; the
paper profile trains SLaK-T / ConvNeXt-T on ImageNet-1K.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from dstlib import checks, data, erf, sparse
from dstlib.callbacks import Augmentation, Sparsity
from dstlib.config import ChapterSpec, Config, Knob
from dstlib.data.augment import random_crop_flip
from dstlib.data.fixtures.imagenet import write_imagenet
from dstlib.data.image_folder import TRAIN_SAMPLES as IMAGENET_TRAIN_SAMPLES
from dstlib.data.long_range import MARK
from dstlib.evaluation import evaluate
from dstlib.experiments.claims import BOOK_EFFECT, BOOK_EFFECT_REFERENCE, PAPER, ClaimSpec
from dstlib.experiments.common import (
    TRAINING_KNOBS,
    ChapterResult,
    Outcome,
    engine_factory,
    evaluation_part,
    fit_options,
    grid,
    headline_pair_on_every_seed,
    main_process_first,
    present,
)
from dstlib.experiments.pilot import Pilot
from dstlib.models.large_kernel import SLaKNet
from dstlib.train import fit, pick_device

VARIANTS = ("small", "large", "decomposed", "slak")
LABELS = {"small": "7x7 dense", "large": "MxM dense", "decomposed": "MxN + NxM + NxN", "slak": "SLaK (sparse, wider)"}
# SLaK-T 82.5% vs ConvNeXt-T 82.1% top-1 on ImageNet-1K (300 epochs; the code's README).
PAPER_SLAK_VS_CONVNEXT = 0.4
# ERF: the paper shows maps, no number; a wider ERF (contribution-weighted mean distance from the centre,
# dstlib.erf.mean_distance) is tested against one pixel.
ERF_EFFECT_OF_INTEREST = 1.0
ERF_SHARES = (0.2, 0.3, 0.5, 0.99)  # RepLKNet's high-contribution area ratios r(t)
# SNIP scores one mini-batch (SLaK: one GPU's 128 images); inference throughput is timed on one batch too.
MAX_PROBE_BATCH = 128
# The two-marks images keep this margin free of marks (dstlib.data.long_range's default).
TWO_MARKS_MARGIN = 3

KNOBS = {
    "dataset": Knob("two_marks (generated, offline) or imagenet (class folders, obtained by hand)", str,
                    choices=("two_marks", "imagenet")),
    "image_size": Knob("image side in pixels", int, low=8),
    "gap": Knob("two_marks: smallest distance between the marks (pixels)", int, low=5, default=12),
    "noise": Knob("two_marks: background noise amplitude", float, low=0.0, high=1.0, default=0.5),
    "num_train": Knob("two_marks: training images", int, low=8, default=2000),
    "num_test": Knob("two_marks: test images", int, low=8, default=1000),
    "variants": Knob("kernel variants to compare", str, choices=VARIANTS, is_list=True, axis=True,
                     default=list(VARIANTS)),
    "ablation_seeds": Knob("seeds of the MxM dense and dense decomposed variants, those of seeds in this list "
                           "(None: every seed); the headline's 7x7 dense and SLaK run every seed", int, low=0,
                           is_list=True, optional=True, axis=True, default=None),
    "depths": Knob("blocks per stage", int, low=1, is_list=True),
    "dims": Knob("channels per stage (before width_factor)", int, low=1, is_list=True),
    "stem_stride": Knob("patchify stem kernel and stride", int, low=1),
    "small_kernel_size": Knob("kernel of the small (ConvNeXt) variant", int, low=1),
    "kernel_sizes": Knob("large kernel M per stage (odd)", int, low=1, is_list=True),
    "short_edge": Knob("N: the short edge of the decomposed kernels and the small parallel kernel (odd)", int,
                       low=1),
    "width_factor": Knob("width multiplier of the sparse variant (SLaK: 1.3)", float, low=1.0),
    "sparsity": Knob("fraction of weights removed in the sparse variant (SLaK: 0.4)", float, low=0.0, high=1.0,
                     high_open=True),
    "only_large_kernels": Knob("sparsify only the large kernels (SLaK's --only-L) instead of every conv/linear",
                               bool, default=False),
    "update_every": Knob("optimizer steps between topology updates (SLaK-T: 2000)", int, low=1),
    "drop_fraction": Knob("fraction of active weights pruned and regrown at an update, cosine-decayed (SLaK-T: 0.5)",
                          float, low=0.0, high=1.0, high_open=True),
    "drop_path": Knob("stochastic depth rate (SLaK-T: 0.1)", float, low=0.0, high=1.0, high_open=True),
    "augment": Knob("random crops and flips (ImageNet only: flips change the two-marks labels)", bool,
                    default=False),
    "erf_images": Knob("test images averaged in each effective receptive field", int, low=1),
    **TRAINING_KNOBS,
    "optimizer": Knob("optimizer", str, choices=("sgd", "adamw")),
    "warmup_epochs": Knob("linear LR warm-up, in epochs", float, low=0.0),
    "download": Knob("allow downloading real datasets", bool, default=False),
}


def check_stages(config: Config) -> None:
    """``dims`` and ``kernel_sizes`` give one value per stage of ``depths``, and the image is large enough for
    the stem and every downsampling (each halves the map)."""
    for name in ("dims", "kernel_sizes"):
        checks.require(len(config[name]) == len(config.depths), name, config[name],
                       f"one value per stage ({len(config.depths)}, as in depths={config.depths})")
    smallest = config.stem_stride * 2 ** (len(config.depths) - 1)
    checks.require(config.image_size >= smallest, "image_size", config.image_size,
                   f"an integer >= {smallest} (stem_stride={config.stem_stride}, {len(config.depths)} stages)")


def check_kernels(config: Config) -> None:
    """The kernels the variants build have a centre (odd), and the short edge fits in the large kernels."""
    if "small" in config.variants:
        checks.require(checks.is_odd_int(config.small_kernel_size), "small_kernel_size", config.small_kernel_size,
                       "an odd integer")
    if set(config.variants) - {"small"}:
        for size in config.kernel_sizes:
            checks.require(checks.is_odd_int(size), "kernel_sizes", config.kernel_sizes, "a list of odd integers")
    if set(config.variants) & {"decomposed", "slak"}:
        checks.require(checks.is_odd_int(config.short_edge) and config.short_edge <= min(config.kernel_sizes),
                       "short_edge", config.short_edge,
                       f"an odd integer <= the smallest of kernel_sizes ({min(config.kernel_sizes)})")


def check_two_marks(config: Config) -> None:
    """Two-marks images: the marks fit at ``gap`` (``dstlib.data.long_range``), and no flips (a flip moves the
    second mark to the other side and changes the label)."""
    if config.dataset != "two_marks":
        return
    span = config.image_size - 2 * TWO_MARKS_MARGIN - MARK
    checks.require(config.gap <= span, "gap", config.gap,
                   f"an integer in [{MARK}, {span}] with image_size={config.image_size}")
    checks.require(not config.augment, "augment", config.augment, "False with dataset='two_marks' (a flip changes "
                   "the label; crops and flips are for imagenet)")


SPEC = ChapterSpec(
    name="large_kernels",
    title="Large kernels with sparsity (SLaK)",
    notebook="book/07_large_kernels.ipynb",
    paper="liu2023slak",
    knobs=KNOBS,
    checks=(check_stages, check_kernels, check_two_marks),
    # Every variant at full size (SLaK-T / ConvNeXt-T at 224 px in the paper profile), a batch of two, and
    # the ERF over two of the evaluation images instead of 50.
    fast_dev={"batch_size": 2, "erf_images": 2},
    # SLaK's settings (Liu et al. 2023, SLaK-T): 1.3x width, 40% sparsity over every conv/linear weight,
    # drop fraction 0.5, AdamW 4e-3 with weight decay 0.05 and a cosine schedule; ConvNeXt's 7x7 kernel for
    # the small variant. The tutorial regime, chosen by a pilot (see the chapter): the two-marks task on
    # 32x32 images, one stage of two blocks on the 16x16 map, M = 15, N = 3, batch 32, an update every 30
    # steps, ERFs over 64 test images.
    defaults={"width_factor": 1.3, "sparsity": 0.4, "drop_fraction": 0.5, "optimizer": "adamw", "lr": 4e-3,
              "weight_decay": 0.05, "lr_schedule": "cosine", "small_kernel_size": 7,
              "dataset": "two_marks", "image_size": 32, "depths": [2], "dims": [24], "stem_stride": 2,
              "kernel_sizes": [15], "short_edge": 3, "drop_path": 0.0, "erf_images": 64, "warmup_epochs": 0.5,
              "batch_size": 32, "update_every": 30},
    profiles={
        "smoke": {"image_size": 20, "gap": 6, "num_train": 64, "num_test": 64, "dims": [8], "kernel_sizes": [7],
                  "small_kernel_size": 3, "seeds": [0], "epochs": 1, "update_every": 1, "erf_images": 8},
        # The pilot's chosen regime (PILOT below): two blocks, 6 epochs, a 10,000-image test set; twelve
        # seeds for the headline's pair, three for the MxM dense and dense decomposed variants.
        "tutorial": {"seeds": list(range(12)), "ablation_seeds": [0, 1, 2], "epochs": 6, "depths": [2],
                     "gap": 12, "num_test": 10000},
        # SLaK-T / ConvNeXt-T on ImageNet-1K with the paper's optimiser, schedule and sparse recipe. Not
        # reproduced: RandAugment, Mixup/CutMix, random erasing, label smoothing and EMA.
        "paper": {"dataset": "imagenet", "image_size": 224, "depths": [3, 3, 9, 3], "dims": [96, 192, 384, 768],
                  "stem_stride": 4, "kernel_sizes": [51, 49, 47, 13], "short_edge": 5, "drop_path": 0.1,
                  "augment": True, "erf_images": 50, "seeds": [0], "epochs": 300, "batch_size": 4096,
                  "update_every": 2000, "warmup_epochs": 20.0},
    },
)

# The tutorial regime: candidates tried on seeds 100-103 (the tutorial's are 0-11) by
# ``python -m dstlib pilot large_kernels``, the headline's two variants only.
PILOT = Pilot(
    regimes={"two blocks, 6 epochs, 10k test": {"epochs": 6, "depths": [2], "gap": 12, "num_test": 10000},
             "one block, 12 epochs, 10k test": {"epochs": 12, "depths": [1], "gap": 12, "num_test": 10000}},
    chosen="two blocks, 6 epochs, 10k test", seeds=list(range(100, 104)),
    headline_grid={"variants": ["small", "slak"]},
    why="Neither regime brought the smallest detectable effect down to the book's one point: in both, SLaK's "
        "lead is large and decided, but the seeds differ in how much of the rule the 7x7 network learns, and a "
        "test set ten times the earlier one did not shrink that spread (it comes from training, not from the "
        "test sample). The chosen regime has the smaller spread; with one block the 7x7 network never sees "
        "both marks whole, yet one of the pilot's seeds still learned much of the rule and the spread grew. "
        "The tutorial gives its two variants more seeds than the pilot's (the headline's smallest detectable "
        "effect shrinks, not to one point: the last column gives the seeds that would) and the other two "
        "variants fewer. Earlier candidates (more epochs, less noise, larger images) are described in the "
        "chapter's text.")


def slak_claims(headline_effect: float, headline_reference: str) -> list[ClaimSpec]:
    """The paper's claims, paired by seed: SLaK beats the 7x7 ConvNeXt (the headline, by
    ``headline_effect``); SLaK beats the naive dense M x M kernel, and sparse + wide beats the dense
    decomposition (the recipe's steps, reported without numbers we could confirm: the book's effect of
    interest); SLaK's ERF is wider than the 7x7 one (contribution-weighted mean distance from the centre,
    in pixels)."""
    return [
        ClaimSpec("SLaK - 7x7 dense: accuracy", "accuracy", a={"variant": "slak"}, b={"variant": "small"},
                  effect=headline_effect, reference=headline_reference, headline=True),
        ClaimSpec("SLaK - MxM dense: accuracy", "accuracy", a={"variant": "slak"}, b={"variant": "large"},
                  effect=BOOK_EFFECT, reference=BOOK_EFFECT_REFERENCE),
        ClaimSpec("sparse + wider - dense decomposed: accuracy", "accuracy", a={"variant": "slak"},
                  b={"variant": "decomposed"}, effect=BOOK_EFFECT, reference=BOOK_EFFECT_REFERENCE),
        ClaimSpec("SLaK - 7x7 dense: ERF mean distance", "erf_distance", a={"variant": "slak"},
                  b={"variant": "small"}, effect=ERF_EFFECT_OF_INTEREST, reference=BOOK_EFFECT_REFERENCE,
                  units="pixels", scale=1.0),
    ]


# ImageNet top-1 in the paper profile, against the paper's +0.4.
CLAIMS = slak_claims(PAPER_SLAK_VS_CONVNEXT, PAPER)
# Two-marks accuracy is not ImageNet top-1: the other profiles hold the headline to the book's point.
TWO_MARKS_CLAIMS = slak_claims(BOOK_EFFECT, f"{BOOK_EFFECT_REFERENCE} (the paper's +{PAPER_SLAK_VS_CONVNEXT} "
                                            "is ImageNet top-1, not two-marks accuracy)")


def claims_for(profile: str) -> list[ClaimSpec]:
    """The paper's effect on ImageNet (the paper profile), the book's on two-marks (the others)."""
    return CLAIMS if profile == "paper" else TWO_MARKS_CLAIMS


def load(config: Config) -> tuple[Any, Any, int, int]:
    """``(train, test, num_classes, in_channels)``: tensors for two-marks, lazy datasets for ImageNet."""
    with main_process_first():
        if config.dataset == "two_marks":
            options = {"size": config.image_size, "gap": config.gap, "noise": config.noise,
                       "num_train": config.num_train, "num_test": config.num_test}
            train, test = (data.load("two_marks", split, **options) for split in ("train", "test"))
            return train.tensors, test.tensors, data.spec("two_marks").num_classes, 1
        train, test = (data.load("imagenet", split, download=config.download, size=config.image_size)
                       for split in ("train", "test"))
        return train, test, 1000, 3


HEADLINE_VARIANTS = ("small", "slak")


def points(config: Config) -> list[dict[str, Any]]:
    """Every (seed, variant), except that the variants outside the headline (MxM dense, dense decomposed)
    run only the seeds in ``ablation_seeds`` when it is set: the budget goes to the headline's pairs."""
    return headline_pair_on_every_seed(grid({"seed": config.seeds, "variant": config.variants}),
                                       HEADLINE_VARIANTS, config.ablation_seeds)


def paper_steps(config: Config, point: Mapping[str, Any]) -> tuple[int, int]:
    """``(optimizer steps, samples per step)`` of one run of ``config``'s grid (for its cost table): every
    variant trains ``epochs`` over the training set, ImageNet-1K's 1,281,167 images
    (:data:`dstlib.data.image_folder.TRAIN_SAMPLES`) or ``num_train`` two-marks images. SNIP's one batch, the
    ERF and the evaluation are not counted."""
    samples = IMAGENET_TRAIN_SAMPLES if config.dataset == "imagenet" else config.num_train
    return config.epochs * math.ceil(samples / config.batch_size), config.batch_size


def fixture(root: Path) -> None:
    """The paper profile's data in its real layout under ``root``: ImageNet's class folders ``train/`` and
    ``val/``, three training and four validation JPEGs for each of two classes
    (:func:`dstlib.data.fixtures.imagenet.write_imagenet`)."""
    write_imagenet(root)


def build_model(config: Config, variant: str, num_classes: int, in_channels: int) -> SLaKNet:
    """The network of ``variant`` (see the module docstring)."""
    kernels = {"small": {"kernel_size": config.small_kernel_size, "small_kernel": None, "decompose": False},
               "large": {"kernel_size": tuple(config.kernel_sizes), "small_kernel": None, "decompose": False},
               "decomposed": {"kernel_size": tuple(config.kernel_sizes), "small_kernel": config.short_edge,
                              "decompose": True}}
    kernels["slak"] = {**kernels["decomposed"], "width_factor": config.width_factor}
    return SLaKNet(num_classes, in_channels, depths=tuple(config.depths), dims=tuple(config.dims),
                   stem_stride=config.stem_stride, drop_path=config.drop_path, **kernels[variant])


def first_samples(dataset: Any, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` samples of tensors or a map-style dataset, as ``(inputs, targets)``."""
    if isinstance(dataset, tuple | list):
        return dataset[0][:count], dataset[1][:count]
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def slak_engine(config: Config, batch: tuple[torch.Tensor, torch.Tensor], seed: int):
    """The :class:`dstlib.sparse.SLaK` factory of ``config`` for :func:`dstlib.train.fit`
    (:func:`engine_factory` with the ``slak`` preset; ``batch`` scored by SNIP, moved to the training
    device)."""
    device = pick_device(config.device)
    return engine_factory("slak", 1.0 - config.sparsity, config, seed, batch=tuple(t.to(device) for t in batch),
                          only_large_kernels=config.only_large_kernels, update_every=config.update_every,
                          drop_fraction=config.drop_fraction)


def count_parameters(model: nn.Module, engine: Any = None) -> tuple[int, int]:
    """``(all parameters, non-pruned parameters)``: masked-out weights are not counted in the second."""
    total = sum(p.numel() for p in model.parameters())
    pruned = 0 if engine is None else sum(int((~mask).sum()) for mask in engine.masks.values())
    return total, total - pruned


@torch.no_grad()
def inference_throughput(model: nn.Module, images: torch.Tensor, repeats: int = 3) -> float:
    """Images per second of ``model`` in eval mode on ``images`` (one batch), the best of ``repeats``."""
    was_training = model.training
    model.eval()
    model(images)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        model(images)
        best = min(best, time.perf_counter() - started)
    model.train(was_training)
    return len(images) / best


def train_one(config: Config, point: Mapping[str, Any], data: tuple, checkpoint: Path) -> Outcome:
    """Train and evaluate one (seed, variant) (in a fast dev run: on the first test images only, see
    :func:`~dstlib.experiments.common.evaluation_part`); the ERF map goes to the extras."""
    train, test, num_classes, in_channels = data
    test = evaluation_part(test, config)
    variant, seed = point["variant"], point["seed"]
    probe = min(config.batch_size, MAX_PROBE_BATCH)
    snip_batch = first_samples(train, probe)
    fitted = fit(lambda: build_model(config, variant, num_classes, in_channels), train, seed=seed,
                 callbacks=present(variant == "slak" and Sparsity(slak_engine(config, snip_batch, seed)),
                                   config.augment and Augmentation(random_crop_flip)),
                 checkpoint=checkpoint, resume=True,
                 **fit_options(config, optimizer=config.optimizer, warmup_epochs=config.warmup_epochs))
    model, engine = fitted.model, fitted.engine
    device = next(model.parameters()).device
    images, _ = first_samples(test, max(config.erf_images, 1))
    field = erf.effective_receptive_field(model, images, batch_size=min(64, config.erf_images))
    total, nonzero = count_parameters(model, engine)
    counted = sparse.flops(model, images[:1].to(device), engine)
    metrics: dict[str, Any] = {
        "accuracy": evaluate(model, test, batch_size=256)["accuracy"],
        "params": total, "params_nonzero": nonzero,
        "flops": counted.sparse_forward, "flops_dense": counted.dense_forward,
        "train_images_per_s": fitted.samples_seen / fitted.wall_time_s,
        "infer_images_per_s": inference_throughput(model, first_samples(test, probe)[0].to(device)),
        "erf_distance": erf.mean_distance(field),
        **{f"erf_r{round(100 * share)}": 100 * erf.contribution_area(field, share) for share in ERF_SHARES},
    }
    if engine is not None:
        metrics["overall_density"] = engine.overall_density
        metrics["sparse_layer_density"] = engine.density  # the layers the engine kept sparse
        metrics["itop_rate"] = engine.itop_rate  # their weights ever active: above their density once updated
        metrics["dense_layers"] = list(engine.dense_layers)
    return Outcome(metrics, fitted.history, {"erf": field})


# ----------------------------------------------------------------------------------------- analysis

def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a readable ``label`` per variant, accuracy in points, millions of parameters and FLOPs."""
    out = frame.copy()
    out["label"] = out["variant"].map(LABELS)
    out["accuracy_pct"] = 100 * out["accuracy"]
    out["params_k"] = out["params_nonzero"] / 1e3
    out["mflops"] = out["flops"] / 1e6
    return out


def mean_erf(result: ChapterResult, variant: str) -> torch.Tensor | None:
    """The ERF of ``variant`` in ``result`` averaged over its seeds, scaled to [0, 1] after ``log10(1 + x)``
    (RepLKNet's display), or ``None`` when no run of it has a map."""
    maps = [extras["erf"] for _, extras in result.extras_where(variant=variant) if extras.get("erf") is not None]
    if not maps:
        return None
    shown = torch.log10(1 + torch.stack(maps).mean(dim=0))
    return shown / shown.max().clamp(min=1e-12)


def efficiency_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant, means over seeds: accuracy (points), non-zero parameters (thousands), inference MFLOPs per
    image, training and inference images per second, ERF mean distance (pixels) and area r(30%) (% of the
    image)."""
    table = with_labels(frame).groupby("variant", sort=False).agg(
        accuracy=("accuracy_pct", "mean"), accuracy_sd=("accuracy_pct", "std"), params_k=("params_k", "mean"),
        mflops=("mflops", "mean"), train_img_s=("train_images_per_s", "mean"),
        infer_img_s=("infer_images_per_s", "mean"), erf_distance=("erf_distance", "mean"),
        erf_r30=("erf_r30", "mean"))
    table.index = [LABELS[v] for v in table.index]
    return table.round({"accuracy": 1, "accuracy_sd": 1, "params_k": 1, "mflops": 2, "train_img_s": 0,
                        "infer_img_s": 0, "erf_distance": 1,
                        "erf_r30": 1})

