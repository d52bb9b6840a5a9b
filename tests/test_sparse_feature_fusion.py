"""Chapter 5 (E2ENet): the DSFF preset, fusion flows, deep supervision, NSD, the NIfTI loaders and the
chapter's grid and verdicts."""

import numpy as np
import pandas as pd
import pytest
import torch

from dstlib import data, experiments, models, sparse
from dstlib.data import nifti
from dstlib.data.fixtures import volumes
from dstlib.data.registry import DatasetNotAvailable
from dstlib.experiments import sparse_feature_fusion as chapter
from dstlib.metrics import Dice, SurfaceDice
from dstlib.models.conv3d import DepthShift
from dstlib.optimisation import make_lr_schedule
from dstlib.tasks import Segmentation

# --- model ---------------------------------------------------------------------------------------------


def test_depth_shift_has_no_parameters():
    assert list(DepthShift(3).parameters()) == []


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
def test_e2enet_shapes_for_several_level_counts(levels):
    size = 2 ** (levels - 1) * 2
    model = models.build("e2enet", num_classes=4, levels=levels, base_channels=4, deep_supervision=True)
    x = torch.randn(2, 1, size, size, size)
    heads = model(x)  # training mode: every deep-supervision head, full resolution first
    assert [tuple(h.shape) for h in heads] == [(2, 4, size // 2**i, size // 2**i, size // 2**i)
                                               for i in range(levels - 1)]
    assert model.eval()(x).shape == (2, 4, size, size, size)  # eval mode: the full-resolution logits only


def test_input_flows_partition_every_fusion_conv_input():
    fusion = models.build("e2enet", levels=4, base_channels=4).fusion
    for key, node in fusion.nodes.items():
        level, stage = (int(p) for p in key[1:].split("_"))
        flows = fusion.input_flows(level, stage)
        covered = torch.cat([torch.arange(node.conv.in_channels)[s] for s in flows.values()])
        assert torch.equal(covered, torch.arange(node.conv.in_channels))
        assert ("downward" in flows) == (level > 0)
    with pytest.raises(ValueError, match=r"\(level, stage\)"):
        fusion.input_flows(3, 1)


# --- DSFF ----------------------------------------------------------------------------------------------


def _dsff_run(density=0.2, steps=12, update_every=3):
    torch.manual_seed(0)
    model = models.build("e2enet", num_classes=3, levels=3, base_channels=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = sparse.DSFF(model, optimizer, density=density, total_steps=steps, update_every=update_every)
    x, y = torch.randn(2, 1, 8, 8, 8), torch.randint(0, 3, (2, 8, 8, 8))
    snapshots = [{k: m.clone() for k, m in engine.masks.items()}]
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        engine.step()
        snapshots.append({k: m.clone() for k, m in engine.masks.items()})
    return model, engine, snapshots


def test_dsff_masks_whole_kernels_of_the_fusion_layers_only_with_exact_counts():
    model, engine, snapshots = _dsff_run()
    fusion = {n for n, p in model.named_parameters() if n.startswith("fusion.") and p.dim() == 5}
    assert set(engine.masks) == fusion  # encoder, heads, norms and biases stay dense
    kernels = {name: mask.flatten(2).any(-1) for name, mask in snapshots[0].items()}
    total = sum(k.numel() for k in kernels.values())
    for masks in snapshots:
        units = {name: mask.flatten(2) for name, mask in masks.items()}
        assert all(torch.equal(u.all(-1), u.any(-1)) for u in units.values())  # each kernel all on or all off
        assert sum(int(u.any(-1).sum()) for u in units.values()) == round(0.2 * total)
        for u in units.values():  # uniform: every layer within one kernel of S = 0.8
            assert abs(int(u.any(-1).sum()) - 0.2 * u.shape[0] * u.shape[1]) <= 1
    for name, parameter in model.named_parameters():
        if name in engine.masks:
            assert (parameter[~engine.masks[name]] == 0).all()
    assert any(not torch.equal(snapshots[0][k], snapshots[-1][k]) for k in fusion)  # the topology moved


def test_dsff_defaults_are_the_papers_not_the_engines():
    _, engine, _ = _dsff_run(steps=100, update_every=10)
    schedule = engine.drop_fraction
    assert schedule.initial == 0.5 and schedule.minimum == 0.001 and schedule.kind == "cosine"
    assert schedule.end == 100  # decayed over the whole run, not RigL's 75%
    with pytest.raises(ValueError, match="granularity"):
        sparse.DSFF(models.build("e2enet"), torch.optim.SGD(models.build("e2enet").parameters(), lr=0.1),
                    density=0.2, total_steps=10, granularity="element")


def test_flow_densities_count_active_kernels_per_level_and_flow():
    model = models.build("e2enet", levels=3, base_channels=4)
    masks = {f"fusion.nodes.{k}.conv.weight": torch.zeros_like(n.conv.weight, dtype=torch.bool)
             for k, n in model.fusion.nodes.items()}
    masks["fusion.nodes.x1_1.conv.weight"][:, 16:20] = True  # the downward flow of level 1: all 4 channels
    masks["fusion.nodes.x0_1.conv.weight"][0, 0] = True  # one forward kernel at level 0, stage 1
    flows = chapter.flow_densities(model, masks)
    assert flows["flow_downward_L1"] == 1.0 and flows["flow_forward_L1"] == 0.0
    assert flows["flow_forward_L0"] == pytest.approx(1 / (2 * 4 * 4))  # 1 of 16 kernels in each of 2 stages
    assert "flow_downward_L0" not in flows


# --- loss, metrics, schedule ---------------------------------------------------------------------------


def test_deep_supervision_weights_follow_nnunet():
    assert chapter.deep_supervision_weights(3) == pytest.approx([1 / 1.5, 0.5 / 1.5, 0.0])
    assert chapter.deep_supervision_weights(1) == [1.0]


def test_surface_dice_on_a_hand_made_case():
    labels = torch.zeros(2, 10, 10, 10, dtype=torch.long)
    labels[:, 2:8, 2:8, 2:8] = 1
    prediction = labels.clone()
    prediction[1] = torch.roll(labels[1], 2, dims=0)  # the cube moved by two slices in depth

    def scores(metric):
        metric.update(Segmentation(), torch.nn.functional.one_hot(prediction, 3).movedim(-1, 1).float(),
                      {"target": labels})
        return metric.scores[0]

    nsd = scores(SurfaceDice(tolerance=1.0))
    assert nsd[0, 0] == 1.0 and 0 < nsd[1, 0] < 1 and torch.isnan(nsd[:, 1]).all()  # class 2 absent: skipped
    assert scores(SurfaceDice(tolerance=2.0))[1, 0] == 1.0  # every boundary voxel within two voxels
    assert scores(Dice())[1, 0] == pytest.approx(2 * 4 * 36 / (2 * 216))  # overlap 4 of 6 slices


def test_poly_schedule_decays_like_nnunet():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = make_lr_schedule(optimizer, "poly", 10)
    assert [round(schedule.lr_lambdas[0](t), 6) for t in (0, 5, 10)] == [1.0, round(0.5**0.9, 6), 0.0]


# --- NIfTI datasets --------------------------------------------------------------------------------------


def test_nifti_loader_reads_the_msd_layout_and_holds_out_the_last_cases(tmp_path):
    spec = nifti.DATASETS["btcv"]
    volumes.write_btcv(tmp_path, cases=5)
    train = data.load("btcv", "train", root=tmp_path, size=8)
    test = data.load("btcv", "test", root=tmp_path, size=8)
    x, y = train.tensors
    assert x.shape == (4, 1, 8, 8, 8) and y.shape == (4, 8, 8, 8) and test.tensors[0].shape[0] == 1
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1  # CT window scaled to [0, 1]
    assert set(y.unique().tolist()) <= set(range(spec.num_classes)) and int(y.max()) > 0


def test_nifti_loader_keeps_amos_ct_cases_and_its_validation_split(tmp_path):
    volumes.write_amos22(tmp_path, ct_training=2, ct_validation=1, mri_cases=1)
    assert len(data.load("amos22_ct", "train", root=tmp_path, size=8)) == 2  # amos_0540 is MRI
    assert len(data.load("amos22_ct", "test", root=tmp_path, size=8)) == 1  # so is amos_0541


def test_nifti_loader_puts_modalities_first_and_zscores_mri(tmp_path):
    volumes.write_msd_brats(tmp_path, cases=3)
    x, _ = data.load("msd_task01_brats", "train", root=tmp_path, size=8).tensors
    assert x.shape == (2, 4, 8, 8, 8)
    assert abs(float(x.mean())) < 0.2 and 0.5 < float(x.std()) < 1.5


def test_nifti_loader_says_where_to_put_a_missing_dataset(tmp_path):
    with pytest.raises(DatasetNotAvailable, match=r"amos22.*dataset.json"):
        data.load("amos22_ct", "train", root=tmp_path)
    with pytest.raises(DatasetNotAvailable, match="Task01_BrainTumour.tar"):
        data.load("msd_task01_brats", "train", root=tmp_path)
    with pytest.raises(ValueError, match="size=4"):
        data.load("btcv", "train", root=tmp_path, size=4)


# --- the chapter -------------------------------------------------------------------------------------------


def test_the_grid_runs_the_dsff_ablation_then_the_depth_ablation():
    cfg = experiments.resolve("sparse_feature_fusion", "tutorial")
    assert chapter.variants(cfg) == [{"conv_mode": "shift", "sparsity": 0.0}, {"conv_mode": "shift", "sparsity": 0.5},
                                     {"conv_mode": "shift", "sparsity": 0.8}, {"conv_mode": "2d", "sparsity": 0.8},
                                     {"conv_mode": "3d", "sparsity": 0.8}]
    cfg = experiments.resolve("sparse_feature_fusion", "tutorial", conv_modes=["shift", "3d"])
    assert len(chapter.variants(cfg)) == 4  # shift at the ablation sparsity is not run twice


def test_a_volume_size_the_network_cannot_halve_fails_before_any_data_is_loaded(monkeypatch):
    monkeypatch.setattr(chapter, "load", lambda config: pytest.fail("data loaded"))
    with pytest.raises(ValueError, match=r"volume_size=20: allowed a multiple of 2 \*\* \(levels - 1\) = 8"):
        experiments.run(chapter, experiments.resolve("sparse_feature_fusion", "smoke", volume_size=20, levels=4))


def test_a_deepest_level_of_one_voxel_is_refused():
    with pytest.raises(ValueError, match=r"volume_size=16: allowed at least 2 \* 2 \*\* \(levels - 1\) = 32"):
        experiments.resolve("sparse_feature_fusion", "smoke", volume_size=16, levels=5)
    assert experiments.resolve("sparse_feature_fusion", "smoke", volume_size=32, levels=5).levels == 5


def test_an_even_number_of_shift_groups_is_refused():
    with pytest.raises(ValueError, match="shift_groups=4: allowed an odd integer"):
        experiments.resolve("sparse_feature_fusion", "smoke", shift_groups=4)


def test_points_carry_the_fusion_density():
    cfg = experiments.resolve("sparse_feature_fusion", "smoke")
    assert chapter.points(cfg) == [{"seed": 0, "conv_mode": "shift", "density": 1.0},
                                   {"seed": 0, "conv_mode": "shift", "density": 0.2},
                                   {"seed": 0, "conv_mode": "2d", "density": 0.2},
                                   {"seed": 0, "conv_mode": "3d", "density": 0.2}]


def _frame(dice):
    rows = []
    for seed in range(4):
        for (mode, s), value in dice.items():
            rows.append({"seed": seed, "conv_mode": mode, "sparsity": s, "dice": value + 0.001 * seed,
                         "nsd": value, "active_params": 100 if s == 0 else 60, "active_fusion_params": 50,
                         "gflops": 1.0, "flow_forward_L0": 0.3, "flow_upward_L0": 0.1})
    return pd.DataFrame(rows)


def test_verdicts_pair_by_seed_and_split_the_error_budget():
    frame = _frame({("shift", 0.0): 0.500, ("shift", 0.8): 0.505, ("2d", 0.8): 0.40, ("3d", 0.8): 0.60})
    frame["dice"] += np.random.default_rng(0).normal(0, 0.002, len(frame))  # a little spread over seeds
    judgement = experiments.judge(chapter, frame)
    superiority, matches = judgement.verdicts, judgement.margins
    assert [v.name for v in superiority] == ["depth shift - plain 2-D convolutions (S=0.8): Dice gain"]
    assert superiority[0].effect.estimate == pytest.approx(10.5, abs=0.5) and superiority[0].outcome == "reproduced"
    assert judgement.headline == "DSFF S=0.8 vs dense fusion: Dice" and judgement.gate_open
    assert superiority[0].alpha == pytest.approx(0.05 / 2)  # one of the two claims tested after the headline
    by_name = {m.name: m for m in matches}
    assert by_name["DSFF S=0.8 vs dense fusion: Dice"].outcome == "reproduced"  # +0.5 inside +/-2 points
    assert by_name["depth shift vs 3x3x3 convolutions (S=0.8): Dice"].outcome == "contradicted"  # -9.5 points
    labelled = chapter.with_labels(frame)
    assert set(labelled["variant"]) == {"shift, dense fusion", "shift, DSFF S=0.8", "2d, DSFF S=0.8",
                                        "3d, DSFF S=0.8"}
    assert labelled.loc[labelled["sparsity"] > 0, "active_params_ratio"].eq(0.6).all()
    table = chapter.flow_table(frame, 0.8)
    assert list(table.columns) == ["forward", "upward"] and table.loc[0, "forward"] == pytest.approx(0.3)
