"""Chapter 1's paper path (WideResNet-22-2 on CIFAR-10 in its extracted python-pickle layout) through a fast
dev run on a generated fixture, and a fixture with a wrong layout refused naming the file expected."""

import pytest

from dstlib import experiments
from dstlib.experiments import scale

CHAPTER = experiments.module("dst_from_scratch")


def test_paper_fast_dev_run_on_a_real_layout_fixture():
    result, table = scale.fast_dev_on_fixture(CHAPTER, workers=1)
    paper = experiments.resolve("dst_from_scratch", "paper")
    assert all(r["params"]["fast_dev_run"] and r["config"]["model"] == "wrn22_2" for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 and r["history"][-1]["step_time_s"] > 0
               for r in result.records)
    dense = next(r for r in result.records if r["params"]["method"] == "dense")
    # the full-size network: a step's counted FLOPs (batch 2) are about 3x its forward FLOPs per image x 2
    ratio = dense["history"][-1]["flops_per_step"] / (2 * dense["metrics"]["dense_inference_flops"])
    assert 2.5 < ratio < 3.5
    assert all(r["metrics"]["itop_rate"] > r["metrics"]["realised_density"] for r in result.records
               if r["params"]["method"] in ("set", "rigl"))  # a topology update moved weights
    assert table.iloc[-1]["runs"] == len(CHAPTER.points(paper))
    assert experiments.judge(CHAPTER, result.frame).judged  # the analysis runs on the marked records


CORRUPTION = experiments.module("corruption_robustness")
HARD = experiments.module("hard_samples")


@pytest.mark.parametrize(("chapter", "removed"), [(CHAPTER, "data_batch_3"), (CORRUPTION, "gaussian_noise.npy"),
                                                   (HARD, "cifar-100-python/train")],
                         ids=["dst_from_scratch", "corruption_robustness", "hard_samples"])
def test_paper_fixture_with_a_wrong_layout_names_the_file_expected(tmp_path, chapter, removed):
    chapter.fixture(tmp_path)
    next(path for path in tmp_path.rglob("*") if path.as_posix().endswith(removed)).unlink()
    with scale.data_at(tmp_path), pytest.raises(FileNotFoundError, match=removed):
        scale.fast_dev_run(chapter, "paper", out_dir=str(tmp_path / "results"), workers=1, progress=False)


def test_chapter_2_paper_fast_dev_run_on_cifar10_and_cifar10c_fixtures():
    result, table = scale.fast_dev_on_fixture(CORRUPTION, workers=1)
    paper = experiments.resolve("corruption_robustness", "paper")
    assert {r["params"]["method"] for r in result.records} == set(paper.methods)
    assert all(r["params"]["fast_dev_run"] and r["config"]["model"] == "vgg16" for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 for r in result.records)
    assert table.iloc[-1]["runs"] == len(CORRUPTION.points(paper))



def test_chapter_3_paper_fast_dev_run_scores_prunes_and_attacks_on_a_cifar100_fixture():
    result, table = scale.fast_dev_on_fixture(HARD, workers=1)
    paper = experiments.resolve("hard_samples", "paper")
    assert all(r["params"]["fast_dev_run"] and r["config"]["model"] == "resnet18" for r in result.records)
    assert {r["params"]["setting"] for r in result.records} >= {"el2n", "corrupted", "adversarial"}
    assert table.iloc[-1]["runs"] == len(HARD.points(paper))
