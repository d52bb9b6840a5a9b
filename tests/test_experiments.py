"""The pieces the chapter experiments share: the run grid, the method -> engine mapping, the records."""

import pytest
import torch

from dstlib import config, sparse
from dstlib.experiments import common


def test_grid_runs_dense_once_per_seed_and_every_sparse_setting():
    runs = list(common.grid(["dense", "rigl", "set"], [0.5, 0.1], [0, 1]))
    assert len(runs) == 2 * (1 + 2 * 2)
    assert [r for r in runs if r.method == "dense"] == [common.Run("dense", 1.0, 0), common.Run("dense", 1.0, 1)]
    assert common.Run("set", 0.1, 1) in runs


@pytest.mark.parametrize("method", ["static", "set", "rigl", "mest", "granet", "gmp"])
def test_engine_factory_builds_the_preset_with_the_config(method):
    cfg = config.resolve("dst_from_scratch", "smoke", distribution="uniform", update_every=7, drop_fraction=0.2)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = common.engine_factory(method, 0.25, cfg, seed=3)(model, optimizer, 100)
    assert isinstance(engine, common.PRESETS[method])
    if method not in ("static", "gmp", "granet"):
        assert engine.update_every == 7 and engine.density == pytest.approx(0.25, abs=0.02)
    assert common.engine_factory("dense", 1.0, cfg, seed=0) is None
    with pytest.raises(ValueError, match="method='magic'"):
        common.engine_factory("magic", 0.5, cfg, seed=0)


def test_chapter_result_writes_records_only_on_rank_zero(tmp_path, monkeypatch):
    cfg = config.resolve("dst_from_scratch", "smoke", out_dir=str(tmp_path))
    record = {"id": "abc", "chapter": "dst_from_scratch", "profile": "smoke", "params": {}, "metrics": {},
              "history": [], "wall_time_s": 0.0, "config": {}}
    monkeypatch.setenv("RANK", "1")
    common.ChapterResult(cfg).add(record)
    assert not list(tmp_path.rglob("*.json"))
    monkeypatch.setenv("RANK", "0")
    result = common.ChapterResult(cfg)
    result.add(record)
    assert (tmp_path / "dst_from_scratch" / "abc.json").exists() and len(result.frame) == 1


def test_presets_are_the_library_presets():
    assert common.PRESETS["rigl"] is sparse.RigL and common.METHODS[0] == "dense"
