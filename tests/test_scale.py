"""Paper scale before a GPU: the fast dev run (the profile's path for a few steps, records marked, the full
grid priced) and shards (each point in exactly one slice, the slices together one run)."""

import json
import math
import types

import pytest
import torch

from dstlib import book, experiments
from dstlib import config as cfg
from dstlib.__main__ import main
from dstlib.experiments import common, scale
from dstlib.experiments.common import Outcome
from dstlib.optimisation import Optimisation
from dstlib.train import fit

CHAPTER = experiments.module("dst_from_scratch")
SMALL = {"methods": ["dense", "rigl"], "densities": [0.1], "seeds": [0, 1], "workers": 1, "progress": False}


def test_shard_assignment_puts_every_point_in_one_balanced_slice():
    costs = [5.0, 1.0, 3.0, 3.0, 2.0, 2.0, 1.0, 4.0]
    slices = common.shard_assignment(costs, 3)
    assert slices == common.shard_assignment(costs, 3)  # deterministic
    assert sorted(set(slices)) == [0, 1, 2]
    totals = [sum(c for c, s in zip(costs, slices, strict=True) if s == k) for k in range(3)]
    assert max(totals) - sum(costs) / 3 < max(costs)
    assert common.shard_assignment(costs, 1) == [0] * len(costs)
    assert sorted(common.shard_assignment([1.0] * 5, 5)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_a_bad_shard_names_the_value(text):
    with pytest.raises(ValueError, match=f"shard='{text}': allowed 'K/N'"):
        experiments.resolve("dst_from_scratch", "smoke", shard=text)


def _same(a, b):
    """Equal metrics, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_two_shards_give_exactly_the_records_of_one_unsharded_run(tmp_path):
    whole = experiments.run(CHAPTER, experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path / "a"),
                                                         **SMALL))
    sliced = [experiments.run(CHAPTER, experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path / "b"),
                                                           shard=f"{k}/2", **SMALL)) for k in (1, 2)]
    ids = [{r["id"] for r in part.records} for part in sliced]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert ids[0] | ids[1] == {r["id"] for r in whole.records}
    by_id = {r["id"]: r for part in sliced for r in part.records}
    for record in whole.records:
        assert _same(by_id[record["id"]]["metrics"], record["metrics"])
    gathered = experiments.gather(CHAPTER, experiments.resolve("dst_from_scratch", "smoke",
                                                               out_dir=str(tmp_path / "b"), **SMALL), 2)
    assert [r["id"] for r in gathered.records] == [r["id"] for r in whole.records]


def test_gather_names_the_missing_slice(tmp_path, capsys):
    config = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path), shard="2/3", **SMALL)
    experiments.run(CHAPTER, config)
    with pytest.raises(ValueError, match=r"missing from shard\(s\) 1/3 \(\d points\), 3/3"):
        experiments.gather(CHAPTER, config, 3)
    assert main(["gather", "dst_from_scratch", "--profile", "smoke", "--shards", "3", "--out", str(tmp_path),
                 "--set", "methods=dense,rigl", "--set", "densities=0.1", "--set", "seeds=0,1"]) == 2
    assert "missing from shard(s) 1/3" in capsys.readouterr().err


def _staged_chapter(trained: list):
    """Chapter 1's knobs with a two-point grid whose second point starts from the first's record."""
    def train_one(config, point, data, checkpoint):
        trained.append(point["method"])
        return Outcome({"value": 1.0})

    return types.SimpleNamespace(SPEC=CHAPTER.SPEC, CLAIMS=[], load=lambda config: None, train_one=train_one,
                                 points=lambda config: [{"seed": 0, "method": "dense"}, {"seed": 0, "method": "rigl"}],
                                 stage=lambda point: int(point["method"] == "rigl"))


def test_a_shard_waits_for_the_earlier_stages_other_slices_train(tmp_path):
    trained: list[str] = []
    chapter = _staged_chapter(trained)
    second = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path), shard="2/2", workers=1)
    with pytest.raises(ValueError, match="stage-1 points start from the records of 1 earlier-stage"):
        common.run(chapter, second)
    assert trained == []
    common.run(chapter, experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path), shard="1/2", workers=1))
    common.run(chapter, second)
    assert trained == ["dense", "rigl"]


def test_fast_dev_run_resolves_the_profile_shortened_and_explicit_values_win():
    config = experiments.resolve("dst_from_scratch", "paper", fast_dev_run=True)
    paper = experiments.resolve("dst_from_scratch", "paper")
    assert (config.epochs, config.seeds, config.update_every, config.download) == (1, [0], 1, False)
    assert config.model == paper.model and config.dataset == paper.dataset  # full model, real data
    assert config.batch_size == CHAPTER.SPEC.fast_dev["batch_size"]
    assert "epochs: 250 -> 1" in cfg.shortened(CHAPTER.SPEC, config)
    assert experiments.resolve("dst_from_scratch", "paper", fast_dev_run=True, batch_size=4).batch_size == 4


def test_fit_with_a_batch_limit_plans_and_prices_that_many_steps():
    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    fitted = fit(lambda: torch.nn.Linear(5, 2), (x, y), epochs=2, batch_size=4, optim=Optimisation(lr=0.1),
                 limit_batches=3, device="cpu")
    assert fitted.steps == 6 and [row["step"] for row in fitted.history] == [3, 6]
    row = fitted.history[0]
    # forward and weight gradient (the data needs no gradient), 4 x 5 x 2 multiply-adds each, 2 FLOPs per one
    assert row["flops_per_step"] == 2 * (4 * 5 * 2) * 2
    assert row["step_time_s"] > 0
    assert "flops_per_step" not in fit(lambda: torch.nn.Linear(5, 2), (x, y), epochs=1, batch_size=4,
                                       optim=Optimisation(lr=0.1), device="cpu").history[0]


def test_fast_dev_run_marks_its_records_and_prices_the_full_grid(tmp_path, capsys):
    result, table = scale.fast_dev_run(CHAPTER, "tutorial", out_dir=str(tmp_path), workers=1, progress=False)
    assert "fast dev run of dst_from_scratch/tutorial" in capsys.readouterr().out
    assert {r["params"]["method"] for r in result.records} == set(CHAPTER.CHAPTER_METHODS)
    assert all(r["params"]["fast_dev_run"] and r["history"][-1]["step"] == cfg.FAST_DEV_STEPS for r in result.records)
    assert all(r["metrics"]["itop_rate"] > r["metrics"]["realised_density"] for r in result.records
               if r["params"]["method"] in ("set", "rigl"))  # a topology update moved weights
    tutorial = experiments.resolve("dst_from_scratch", "tutorial")
    total = table.iloc[-1]
    assert total["point"] == "all" and total["runs"] == len(CHAPTER.points(tutorial))
    steps = sum(CHAPTER.paper_steps(tutorial, point)[0] for point in CHAPTER.points(tutorial))
    assert total["steps"] == steps and total["gpu_hours"] > 0 and math.isfinite(total["cpu_days"])
    assert (tmp_path / "dst_from_scratch" / "fast_dev_cost_tutorial.csv").exists()
    page = book.paper_cost_table(table)  # the chapters' "At paper scale" table: the total row's gaps blank
    assert page.loc["all", "runs"] == total["runs"] and page.loc["all", "batch"] == ""
    real = experiments.run(CHAPTER, experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path),
                                                        **{**SMALL, "seeds": [0]}))
    mixed = common.ChapterResult(real.config, real.records + result.records).frame
    with pytest.raises(ValueError, match="mixes fast dev run records"):
        experiments.judge(CHAPTER, mixed)


def test_the_command_line_fast_dev_run_prints_the_cost_table(tmp_path, capsys):
    assert main(["run", "dst_from_scratch", "--profile", "tutorial", "--fast-dev-run", "--out", str(tmp_path),
                 "--set", "workers=1", "--set", "methods=dense,rigl"]) == 0
    out = capsys.readouterr().out
    assert "priced by this fast dev run" in out and "gpu_hours" in out


def test_a_chapter_page_glues_its_paper_cost_and_the_smoke_profile_skips_it(monkeypatch, capsys):
    glued = {}
    monkeypatch.setattr(book, "glue", lambda name, value, display=True: glued.setdefault(name, value))
    chapter = experiments.module("dynamic_sparse_timeseries")  # the cheapest fast dev run (seconds)
    assert book.show_paper_cost(chapter, "smoke") is None and not glued
    assert "skips" in capsys.readouterr().out
    table = book.show_paper_cost(chapter, "paper")
    assert glued["paper_cost_runs"] == table.iloc[-1]["runs"] == len(chapter.points(experiments.resolve(
        "dynamic_sparse_timeseries", "paper")))
    assert glued["paper_cost_gpu_hours"] > 0 and glued["paper_cost_fast_dev_s"] > 0
    assert list(glued["paper_cost_table"].columns) == list(book.PAPER_COST_COLUMNS.values())[1:]
