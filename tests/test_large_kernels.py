"""Chapter 7 (SLaK): the variants' networks, the parameter count of the sparse one, the combination checks
and the claims."""

import numpy as np
import pandas as pd
import pytest
import torch

from dstlib import experiments, stats
from dstlib.experiments import large_kernels as chapter
from dstlib.experiments.claims import BOOK_EFFECT
from dstlib.experiments.common import ChapterResult


@pytest.fixture(scope="module")
def cfg():
    return chapter.SPEC.resolve("smoke")


def test_profiles_are_complete_and_the_paper_profile_is_slak_t():
    chapter.SPEC.check()
    paper = chapter.SPEC.resolve("paper")
    assert (paper.kernel_sizes, paper.short_edge, paper.width_factor, paper.sparsity) == ([51, 49, 47, 13], 5, 1.3,
                                                                                           0.4)
    assert (paper.depths, paper.dims, paper.stem_stride, paper.update_every) == ([3, 3, 9, 3], [96, 192, 384, 768],
                                                                                  4, 2000)


def test_variants_build_the_kernels_they_name(cfg):
    blocks = {v: chapter.build_model(cfg, v, 4, 1).stages[0][0].large_kernel for v in chapter.VARIANTS}
    assert blocks["small"].full.conv.weight.shape[-2:] == (cfg.small_kernel_size,) * 2 and blocks["small"].small is None
    assert blocks["large"].full.conv.weight.shape[-2:] == (cfg.kernel_sizes[0],) * 2
    assert blocks["decomposed"].lora1.conv.weight.shape[-2:] == (cfg.kernel_sizes[0], cfg.short_edge)
    assert blocks["slak"].lora1.conv.weight.shape[0] == int(cfg.dims[0] * cfg.width_factor)


def test_sparse_variant_counts_parameters_from_its_masks(cfg):
    train_x, train_y = torch.rand(16, 1, 20, 20), torch.randint(0, 4, (16,))
    model = chapter.build_model(cfg, "slak", 4, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    engine = chapter.slak_engine(cfg, (train_x, train_y), seed=0)(model, optimizer, 10)
    total, nonzero = chapter.count_parameters(model, engine)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - nonzero == sum(int((~m).sum()) for m in engine.masks.values()) > 0
    assert chapter.count_parameters(model) == (total, total)
    assert chapter.inference_throughput(model, train_x) > 0


def _frame(seeds=5, slak_gain=6.0):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = 0.45 + 0.01 * rng.normal()
        for variant, gain, area in (("small", 0.0, 3.0), ("large", 0.1, 12.0), ("decomposed", 0.08, 10.0),
                                    ("slak", slak_gain / 100, 14.0)):
            rows.append({"seed": seed, "variant": variant, "accuracy": base + gain + 0.005 * rng.normal(),
                         "params_nonzero": 1000, "flops": 2e6, "train_images_per_s": 100.0,
                         "infer_images_per_s": 1000.0, "erf_r30": area + 0.5 * rng.normal(),
                         "erf_distance": area / 2 + 0.2 * rng.normal()})
    return pd.DataFrame(rows)


def test_claims_pair_by_seed_in_one_family():
    verdicts = experiments.judge(chapter, _frame()).verdicts
    assert [v.name for v in verdicts] == ["SLaK - 7x7 dense: accuracy", "SLaK - MxM dense: accuracy",
                                          "sparse + wider - dense decomposed: accuracy",
                                          "SLaK - 7x7 dense: ERF mean distance"]
    assert [v.family_size for v in verdicts] == [1, 3, 3, 3]  # the headline first, alone
    # two-marks accuracy is not ImageNet top-1: the headline is held to the book's effect, and says why;
    # the paper profile keeps the paper's +0.4
    assert verdicts[0].paper_effect == BOOK_EFFECT
    assert f"+{chapter.PAPER_SLAK_VS_CONVNEXT} is ImageNet top-1" in verdicts[0].reference
    paper = experiments.judge(chapter, _frame().assign(profile="paper")).verdicts
    assert paper[0].paper_effect == chapter.PAPER_SLAK_VS_CONVNEXT and paper[1].paper_effect == BOOK_EFFECT
    assert verdicts[0].effect.estimate == pytest.approx(6.0, abs=1.0)
    assert verdicts[0].outcome == stats.REPRODUCED and verdicts[1].outcome == stats.CONTRADICTED
    assert "(the book's smallest effect of interest)" in verdicts[1].sentence
    assert verdicts[3].units == "pixels" and verdicts[3].outcome == stats.REPRODUCED


def test_tables_and_erf_means(cfg):
    table = chapter.efficiency_table(_frame())
    assert list(table.index) == [chapter.LABELS[v] for v in chapter.VARIANTS]
    assert table.loc["7x7 dense", "mflops"] == 2.0
    runs = [("slak", 0, torch.rand(6, 6)), ("slak", 1, torch.rand(6, 6)), ("small", 0, None)]
    maps = ChapterResult(cfg, records=[{"params": {"variant": v, "seed": s}} for v, s, _ in runs],
                         extras=[{"erf": m} for _, _, m in runs])
    shown = chapter.mean_erf(maps, "slak")
    assert shown.shape == (6, 6) and float(shown.max()) == pytest.approx(1.0)
    assert chapter.mean_erf(maps, "small") is None


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dims": [8, 16]}, r"dims=\[8, 16\]: allowed one value per stage \(1"),
    ({"kernel_sizes": [7, 7]}, r"kernel_sizes=\[7, 7\]: allowed one value per stage"),
    ({"depths": [1, 1, 1], "dims": [8, 8, 8], "kernel_sizes": [7, 5, 3], "stem_stride": 8},
     r"image_size=20: allowed an integer >= 32"),
    ({"small_kernel_size": 4}, r"small_kernel_size=4: allowed an odd integer"),
    ({"kernel_sizes": [8]}, r"kernel_sizes=\[8\]: allowed a list of odd integers"),
    ({"short_edge": 9}, r"short_edge=9: allowed an odd integer <= the smallest of kernel_sizes \(7\)"),
    ({"short_edge": 2}, r"short_edge=2: allowed an odd integer"),
    ({"gap": 12}, r"gap=12: allowed an integer in \[5, 9\] with image_size=20"),
    ({"augment": True}, r"augment=True: allowed False with dataset='two_marks'"),
])
def test_combinations_the_networks_or_the_task_cannot_run_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        chapter.SPEC.resolve("smoke", **overrides)


def test_checks_apply_only_to_the_variants_that_build_the_kernel():
    assert chapter.SPEC.resolve("smoke", variants=["large"], small_kernel_size=4).small_kernel_size == 4
    assert chapter.SPEC.resolve("smoke", variants=["small", "large"], short_edge=9).short_edge == 9
    assert chapter.SPEC.resolve("smoke", variants=["small"], kernel_sizes=[8]).kernel_sizes == [8]


def test_the_ablation_variants_run_only_their_seeds_and_the_headline_pair_every_seed():
    every = chapter.points(chapter.SPEC.resolve("smoke", seeds=[0, 1, 2]))
    assert len(every) == 3 * len(chapter.VARIANTS)
    split = chapter.points(chapter.SPEC.resolve("smoke", seeds=[0, 1, 2], ablation_seeds=[1, 7]))
    assert sorted((p["seed"], p["variant"]) for p in split if p["variant"] in ("large", "decomposed")) == \
        [(1, "decomposed"), (1, "large")]
    assert sorted(p["seed"] for p in split if p["variant"] == "small") == [0, 1, 2]
    assert sorted(p["seed"] for p in split if p["variant"] == "slak") == [0, 1, 2]
