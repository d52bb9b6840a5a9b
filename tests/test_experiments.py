"""The experiment layer: grids with declared baseline rules, the method -> engine mapping, one record per
point (seeded before the model is built, skipped when done, resumed when interrupted)."""

import json
import multiprocessing
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from dstlib import experiments, sparse
from dstlib.experiments import common
from dstlib.train import DistributedContext

ROOT = Path(__file__).resolve().parents[1]


def test_grid_runs_dense_once_per_seed_and_every_sparse_setting():
    points = common.grid({"seed": [0, 1], "method": ["dense", "rigl", "set"], "density": [0.5, 0.1]},
                         common.DENSE_ONCE)
    assert len(points) == 2 * (1 + 2 * 2)
    assert [p for p in points if p["method"] == "dense"] == [{"seed": 0, "method": "dense", "density": 1.0},
                                                             {"seed": 1, "method": "dense", "density": 1.0}]
    assert {"seed": 1, "method": "set", "density": 0.1} in points
    assert points[0]["seed"] == 0 and points[-1]["seed"] == 1  # the first axis varies slowest


def test_grid_takes_any_named_axes():
    points = common.grid({"dataset": ["a", "b"], "variant": ["x"], "seed": [0, 1]})
    assert len(points) == 4 and points[1] == {"dataset": "a", "variant": "x", "seed": 1}


def test_records_carry_density_and_sparsity():
    params = common.point_params({"method": "rigl", "density": 0.3, "seed": 0})
    assert params["density"] == 0.3 and params["sparsity"] == pytest.approx(0.7)
    cfg = experiments.resolve("corruption_robustness", "smoke", sparsities=[0.1, 0.7])
    assert common.densities_of(cfg) == [0.9, 0.3]


@pytest.mark.parametrize("method", ["static", "set", "rigl", "mest", "granet", "gmp"])
def test_engine_factory_builds_the_preset_with_the_config(method):
    cfg = experiments.resolve("dst_from_scratch", "smoke", distribution="uniform", update_every=7, drop_fraction=0.2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = common.engine_factory(method, 0.25, cfg, seed=3)(model, optimizer, 100)
    assert isinstance(engine, sparse.presets.METHODS[method])
    if method not in ("static", "gmp", "granet"):
        assert engine.update_every == 7 and engine.density == pytest.approx(0.25, abs=0.02)
    assert common.engine_factory("dense", 1.0, cfg, seed=0) is None
    with pytest.raises(ValueError, match="method='magic'"):
        common.engine_factory("magic", 0.5, cfg, seed=0)


def test_method_defaults_live_in_one_place():
    assert common.method_options("granet", 0.1) == {"init_density": common.GRANET_INIT_DENSITY}
    assert common.method_options("granet", 0.9) == {"init_density": 1.0}
    assert common.method_options("rigl", 0.1) == {}


def test_engine_from_fixed_omp_masks_and_from_a_density_map():
    cfg = experiments.resolve("dst_from_scratch", "smoke")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    masks = sparse.prune_at_init.magnitude_prune(model, 0.25)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = common.engine_factory("static", 0.25, cfg, seed=0, masks=masks)(model, optimizer, 10)
    for name, mask in masks.items():
        assert torch.equal(engine.masks[name], mask)
    model[0].weight.grad = torch.randn_like(model[0].weight)
    model[2].weight.grad = torch.randn_like(model[2].weight)
    optimizer.step()
    engine.step()
    assert torch.all(model[0].weight[~masks["0.weight"]] == 0)
    density_map = {"0.weight": 0.5, "2.weight": 0.125}
    model2 = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    engine = common.engine_factory("rigl", 0.4, cfg, seed=0, layer_densities=density_map)(
        model2, torch.optim.SGD(model2.parameters(), lr=0.1), 10)
    assert {n: float(m.float().mean()) for n, m in engine.masks.items()} == pytest.approx(density_map)


def _metrics(records):
    return {(r["params"]["method"], r["params"]["density"], r["params"]["seed"]):
            (r["metrics"]["test_accuracy"], [h["train_loss"] for h in r["history"]]) for r in records}


def test_a_run_alone_equals_the_same_run_inside_a_grid(tmp_path):
    from dstlib.experiments import dst_from_scratch as chapter

    base = {"epochs": 1, "seeds": [1], "densities": [0.3]}
    grid = experiments.run(chapter, experiments.resolve(
        "dst_from_scratch", "smoke", methods=["dense", "static", "rigl"], out_dir=str(tmp_path / "grid"), **base))
    alone = experiments.run(chapter, experiments.resolve(
        "dst_from_scratch", "smoke", methods=["rigl"], out_dir=str(tmp_path / "alone"), **base))
    assert _metrics(alone.records)[("rigl", 0.3, 1)] == _metrics(grid.records)[("rigl", 0.3, 1)]


def test_run_point_skips_a_recorded_point_and_writes_readable_files(tmp_path):
    cfg = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path))
    calls = []

    def train(params, checkpoint):
        calls.append(params)
        return common.Outcome({"score": 1.0}, extras={"curve": torch.arange(3)})

    first, extras = common.run_point(cfg, {"method": "rigl", "density": 0.5, "seed": 0}, train)
    again, extras_again = common.run_point(cfg, {"method": "rigl", "density": 0.5, "seed": 0}, train)
    assert len(calls) == 1 and again == json.loads(json.dumps(first))
    assert torch.equal(extras_again["curve"], torch.arange(3))
    path = tmp_path / "dst_from_scratch" / f"{first['id']}.json"
    assert path.stat().st_mode & 0o044  # group/other may read it (not mkstemp's 0600)
    assert first["provenance"]["world_size"] == 1 and first["provenance"]["code"] == common.code_fingerprint()


def test_only_rank_zero_writes_records(tmp_path, monkeypatch):
    cfg = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path))
    monkeypatch.setattr(common, "distributed_context", lambda: DistributedContext(1, 2))
    common.run_point(cfg, {"method": "dense", "density": 1.0, "seed": 0}, lambda p, c: common.Outcome({"a": 1}))
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_an_interrupted_grid_skips_finished_points_and_resumes_the_broken_one_in_a_fresh_process(tmp_path):
    worker = ROOT / "tests" / "grid_worker.py"
    out = tmp_path / "results"
    crashed = subprocess.run([sys.executable, str(worker), str(out), "crash"], capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode == 3, crashed.stderr
    folder = out / "dst_from_scratch"
    assert len(list(folder.glob("*.json"))) == 1 and len(list((folder / "checkpoints").glob("*.pt"))) == 1
    resumed = subprocess.run([sys.executable, str(worker), str(out), "resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["trained_epochs"] == [3]  # the finished point is skipped; the broken one runs epoch 3 only
    assert not list((folder / "checkpoints").glob("*.pt"))
    fresh = subprocess.run([sys.executable, str(worker), str(tmp_path / "fresh"), "resume"], capture_output=True,
                           text=True, timeout=300)
    fresh_report = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert fresh_report["metrics"] == report["metrics"]  # resuming gives the numbers of an uninterrupted grid


def test_subsets_are_fixed_and_nested():
    from dstlib.data import subset

    full = torch.utils.data.TensorDataset(torch.arange(100), torch.arange(100) % 3)
    small, large = subset(full, 10), subset(full, 40)
    assert torch.equal(subset(full, 10).tensors[0], small.tensors[0]) and len(small) == 10
    assert set(small.tensors[0].tolist()) <= set(large.tensors[0].tolist())
    assert subset(full, 0) is full and subset(full, 1000) is full
    with pytest.raises(ValueError, match="size=-1: allowed an integer >= 0"):
        subset(full, -1)


def test_engine_settings_of_a_chapter_reach_the_engine_as_steps():
    cfg = experiments.resolve("corruption_robustness", "paper")
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = common.engine_factory("granet", 0.5, cfg, seed=0)(model, optimizer, 1000)
    assert engine.prune_end == 500 and engine.drop_fraction.end == 1000  # prune_end 0.5, update_end 1.0
    assert engine.drop_fraction.minimum == pytest.approx(0.005) and engine.drop_fraction.initial == 0.5
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    rigl = common.engine_factory("rigl", 0.5, experiments.resolve("dst_from_scratch", "paper"), seed=0)(
        model, torch.optim.SGD(model.parameters(), lr=0.1), 1000)
    # the paper profile stops updates at RigL's step 75,000 of 97,750
    assert rigl.drop_fraction.end == round(1000 * 75_000 / 97_750) and rigl.drop_fraction.minimum == 0.0


def test_a_points_record_is_found_again_whatever_grid_it_is_part_of(tmp_path, capsys):
    from dstlib.experiments import dst_from_scratch as chapter

    base = {"epochs": 1, "seeds": [0], "methods": ["rigl"], "out_dir": str(tmp_path), "progress": False}
    first = experiments.run(chapter, experiments.resolve("dst_from_scratch", "smoke", densities=[0.5], **base))
    capsys.readouterr()
    second = experiments.run(chapter, experiments.resolve("dst_from_scratch", "smoke", densities=[0.3, 0.5], **base))
    said = capsys.readouterr().out
    assert "skip   seed=0, method=rigl, density=0.5: its record exists" in said
    assert second.records[1] == first.records[0] and "density=0.3" not in said


def test_a_resumed_point_says_so(tmp_path, capsys):
    cfg = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path))
    folder = tmp_path / "dst_from_scratch" / "checkpoints"

    def train(params, checkpoint):
        return common.Outcome({"score": 1.0})

    point = {"method": "rigl", "density": 0.5, "seed": 0}
    record, _ = common.run_point(cfg, point, train)
    (tmp_path / "dst_from_scratch" / f"{record['id']}.json").unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['id']}.pt").write_bytes(b"")
    capsys.readouterr()
    common.run_point(cfg, point, train)
    assert "resume method=rigl, density=0.5, seed=0 from its checkpoint" in capsys.readouterr().out


def test_a_combination_the_chapter_cannot_run_is_refused_before_any_work():
    with pytest.raises(ValueError, match="model='cnn1d' with dataset='digits': allowed one of 'cnn_tiny'"):
        experiments.resolve("dst_from_scratch", "tutorial", dataset="digits")
    with pytest.raises(ValueError, match="model='cnn_tiny' with dataset='mnist1d': allowed one of 'cnn1d'"):
        experiments.resolve("dst_from_scratch", "tutorial", model="cnn_tiny")
    assert experiments.resolve("dst_from_scratch", "smoke", dataset="digits", model="cnn_tiny").model == "cnn_tiny"


def test_progress_is_on_by_default_and_a_profile_lists_only_what_differs():
    for name in experiments.names():
        spec = experiments.spec(name)
        assert spec.values("tutorial")["progress"] is True
        assert "progress" not in spec.profiles["tutorial"] and "device" not in spec.defaults


def test_a_glued_figure_is_shown_once():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dstlib import book

    fig = plt.figure()
    book.glue("fig_test", fig, display=False)
    assert fig.number not in plt.get_fignums()  # closed: the inline backend will not draw it a second time


@pytest.mark.slow
def test_the_scorecard_reads_the_records_and_names_a_chapter_not_run(tmp_path, monkeypatch):
    from dstlib.experiments import scorecard

    monkeypatch.setattr(experiments, "names", lambda: ["dst_from_scratch", "large_kernels"])
    config = experiments.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path), progress=False)
    experiments.run("dst_from_scratch", config)
    card = scorecard.scorecard("smoke", out_dir=str(tmp_path))
    ours = card[card["chapter"] == experiments.spec("dst_from_scratch").title]
    judged = experiments.judge("dst_from_scratch", experiments.run("dst_from_scratch", config).frame)
    assert list(ours["claim"]) == [v.name for v in judged.judged] and ours["headline"].sum() == 1
    assert list(ours["outcome"]) == [v.outcome for v in judged.judged]
    other = card[card["chapter"] == experiments.spec("large_kernels").title]
    assert len(other) == 1 and other["outcome"].item() == "not run" and "have no record" in other["claim"].item()


def _fake_chapter(train_one, stage=None):
    """dst_from_scratch's declaration with its own points and training (records land under its name)."""
    fake = types.SimpleNamespace(SPEC=experiments.spec("dst_from_scratch"), CLAIMS=(), load=lambda config: None,
                                 points=lambda config: [{"method": m, "seed": s} for m in ("dense", "set")
                                                        for s in config.seeds],
                                 train_one=train_one)
    if stage is not None:
        fake.stage = stage
    return fake


def _pid_and_draw(config, point, data, checkpoint):
    torch.manual_seed(point["seed"])
    return common.Outcome({"pid": os.getpid(), "threads": torch.get_num_threads(), "draw": torch.rand(1).item()})


def test_two_workers_train_the_points_in_two_other_processes_with_one_thread_each(tmp_path):
    cfg = experiments.resolve("dst_from_scratch", "smoke", seeds=[0, 1, 2], out_dir=str(tmp_path), workers=2,
                              device="cpu", progress=False)
    with common.torch_threads(2):
        result = common.run(_fake_chapter(_pid_and_draw), cfg)
    pids = {record["metrics"]["pid"] for record in result.records}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {record["metrics"]["threads"] for record in result.records} == {1}
    assert [r["params"] for r in result.records] == [{"method": m, "seed": s} for m in ("dense", "set")
                                                     for s in (0, 1, 2)]  # in the grid's order
    again = common.run(_fake_chapter(_pid_and_draw), cfg)  # read back: nothing trains
    assert [r["metrics"] for r in again.records] == [r["metrics"] for r in result.records]
    assert not multiprocessing.active_children()


def test_a_failing_point_in_a_worker_stops_the_run_with_its_error(tmp_path):
    def train_one(config, point, data, checkpoint):
        if point["seed"] == 1:
            raise ValueError("point seed=1 failed")
        return common.Outcome({"a": 1.0})

    cfg = experiments.resolve("dst_from_scratch", "smoke", seeds=[0, 1, 2, 3], out_dir=str(tmp_path),
                              workers=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="seed=1 failed"):
        common.run(_fake_chapter(train_one), cfg)
    assert not multiprocessing.active_children()


def test_a_later_stage_trains_once_the_earlier_stage_has_its_records(tmp_path):
    def train_one(config, point, data, checkpoint):
        dense = [p for p in _fake_chapter(train_one).points(config) if p["method"] == "dense"]
        written = sum(common.read_back(*common.record_paths(config, p)[1:]) is not None for p in dense)
        return common.Outcome({"dense_records_seen": written})

    cfg = experiments.resolve("dst_from_scratch", "smoke", seeds=[0, 1, 2], out_dir=str(tmp_path), workers=2,
                              device="cpu", progress=False)
    result = common.run(_fake_chapter(train_one, stage=lambda point: int(point["method"] != "dense")), cfg)
    assert [r["metrics"]["dense_records_seen"] for r in result.records if r["params"]["method"] == "set"] == [3] * 3


def test_a_chapter_trained_by_two_workers_has_the_records_of_one_process_at_one_thread(tmp_path):
    overrides = {"methods": ["dense", "rigl"], "densities": [0.5], "seeds": [0, 1], "device": "cpu",
                 "progress": False}
    with common.torch_threads(1):
        serial = experiments.run("dst_from_scratch", experiments.resolve(
            "dst_from_scratch", "smoke", workers=1, out_dir=str(tmp_path / "serial"), **overrides))
    with common.torch_threads(2):
        parallel = experiments.run("dst_from_scratch", experiments.resolve(
            "dst_from_scratch", "smoke", workers=2, out_dir=str(tmp_path / "parallel"), **overrides))
    assert len(serial.records) == 4  # dense and rigl, two seeds
    for one, two in zip(serial.records, parallel.records, strict=True):
        assert json.dumps([one[key] for key in ("params", "metrics", "history")]) == \
               json.dumps([two[key] for key in ("params", "metrics", "history")])  # NaN equal to NaN


@pytest.mark.parametrize("name", [n for n in experiments.names() if hasattr(experiments.module(n), "PILOT")])
def test_a_chapters_tutorial_regime_is_its_pilots_chosen_one_and_the_pilot_is_recorded(name):
    from dstlib.experiments import pilot

    declared = experiments.module(name).PILOT
    tutorial = experiments.resolve(name, "tutorial")
    assert {key: tutorial[key] for key in declared.regimes[declared.chosen]} == dict(declared.regimes[declared.chosen])
    assert not set(declared.seeds) & set(tutorial.seeds), "the pilot's seeds are disjoint from the tutorial's"
    table = pilot.pilot_table(name)
    assert list(table["regime"]) == [f"{r} (chosen)" if r == declared.chosen else r for r in declared.regimes]
