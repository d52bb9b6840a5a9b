"""Chapter 8 ("Where is the speed-up?"): configuration errors, the analysis helpers on synthetic frames, and a
tiny run that writes its records."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dstlib import experiments, stats
from dstlib.experiments import where_is_the_speedup as chapter
from dstlib.sparse import benchmark, truly_sparse


def test_profiles_are_complete_and_bad_values_fail_before_any_work():
    chapter.SPEC.check()
    with pytest.raises(ValueError, match="densities"):
        experiments.resolve("where_is_the_speedup", "smoke", densities=[0.0])
    with pytest.raises(ValueError, match="method"):
        experiments.resolve("where_is_the_speedup", "smoke", method="gmp")
    with pytest.raises(ValueError, match="threads"):
        experiments.resolve("where_is_the_speedup", "smoke", threads=0)
    with pytest.raises(ValueError, match=r"shapes=.*'64-x-10'.*at least three positive widths"):
        experiments.resolve("where_is_the_speedup", "smoke", shapes=["64-x-10"])  # before any timing or data
    assert chapter.widths_of("512-2048-2048-10") == (512, 2048, 2048, 10)
    with pytest.raises(ValueError, match="shapes"):
        chapter.widths_of("64-10")


def test_the_neuron_level_model_has_the_weight_budget_of_the_sparse_one():
    config = experiments.resolve("where_is_the_speedup", "tutorial")
    dense = chapter.model_widths(config, "dense", 40, 10)
    small = chapter.model_widths(config, "neurons", 40, 10)
    assert dense == (40, 1024, 1024, 10) and small[0] == 40 and small[-1] == 10

    def weights(w):
        return sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))

    assert weights(small) == pytest.approx(config.train_density * weights(dense), rel=0.01)


def test_flops_promise_the_density_for_masks_and_more_for_dense_gradients():
    ratios = chapter.flops_ratios((64, 256, 256, 10), 0.1)
    assert ratios["train"] == pytest.approx(0.1, abs=0.002) and ratios["inference"] == pytest.approx(0.1, abs=0.002)
    assert ratios["neurons_train"] == pytest.approx(0.1, rel=0.05)


def test_crossover_interpolates_in_log_log_and_flags_the_ends():
    estimate, faster, slower = chapter.crossover_density([0.05, 0.1, 0.2, 0.5], [0.25, 0.5, 2.0, 5.0])
    assert (faster, slower) == (0.1, 0.2)
    assert estimate == pytest.approx(math.sqrt(0.1 * 0.2))  # halfway in log ratio: log 0.5 -> log 2
    estimate, faster, slower = chapter.crossover_density([0.1, 0.05], [0.5, 0.2])
    assert math.isnan(estimate) and faster == 0.1 and math.isnan(slower)
    estimate, faster, slower = chapter.crossover_density([0.1, 0.05], [1.5, 1.2])
    assert math.isnan(estimate) and math.isnan(faster) and slower == 0.05


def _bench(seeds=4, train_ratio=0.3, csr_share=0.25, noise=0.02):
    """A synthetic benchmark frame: truly sparse training at ``train_ratio`` / 0.05 * density of dense, CSR
    inference at ``csr_share`` of the ideal, the masked engine at 1.1."""
    rng = np.random.default_rng(0)
    rows = []
    for shape in ("16-64-64-10", "32-128-128-10"):
        for seed in range(seeds):
            for density in (0.5, 0.2, 0.1, 0.05):
                for batch in (1, 8, 64):
                    for mode, variant, ratio in (("train", "dense", 1.0), ("train", "masked", 1.1),
                                                 ("train", "truly_sparse", train_ratio * density / 0.05),
                                                 ("train", "truly_sparse+update", 5.0),
                                                 ("inference", "dense", 1.0),
                                                 ("inference", "csr", density / csr_share),
                                                 ("inference", "truly_sparse", density / csr_share)):
                        ratio *= 1 if variant == "dense" else math.exp(noise * rng.normal())
                        rows.append({"shape": shape, "seed": seed, "mode": mode, "variant": variant,
                                     "density": density, "batch": batch, "ms": 10 * ratio, "ratio": ratio,
                                     "ideal": density, "of_ideal": density / ratio, "state_bytes": 1,
                                     "peak_bytes": 2.0, "flops_ratio": density})
    return pd.DataFrame(rows)


def _training(seeds=4, gap=-10.0):
    """Training records: truly sparse minus neuron-level accuracy is ``gap`` points (plus 0.1 per seed)."""
    rows = []
    for seed in range(seeds):
        for variant, accuracy, ms in (("dense", 65.0, 10.0), ("truly_sparse", 55.0 + 0.3 * seed, 5.0),
                                      ("neurons", 55.0 - gap + 0.2 * seed, 1.0)):
            rows.append({"part": "training", "variant": variant, "seed": seed, "test_accuracy": accuracy / 100,
                         "step_ms": ms, "weights": 1, "hidden_width": 1})
    records = [{"params": {k: r[k] for k in ("part", "variant", "seed")},
                "metrics": {k: v for k, v in r.items() if k not in ("part", "variant", "seed")}} for r in rows]
    return chapter.training_frame(records)


def test_tables_take_medians_over_seeds_and_the_goal_is_read_on_the_largest_shape():
    bench = _bench()
    assert chapter.largest_shape(bench) == "32-128-128-10"
    table = chapter.medians(bench)
    row = table[(table["variant"] == "truly_sparse") & (table["mode"] == "train") & (table["density"] == 0.05)]
    assert row["ratio"].to_numpy() == pytest.approx(0.3, rel=0.05) and (row["seeds"] == 4).all()
    cross = chapter.crossovers(bench)
    train = cross[(cross["mode"] == "train") & (cross["variant"] == "truly_sparse")]
    assert train["crossover"].to_numpy() == pytest.approx(0.05 / 0.3, rel=0.05)  # ratio 1 at density 0.167
    csr = cross[cross["variant"] == "csr"]
    assert csr["crossover"].to_numpy() == pytest.approx(0.25, rel=0.05) and set(csr["faster_at"]) == {0.2}
    goal = chapter.goal_table(bench)
    assert list(goal["batch"]) == [1, 8, 64] and (goal["train_met_seeds"] == 4).all()
    assert (goal["csr_met_seeds"] == 0).all()
    assert chapter.goal_sentence(goal) == ("the truly sparse training step beat the dense step at every batch size "
                                           "measured (1, 8, 64); CSR inference fell short of a third of the ideal "
                                           "speed-up at batch 1, 8, 64")
    update = chapter.amortised_update(bench)
    assert update["ratio"].to_numpy() == pytest.approx((99 * table[(table["variant"] == "truly_sparse") & (
        table["mode"] == "train")]["ratio"].to_numpy() + 5.0) / 100, rel=0.05)


def _judge(bench, training):
    return experiments.judge(chapter, chapter.claims_frame(bench, training)).verdicts


def test_claims_judge_the_goals_and_the_accuracy_comparison():
    # The CLAIMS table is judged claim by claim (every batch of one claim, then the next claim), so the names
    # come in that order; each claim's outcome and estimate are those of the old interleaved list.
    verdicts = _judge(_bench(), _training())
    names = [v.name for v in verdicts]
    assert names == ["truly sparse training step faster than dense, batch 1",
                     "truly sparse training step faster than dense, batch 8",
                     "truly sparse training step faster than dense, batch 64",
                     "CSR inference beyond 1/3 of the ideal speed-up, batch 1",
                     "CSR inference beyond 1/3 of the ideal speed-up, batch 8",
                     "CSR inference beyond 1/3 of the ideal speed-up, batch 64",
                     "RigL (unstructured) - neuron-level, same weights: accuracy"]
    outcomes = [v.outcome for v in verdicts]
    assert outcomes == [stats.REPRODUCED] * 3 + [stats.CONTRADICTED] * 3 + [stats.CONTRADICTED]
    assert verdicts[0].effect.estimate == pytest.approx(-math.log(0.3), abs=0.02)
    assert verdicts[3].effect.estimate == pytest.approx(math.log(0.25 * 3), abs=0.02)
    assert verdicts[-1].effect.estimate == pytest.approx(-10.0 + 0.1 * 1.5, abs=0.01)
    assert "(the book's smallest speed-up of interest, 1.1x)" in verdicts[0].sentence
    assert "(the book's smallest effect of interest)" in verdicts[-1].sentence
    better = _judge(_bench(csr_share=0.6), _training(gap=3.0))
    assert better[3].outcome == stats.REPRODUCED and better[-1].outcome == stats.REPRODUCED
    assert _judge(_bench().query("density != 0.05"), _training().iloc[:0])[:1] == []
    before = stats.judge(chapter_claims_as_before(_bench(), _training()))  # the same claims, to rounding
    assert [(v.name, v.outcome, v.sentence) for v in verdicts] == [(v.name, v.outcome, v.sentence) for v in before]
    for new, old in zip(verdicts, before, strict=True):
        assert (new.effect.estimate, new.effect.low, new.adjusted_p, new.mde) == pytest.approx(
            (old.effect.estimate, old.effect.low, old.adjusted_p, old.mde), rel=1e-9, abs=1e-12)


def chapter_claims_as_before(bench, training):
    """The claims as the chapter built them before its CLAIMS table, in the table's order."""
    shape = chapter.largest_shape(bench)
    at = bench[(bench["shape"] == shape) & (bench["density"] == chapter.GOAL_DENSITY)]
    effect = math.log(chapter.SPEEDUP_OF_INTEREST)
    found = []
    for variant, mode, name in (("truly_sparse", "train", "truly sparse training step faster than dense"),
                                ("csr", "inference", "CSR inference beyond 1/3 of the ideal speed-up")):
        for batch in sorted(at["batch"].unique()):
            rows = at[(at["batch"] == batch) & (at["mode"] == mode) & (at["variant"] == variant)].sort_values("seed")
            values = (-np.log(rows["ratio"].to_numpy()) if mode == "train"
                      else np.log(rows["of_ideal"].to_numpy() / chapter.GOAL_SHARE_OF_IDEAL))
            found.append(stats.Claim(f"{name}, batch {batch}", values, np.zeros_like(values), effect, paired=True,
                                     units="log ratio", reference=chapter.SPEEDUP_REFERENCE))
    sparse = training[training["variant"] == "truly_sparse"].sort_values("seed")["test_accuracy"].to_numpy() * 100
    neurons = training[training["variant"] == "neurons"].sort_values("seed")["test_accuracy"].to_numpy() * 100
    found.append(stats.Claim("RigL (unstructured) - neuron-level, same weights: accuracy", sparse, neurons, 1.0,
                             paired=True, units="points", reference="the book's smallest effect of interest"))
    return found


def test_training_frame_relates_each_run_to_the_dense_run_of_its_seed():
    frame = _training()
    assert frame.loc[frame["variant"] == "truly_sparse", "time_ratio"].to_numpy() == pytest.approx(0.5)
    assert frame.loc[frame["variant"] == "dense", "accuracy_pct"].to_numpy() == pytest.approx(65.0)


def test_smoke_run_writes_records_and_reuses_them(tmp_path):
    config = experiments.resolve("where_is_the_speedup", "smoke", out_dir=str(tmp_path), densities=[0.05],
                                 variants=["dense", "truly_sparse"])
    result = experiments.run(chapter, config)
    records = list((tmp_path / "where_is_the_speedup").glob("*.json"))
    assert len(records) == len(result.records) == 1 + 2
    bench = chapter.benchmark_frame(result.records)
    assert set(bench["variant"]) >= {"dense", "masked", "truly_sparse", "csr", "neurons"}
    assert {"flops_ratio", "peak_bytes", "shape", "seed"} <= set(bench.columns)
    training = chapter.training_frame(result.records)
    sparse = training[training["variant"] == "truly_sparse"].iloc[0]
    assert sparse["weights"] < training[training["variant"] == "dense"].iloc[0]["weights"] * 0.06
    again = experiments.run(chapter, config)  # same code, same settings: read back, not measured again
    assert [r["id"] for r in again.records] == [r["id"] for r in result.records]
    assert again.records[0]["metrics"] == result.records[0]["metrics"]


def test_points_hold_both_parts_and_say_which_replicate_profiles_memory():
    config = experiments.resolve("where_is_the_speedup", "tutorial")
    grid = chapter.points(config)
    bench = [p for p in grid if p["part"] == "benchmark"]
    train = [p for p in grid if p["part"] == "training"]
    assert len(bench) == len(config.shapes) * len(config.seeds) and len(train) == 3 * len(config.seeds)
    assert [p["memory"] for p in bench] == [True, False, False, False] * 2
    assert {p["density"] for p in train if p["variant"] == "dense"} == {1.0}
    assert {p["density"] for p in train if p["variant"] != "dense"} == {config.train_density}


def test_the_truly_sparse_engine_takes_the_preset_rules():
    for method, rules in (("rigl", ("magnitude", "gradient")), ("set", ("set", "random"))):
        config = experiments.resolve("where_is_the_speedup", "smoke", method=method)
        dense = benchmark.mlp((8, 16, 4))
        model = truly_sparse.to_truly_sparse(dense, truly_sparse.initial_masks(dense, 0.1, seed=0))
        engine = chapter.truly_sparse_engine(config, 0)(model, torch.optim.SGD(model.parameters(), lr=0.1), 100)
        assert (engine.prune, engine.grow) == rules
