"""Chapter 6's paper path (DSN's full-size SCNN on a UCR problem in the extracted UCR 2018 archive's layout)
through a fast dev run on a generated fixture, its cost table over the 85 problems priced by series length,
the archive sizes it uses, and a fixture with a wrong layout refused naming the file expected."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dstlib import data, experiments
from dstlib.data.timeseries import UCR_85_SIZES
from dstlib.experiments import scale

CHAPTER = experiments.module("dynamic_sparse_timeseries")
# SCNN at DSN's size (nf 47, depth 4, k 39, 3 groups) on a univariate problem of 3 classes (ArrowHead): the first
# module 141 x 1 x 39 taps + BN, three modules of 1x1 bottleneck 47 x 141, 141 x 47 x 39 taps + BN, head 3 x 141 + BN.
SCNN_PARAMS = 141 * 39 + 282 + 3 * (47 * 141 + 141 * 47 * 39 + 282) + 3 * 141 + 6


def test_paper_fast_dev_run_on_a_ucr_archive_fixture():
    result, table = scale.fast_dev_on_fixture(CHAPTER, workers=1)
    paper = experiments.resolve("dynamic_sparse_timeseries", "paper")
    assert {r["params"]["variant"] for r in result.records} == set(paper.variants)
    assert all(r["params"]["fast_dev_run"] and r["params"]["dataset"] == "ArrowHead" for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 and r["history"][-1]["step_time_s"] > 0
               for r in result.records)
    metrics = {r["params"]["variant"]: r["metrics"] for r in result.records}
    assert metrics["dense_large"]["params_total"] == SCNN_PARAMS == 802_296  # the full-size network
    dense = next(r for r in result.records if r["params"]["variant"] == "dense_large")
    # a step's counted FLOPs (batch 2) are about 3x the forward FLOPs per series x 2
    ratio = dense["history"][-1]["flops_per_step"] / (2 * dense["metrics"]["flops_dense_forward"])
    assert 2.5 < ratio < 3.5
    assert all(m["num_test"] == 8 for m in metrics.values())  # FAST_DEV_EVAL_SAMPLES
    for variant in ("dsn", "unconstrained"):  # a topology update moved weights
        assert metrics[variant]["itop_rate"] > metrics[variant]["layer_density"]
    assert metrics["static_regions"]["itop_rate"] == pytest.approx(metrics["static_regions"]["layer_density"])
    assert table.iloc[-1]["runs"] == len(CHAPTER.points(paper)) == 85 * 5 * 3
    assert experiments.judge(CHAPTER, result.frame).judged  # the analysis runs on the marked records


def test_paper_steps_use_dsns_batch_rule_and_price_each_problem_by_its_length():
    paper = experiments.resolve("dynamic_sparse_timeseries", "paper")
    # ArrowHead: 36 series, 27 after the validation quarter: batch max(min(2, 16), 2) = 2, 14 steps an epoch
    assert CHAPTER.paper_steps(paper, {"seed": 0, "dataset": "ArrowHead", "variant": "dsn"}) == (14_000, 2, 1.0)
    # HandOutlines: 1000 series, 750 fitted: batch 16, 47 steps an epoch, each series 2709 steps long
    steps, per_step, cost = CHAPTER.paper_steps(paper, {"seed": 0, "dataset": "HandOutlines", "variant": "dsn"})
    assert steps == 1000 * math.ceil(750 / 16) and per_step == 16 and cost == pytest.approx(2709 / 251)
    given = experiments.resolve("dynamic_sparse_timeseries", "paper", datasets=["HandOutlines"])
    assert CHAPTER.paper_steps(given, {"seed": 0, "dataset": "HandOutlines", "variant": "dsn"})[1:] == (16, 1.0)
    with pytest.raises(ValueError, match="datasets='BasicMotions'"):
        CHAPTER.paper_steps(given, {"seed": 0, "dataset": "BasicMotions", "variant": "dsn"})


def test_scnn_training_flops_per_series_are_proportional_to_the_length():
    paper = experiments.resolve("dynamic_sparse_timeseries", "paper")
    per_step = {}
    for length in (24, 251, 2709):
        model = CHAPTER.build_model(paper, "dense_large", 3, 1)
        with FlopCounterMode(display=False) as counter:
            torch.nn.functional.cross_entropy(model(torch.randn(2, 1, length)), torch.tensor([0, 1])).backward()
        per_step[length] = counter.get_total_flops() / length
    assert per_step[24] == pytest.approx(per_step[251], rel=0.005)
    assert per_step[2709] == pytest.approx(per_step[251], rel=0.005)


def test_the_archive_sizes_match_sktimes_bundled_copies(tmp_path):
    assert len(UCR_85_SIZES) == 85 and tuple(UCR_85_SIZES) == CHAPTER.UCR_85
    for name in ("ArrowHead", "GunPoint", "ItalyPowerDemand", "OSULeaf"):
        train, test = (data.load("ucr", split, root=tmp_path, problem=name).tensors for split in ("train", "test"))
        size = UCR_85_SIZES[name]
        assert (len(train[1]), len(test[1]), train[0].shape[-1]) == (size.train, size.test, size.length)
        assert int(torch.cat([train[1], test[1]]).max()) + 1 == size.classes


def test_paper_fixture_with_a_wrong_layout_names_the_file_expected(tmp_path):
    CHAPTER.fixture(tmp_path)
    next(tmp_path.rglob("ArrowHead_TEST.tsv")).unlink()
    with scale.data_at(tmp_path), pytest.raises(FileNotFoundError,
                                                match=r"ArrowHead_TRAIN\.tsv exists but \S+ArrowHead_TEST\.tsv"):
        scale.fast_dev_run(CHAPTER, "paper", out_dir=str(tmp_path / "results"), workers=1, progress=False)
    assert not (tmp_path / "results").exists()  # refused before any training
