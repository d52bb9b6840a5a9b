"""Chapter 7's paper path (SLaK-T and ConvNeXt-T at 224 px on ImageNet's class folders) through a fast dev run
on a generated fixture, and fixtures with a wrong layout refused naming the folder expected."""

import shutil

import pytest

from dstlib import experiments
from dstlib.data.fixtures.imagenet import CLASSES
from dstlib.experiments import scale

CHAPTER = experiments.module("large_kernels")
# ConvNeXt-T (Liu et al. 2022): 28,589,128 parameters, 4.5 GMACs per 224 px image. The small variant has
# no depthwise-conv bias (6,624) but a BatchNorm after each depthwise conv (13,248), as SLaK's code.
CONVNEXT_T_PARAMS = 28_589_128 - 6_624 + 13_248


def test_paper_fast_dev_run_trains_every_variant_at_full_size_on_imagenet_folders():
    result, table = scale.fast_dev_on_fixture(CHAPTER, workers=1)
    paper = experiments.resolve("large_kernels", "paper")
    records = {r["params"]["variant"]: r for r in result.records}
    assert set(records) == set(paper.variants)
    assert all(r["params"]["fast_dev_run"] and r["config"]["image_size"] == 224
               and r["config"]["kernel_sizes"] == [51, 49, 47, 13] for r in result.records)
    assert all(r["history"][-1]["flops_per_step"] > 0 and r["history"][-1]["step_time_s"] > 0
               for r in result.records)
    small, slak = records["small"]["metrics"], records["slak"]["metrics"]
    assert small["params"] == CONVNEXT_T_PARAMS and 4.4e9 < small["flops_dense"] / 2 < 4.6e9  # ConvNeXt-T
    assert 29.5e6 < slak["params_nonzero"] < 31e6  # SLaK-T's 30M non-zero parameters
    assert slak["itop_rate"] > slak["sparse_layer_density"]  # a topology update moved weights
    # a step counts forward and backward, 3x the forward FLOPs of its two images (the depthwise convs' weight
    # gradients included, see dstlib.callbacks.conv_backward_flops)
    step = records["small"]["history"][-1]["flops_per_step"]
    assert 2.9 < step / (2 * small["flops_dense"]) < 3.1
    assert table.iloc[-1]["runs"] == len(CHAPTER.points(paper)) == 4
    assert experiments.judge(CHAPTER, result.frame).judged  # the analysis runs on the marked records
    assert len(CHAPTER.efficiency_table(result.frame)) == 4
    assert CHAPTER.mean_erf(result, "slak").shape == (224, 224)


def _remove_a_val_class(base):
    shutil.rmtree(base / "val" / list(CLASSES)[1])


def _leave_val_flat(base):
    """The official validation archive unpacks its images straight into val/, without class folders."""
    for image in list((base / "val").glob("*/*")):
        image.rename(base / "val" / image.name)
    for folder in (base / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()


@pytest.mark.parametrize(("damage", "expected"), [
    (_remove_a_val_class, rf"imagenet/val/{list(CLASSES)[1]} is missing or holds no images"),
    (_leave_val_flat, rf"imagenet/val/{list(CLASSES)[0]} is missing .* 8 images directly, .* valprep.sh"),
], ids=["val_class_removed", "val_flat"])
def test_paper_fixture_with_a_wrong_layout_names_the_folder_expected(tmp_path, damage, expected):
    CHAPTER.fixture(tmp_path / "data")
    damage(tmp_path / "data" / "imagenet")
    with scale.data_at(tmp_path / "data"), pytest.raises(FileNotFoundError, match=expected):
        scale.fast_dev_run(CHAPTER, "paper", out_dir=str(tmp_path / "results"), workers=1, progress=False)
    assert not list(tmp_path.glob("results/**/*.json"))  # refused before any training
