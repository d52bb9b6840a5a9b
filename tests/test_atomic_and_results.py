"""Atomic writes leave nothing half-written; records round-trip into a DataFrame."""

import json

import pytest

from dstlib import atomic, results


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    path = tmp_path / "record.json"
    atomic.write_json(path, {"a": 1})

    def broken(tmp):
        tmp.write_text('{"a": 2, "trunc')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary left behind


def test_records_round_trip_and_frame(tmp_path):
    config = {"epochs": 2, "out_dir": str(tmp_path)}
    for seed, acc in [(0, 0.5), (1, 0.7)]:
        record = results.make_record(chapter="demo", profile="smoke", params={"method": "rigl", "seed": seed},
                                     metrics={"accuracy": acc}, history=[{"epoch": 1}], wall_time_s=1.5,
                                     config=config)
        results.write_record(record, tmp_path)
    frame = results.load(tmp_path / "demo")
    assert sorted(frame["seed"]) == [0, 1]
    assert sorted(frame["accuracy"]) == [0.5, 0.7]
    prov = results.read_records(tmp_path)[0]["provenance"]
    assert {"git_commit", "device", "torch", "python", "time_utc"} <= set(prov)


def test_run_id_depends_on_config_but_not_on_out_dir():
    base = dict(chapter="demo", profile="smoke", params={"seed": 0}, metrics={}, wall_time_s=0.0)
    a = results.make_record(config={"lr": 0.1, "out_dir": "/a"}, **base)
    b = results.make_record(config={"lr": 0.1, "out_dir": "/b"}, **base)
    c = results.make_record(config={"lr": 0.2, "out_dir": "/a"}, **base)
    assert a["id"] == b["id"] != c["id"]
    frame = results.to_frame([a, c])
    assert list(frame["lr"]) == [0.1, 0.2]  # a varying config value becomes a column
