"""Chapter 5's paper path (the full-size E2ENet on AMOS 2022 in its extracted NIfTI layout) through a fast dev
run on a generated fixture, its cost table's units, and a fixture with a wrong layout refused naming the file
expected."""

import pytest

from dstlib import experiments
from dstlib.experiments import scale

CHAPTER = experiments.module("sparse_feature_fusion")


# The fast dev run trains the paper's network (48 base channels, 6 levels) on 64^3 volumes at batch 1, four
# variants of three steps each: about 5 minutes on one thread with a peak RSS of 4.6 GiB (2026-12, a shared
# machine), not the ~60 s of the other chapters' (the comment at FAST_DEV_VOLUME_SIZE says why the volume
# cannot be smaller).
@pytest.mark.slow
def test_paper_fast_dev_run_on_an_amos22_fixture():
    result, table = scale.fast_dev_on_fixture(CHAPTER, workers=1)
    paper = experiments.resolve("sparse_feature_fusion", "paper")
    records = {(r["params"]["conv_mode"], r["params"]["sparsity"]): r for r in result.records}
    assert set(records) == {(v["conv_mode"], v["sparsity"]) for v in CHAPTER.variants(paper)}
    assert all(r["params"]["fast_dev_run"] and r["config"]["dataset"] == "amos22_ct" for r in result.records)
    assert all((r["config"]["base_channels"], r["config"]["levels"], r["config"]["volume_size"]) == (48, 6, 64)
               for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 and r["history"][-1]["step_time_s"] > 0
               for r in result.records)
    dense = records["shift", 0.0]["metrics"]
    # the full-size network on AMOS: 21.6M parameters with dense fusion and 9.0M active at S = 0.8 (the
    # paper's 23.90M and 9.44M), and a step's counted FLOPs (batch 1) about 3x the forward FLOPs of a volume
    assert 20e6 < dense["params"] < 25e6 and 8.5e6 < records["shift", 0.8]["metrics"]["active_params"] < 10e6
    ratio = records["shift", 0.0]["history"][-1]["flops_per_step"] / (1e9 * dense["dense_gflops"])
    assert 2.5 < ratio < 3.5
    assert all(r["metrics"]["itop_rate"] > r["params"]["density"] for r in result.records
               if r["params"]["density"] < 1)  # a topology update moved kernels
    assert table.iloc[-1]["runs"] == len(CHAPTER.points(paper))
    assert (table["samples_per_step"].dropna() == 2).all()  # two 128^3 volumes a step
    assert experiments.judge(CHAPTER, result.frame).judged  # the analysis runs on the marked records
    assert CHAPTER.with_labels(result.frame)["variant"].nunique() == len(records)
    assert not CHAPTER.flow_table(result.frame, 0.8).empty


def test_paper_steps_count_the_profiles_schedule_in_fast_dev_volumes():
    paper = experiments.resolve("sparse_feature_fusion", "paper")
    point = CHAPTER.points(paper)[0]
    # 200 AMOS CT cases at batch 2, a 128^3 volume costing 8 of the fast dev run's 64^3 ones
    assert CHAPTER.paper_steps(paper, point) == (1000 * 100, 2, 8.0)
    tutorial = experiments.resolve("sparse_feature_fusion", "tutorial")
    assert CHAPTER.paper_steps(tutorial, point) == (30 * 8, 2, (24 / 64) ** 3)
    with pytest.raises(ValueError, match=r"volume_size=128: allowed 64 in a fast dev run"):
        experiments.resolve("sparse_feature_fusion", "paper", fast_dev_run=True, volume_size=128)


@pytest.mark.parametrize("removed", ["labelsTr/amos_0002.nii.gz", "imagesVa/amos_0004.nii.gz",
                                     "amos22/dataset.json"])
def test_paper_fixture_with_a_wrong_layout_names_the_file_expected(tmp_path, monkeypatch, removed):
    CHAPTER.fixture(tmp_path)
    next(path for path in tmp_path.rglob("*") if path.as_posix().endswith(removed)).unlink()
    monkeypatch.setattr(CHAPTER, "train_one", lambda *args: pytest.fail("trained on a wrong layout"))
    with scale.data_at(tmp_path), pytest.raises(FileNotFoundError, match=removed.split("/")[-1]):
        scale.fast_dev_run(CHAPTER, "paper", out_dir=str(tmp_path / "results"), workers=1, progress=False)
