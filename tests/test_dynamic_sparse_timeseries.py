"""Chapter 6 (DSN): the variant grid, the engines of the variants, tap histograms, the validation split,
configuration errors, the claims, and one smoke run end to end.

Already covered elsewhere and not repeated here: the region constraint and the exact per-group counts
after every update (tests/dst_engine/test_dsn_preset.py), the motif generator's classes and the UCR/UEA
archive loader on its fixtures (tests/test_timeseries.py)."""

import numpy as np
import pandas as pd
import pytest
import torch

from dstlib import experiments, stats
from dstlib.data import DatasetNotAvailable
from dstlib.experiments import dynamic_sparse_timeseries as chapter


def _config(**overrides):
    return experiments.resolve("dynamic_sparse_timeseries", "smoke", **overrides)


def test_the_grid_is_every_dataset_times_every_variant():
    config = _config(datasets=["motifs", "ArrowHead"], variants=["dsn", "dense_large"])
    grid = [{k: v for k, v in point.items() if k != "seed"} for point in chapter.points(config)]
    assert grid == [{"dataset": "motifs", "variant": "dsn"}, {"dataset": "motifs", "variant": "dense_large"},
                    {"dataset": "ArrowHead", "variant": "dsn"}, {"dataset": "ArrowHead", "variant": "dense_large"}]
    assert set(chapter.VARIANT_LABELS) == set(chapter.VARIANTS)
    assert chapter.variant_order(["static_regions", "dsn"]) == ["dsn", "static_regions"]


def test_the_ablations_run_on_their_seeds_and_the_headline_pair_on_every_seed():
    config = _config(seeds=[3, 4, 5], ablation_seeds=[3])
    runs = {(point["seed"], point["variant"]) for point in chapter.points(config)}
    assert runs == ({(seed, variant) for seed in (3, 4, 5) for variant in chapter.HEADLINE_VARIANTS}
                    | {(3, variant) for variant in chapter.VARIANTS})
    assert len(chapter.points(_config(seeds=[3, 4], ablation_seeds=None))) == 2 * len(chapter.VARIANTS)


def test_motif_test_draws_a_test_set_apart_and_keeps_the_training_set():
    (x, y), (x_test, y_test) = chapter.load_dataset(_config(motif_series=40, motif_test=100), "motifs")
    (x_default, _), (x_half, _) = chapter.load_dataset(_config(motif_series=40), "motifs")
    assert x.shape == (20, 1, 128) and x_test.shape == (100, 1, 128) and x_half.shape == (20, 1, 128)
    assert torch.equal(x, x_default) and torch.bincount(y_test).tolist() == [25, 25, 25, 25]
    assert not torch.equal(x_test[:20], x_half)


def test_paper_profile_is_dsns_ucr_recipe_on_the_archive():
    paper = experiments.resolve("dynamic_sparse_timeseries", "paper")
    assert len(set(chapter.UCR_85)) == 85 and len(set(chapter.UEA_30)) == 30
    assert chapter.dataset_names(paper) == list(chapter.UCR_85) and paper.source == "archive"
    uea = experiments.resolve("dynamic_sparse_timeseries", "paper", datasets=["uea30", "BasicMotions", "motifs"])
    assert chapter.dataset_names(uea) == [*chapter.UEA_30, "motifs"]
    assert (paper.nf, paper.depth, paper.kernel_size, paper.out_groups, paper.density) == (47, 4, 39, 3, 0.2)
    assert (paper.lr, paper.epochs, paper.batch_size) == (3e-4, 1000, 0)
    assert (paper.drop_fraction, paper.drop_fraction_min, paper.update_end) == (0.5, 0.001, 0.8)


@pytest.mark.parametrize(("key", "value"), [("variants", ["dense"]), ("density", 0.0), ("density", 1.5),
                                            ("batch_size", -1), ("source", "web"), ("model_selection", "test"),
                                            ("val_fraction", 1.0), ("datasets", [1])])
def test_bad_knobs_name_the_parameter(key, value):
    with pytest.raises(ValueError, match=key):
        _config(**{key: value})


@pytest.mark.parametrize(("key", "value", "message"), [("datasets", ["../etc"], "datasets='../etc'"),
                                                       ("kernel_size", 5, "kernel_size=5"),
                                                       ("small_kernel_size", 2, "small_kernel_size=2")])
def test_run_rejects_bad_settings_before_loading_data(monkeypatch, key, value, message):
    def fail(*args, **kwargs):
        raise AssertionError("data loaded before the configuration was checked")

    monkeypatch.setattr(chapter, "load_dataset", fail)
    overrides = {key: value, **({"out_groups": 6} if key == "kernel_size" else {})}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        experiments.run(chapter, _config(**overrides))


def test_validation_selection_needs_a_validation_split():
    with pytest.raises(ValueError, match=r"val_fraction=0\.0: allowed .*model_selection='validation'"):
        _config(val_fraction=0.0)
    assert _config(val_fraction=0.0, model_selection="last").val_fraction == 0.0


@pytest.mark.parametrize("variant", chapter.VARIANTS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_every_variant_maps_univariate_and_multivariate_series_to_logits(variant, in_channels):
    config = _config()
    model = chapter.build_model(config, variant, num_classes=4, in_channels=in_channels)
    assert model(torch.randn(5, in_channels, 50)).shape == (5, 4)
    kernels = {m.kernel_size[0] for m in model.modules() if isinstance(m, torch.nn.Conv1d)} - {1}
    assert kernels == {config.small_kernel_size if variant == "dense_small" else config.kernel_size}


def _engine(variant, config, in_channels=1):
    torch.manual_seed(0)
    model = chapter.build_model(config, variant, num_classes=3, in_channels=in_channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    build = chapter.variant_engine(variant, config, seed=0, in_channels=in_channels)
    return model, optimizer, build(model, optimizer, 20)


def _train(model, optimizer, engine, steps, in_channels=1):
    x, y = torch.randn(8, in_channels, 60), torch.randint(0, 3, (8,))
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        engine.step()


@pytest.mark.parametrize("in_channels", [1, 2])
def test_sparse_variants_have_dsns_active_weights_in_every_layer(in_channels):
    config = _config(nf=4, depth=2, epochs=20)  # 20 steps of 1 per epoch
    counts = {}
    for variant in chapter.SPARSE_VARIANTS:
        model, optimizer, engine = _engine(variant, config, in_channels)
        _train(model, optimizer, engine, 6, in_channels)  # updates every step (update_every_epochs=1)
        counts[variant] = {name: int(mask.sum()) for name, mask in engine.masks.items()}
        histogram = chapter.tap_histogram(model, config.out_groups)
        assert histogram.sum().item() == sum(counts[variant].values())
        if variant != "unconstrained":  # group g uses only its first 13 (g + 1) taps
            for group in range(3):
                assert not histogram[:, group, 13 * (group + 1):].any()
        else:
            assert histogram[:, 0, 13:].any()  # the same budget anywhere in the kernel
    assert counts["dsn"] == counts["unconstrained"] == counts["static_regions"]
    for name, count in counts["dsn"].items():  # DSN's layer density: 0.2 * 26 / 39
        assert count / dict(model.named_parameters())[name].numel() == pytest.approx(0.2 * 26 / 39, abs=0.01)


def test_static_regions_keep_dsns_initial_masks_and_dsn_moves_its_weights():
    config = _config(nf=4, depth=2, epochs=20)  # 20 steps of 1 per epoch
    initial = chapter.dsn_masks(chapter.build_model(config, "dsn", 3, 1), config.density)
    moved = {}
    for variant in ("static_regions", "dsn"):
        model, optimizer, engine = _engine(variant, config)
        assert all(torch.equal(engine.masks[name].bool(), mask) for name, mask in initial.items())
        _train(model, optimizer, engine, 6)
        moved[variant] = any(not torch.equal(engine.masks[n].bool(), m) for n, m in initial.items())
    assert moved == {"static_regions": False, "dsn": True}


def test_tap_histogram_and_receptive_taps_of_a_known_mask():
    model = chapter.build_model(_config(nf=2, depth=1), "dense_large", 2, 1)
    conv = model.blocks[0].sparse_conv  # (6, 1, 39): 2 output channels per group
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0:2, :, :4] = 1.0  # group 0: taps 0-3
        conv.weight[2:4, :, 10] = 1.0  # group 1: tap 10
        conv.weight[4:6, :, :] = 1.0   # group 2: every tap
    histogram = chapter.tap_histogram(model, 3)
    assert histogram.shape == (1, 3, 39)
    assert histogram[0, 0].tolist() == [2] * 4 + [0] * 35 and histogram[0, 1, 10] == 2
    np.testing.assert_array_equal(chapter.receptive_taps(histogram, quantile=1.0), [4, 11, 39])


def test_validation_split_is_stratified_disjoint_and_seeded():
    targets = torch.tensor([0] * 12 + [1] * 8 + [2] * 2)
    train, val = chapter.validation_split(targets, 0.25, seed=3)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(22))
    assert torch.bincount(targets[val], minlength=3).tolist() == [3, 2, 1]
    again, _ = chapter.validation_split(targets, 0.25, seed=3)
    other, _ = chapter.validation_split(targets, 0.25, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)
    _, none = chapter.validation_split(targets, 0.0, seed=0)
    assert len(none) == 0


def test_batch_size_zero_is_dsns_rule():
    assert [chapter.batch_size_for(_config(batch_size=0), n) for n in (10, 36, 390, 1000)] == [2, 3, 16, 16]
    assert chapter.batch_size_for(_config(batch_size=8), 1000) == 8


def test_a_missing_archive_problem_fails_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setenv("DSTLIB_DATA", str(tmp_path))
    monkeypatch.setattr(chapter, "train_one", lambda *args, **kwargs: pytest.fail("trained before the check"))
    config = _config(datasets=["motifs", "Adiac"], source="archive", out_dir=str(tmp_path))
    with pytest.raises(DatasetNotAvailable, match="UCRArchive_2018/Adiac"):
        experiments.run(chapter, config)


def test_archive_source_reads_the_extracted_archive(tmp_path, monkeypatch):
    folder = tmp_path / "ucr" / "UCRArchive_2018" / "Toy"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, n in (("TRAIN", 6), ("TEST", 4)):
        lines = [f"{1 + i % 2}\t" + "\t".join(f"{v:.3f}" for v in rng.normal(size=45)) for i in range(n)]
        (folder / f"Toy_{part}.tsv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("DSTLIB_DATA", str(tmp_path))
    config = _config(datasets=["Toy"], source="archive")
    assert chapter.where_from(config, "Toy") == "archive" and chapter.where_from(config, "motifs") == "synthetic"
    (x, y), (x_test, y_test) = chapter.load_dataset(config, "Toy")
    assert x.shape == (6, 1, 45) and x_test.shape == (4, 1, 45) and sorted(set(y.tolist())) == [0, 1]


def _frame(seeds=5, dsn=85.0, gaps=(5.0, 12.0, 4.0, 18.0)):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(seeds):
        base = dsn + rng.normal()
        for variant, gap in zip(chapter.VARIANTS, (0.0, *gaps), strict=True):
            rows.append({"seed": seed, "dataset": "motifs", "variant": variant,
                         "accuracy": (base - gap + 0.5 * rng.normal()) / 100,
                         "flops_forward": 1000.0 if variant == "dense_large" else 150.0,
                         "flops_train_step": 3000.0, "params_active": 900 if variant == "dense_large" else 150})
    return pd.DataFrame(rows)


def test_claims_are_dsn_against_each_baseline_paired_by_seed():
    judgement = experiments.judge(chapter, _frame())
    judged = judgement.verdicts
    assert [v.name for v in judged] == [f"motifs: DSN - {what} (the book's ablation)" for what in (
        "dense large kernel", "dense small kernel", "DST without regions", "static regions")]
    headline = judgement.headline_verdict
    assert headline.kind == "non-inferiority" and headline.outcome == stats.REPRODUCED and judgement.gate_open
    assert [v.effect.estimate for v in judged] == pytest.approx([5.0, 12.0, 4.0, 18.0], abs=1.0)
    assert all(v.outcome == stats.REPRODUCED and v.family_size == 4 for v in judged)
    assert "(the book's smallest effect of interest)" in judged[0].sentence
    assert experiments.judge(chapter, _frame(seeds=1)).verdicts[0].outcome == stats.INCONCLUSIVE


def test_costs_are_relative_to_the_dense_large_kernel():
    costs = chapter.cost_table(_frame())
    assert costs.loc[("motifs", "dsn"), "flops_forward_ratio"] == pytest.approx(0.15)
    assert costs.loc[("motifs", "dense_large"), "params_active_ratio"] == 1.0
    assert chapter.with_costs(_frame())["accuracy_pct"].max() > 1


def test_smoke_run_records_costs_selection_and_tap_histograms(tmp_path):
    config = _config(out_dir=str(tmp_path), motif_series=40, epochs=2)
    result = experiments.run(chapter, config)
    frame = chapter.with_costs(result.frame).set_index("variant")
    assert set(frame.index) == set(chapter.VARIANTS)
    assert frame.loc["dsn", "flops_forward_ratio"] < chapter.PAPER_COST_RATIO
    assert frame.loc["dsn", "params_active"] == frame.loc["unconstrained", "params_active"]
    assert frame.loc["dsn", "region_density"] == pytest.approx(0.2, abs=0.01)
    assert frame.loc["dsn", "layer_density"] == pytest.approx(0.2 * 26 / 39, abs=0.01)
    assert (frame["num_val"] > 0).all() and (frame["best_epoch"] <= 2).all()
    [(_, extras)] = result.extras_where(seed=0, dataset="motifs", variant="dsn")
    assert extras["taps"].shape == (2, config.depth, 3, 39)
    curves = chapter.tap_curves(result, "motifs", "dsn")
    assert curves.shape == (2, 3, 39) and curves[:, 0, 13:].sum() == 0
    again = experiments.run(chapter, config)  # every record is read back, extras included
    assert [r["id"] for r in again.records] == [r["id"] for r in result.records]
    assert again.frame["accuracy"].tolist() == result.frame["accuracy"].tolist()
    assert torch.equal(again.extras_where(seed=0, dataset="motifs", variant="dsn")[0][1]["taps"], extras["taps"])
    selected = experiments.run(chapter, _config(out_dir=str(tmp_path), motif_series=40, epochs=2, variants=["dsn"],
                                   model_selection="train_loss"))
    assert selected.frame["num_val"].tolist() == [0]
