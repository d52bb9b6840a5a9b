"""The command line: list, run (writes records), sweep (papermill grid, skips finished points), errors."""

import json
import subprocess
import sys

import pytest

from dstlib import __main__ as cli


def test_list_shows_chapters_knobs_and_profiles(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dst_from_scratch" in out and "corruption_robustness" in out
    assert "densities" in out and "smoke=" in out and "paper=" in out


def test_bad_input_exits_2_with_a_clear_message(capsys):
    assert cli.main(["run", "dst_from_scratch", "--profile", "smoke", "--set", "densities=1.5"]) == 2
    assert "densities=[1.5]" in capsys.readouterr().err
    assert cli.main(["run", "no_such_chapter"]) == 2
    assert cli.main(["sweep", "dst_from_scratch", "--profile", "smoke", "--grid", "lr=-1"]) == 2


def test_a_dataset_missing_offline_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DSTLIB_DATA", str(tmp_path))
    args = ["run", "dst_from_scratch", "--profile", "smoke", "--set", "dataset=cifar10", "--set", "download=false",
            "--out", str(tmp_path)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "cifar10" in err and "Traceback" not in err


def test_sweep_notebooks_are_named_by_grid_point():
    assert cli.point_name({"seeds": [0], "lr": 0.01}) == "lr=0.01_seeds=0"
    assert cli.point_name({"methods": ["set", "rigl"]}) == "methods=set,rigl"


def test_sweep_points_validate_and_expand_list_knobs():
    points = cli.sweep_points("dst_from_scratch", "smoke", ["epochs=1"], ["seeds=0,1", "lr=0.01,0.1"])
    assert points == [{"epochs": 1, "seeds": [0], "lr": 0.01}, {"epochs": 1, "seeds": [0], "lr": 0.1},
                      {"epochs": 1, "seeds": [1], "lr": 0.01}, {"epochs": 1, "seeds": [1], "lr": 0.1}]


@pytest.mark.slow
def test_run_writes_records_reflecting_the_overrides(tmp_path):
    command = [sys.executable, "-m", "dstlib", "run", "dst_from_scratch", "--profile", "smoke",
               "--set", "methods=dense,rigl", "--set", "densities=0.2", "--set", "epochs=1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "dst_from_scratch").glob("*.json")]
    assert sorted((r["params"]["method"], r["params"]["density"]) for r in records) == [("dense", 1.0), ("rigl", 0.2)]
    assert all(r["config"]["epochs"] == 1 and len(r["history"]) == 1 for r in records)


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.xdist_group("kernels")
def test_sweep_runs_the_grid_skips_finished_points_and_gathers_a_table(tmp_path, capsys):
    args = ["sweep", "dst_from_scratch", "--profile", "smoke", "--out", str(tmp_path),
            "--set", "methods=static", "--set", "densities=0.5", "--set", "epochs=1", "--grid", "seeds=0,1"]
    assert cli.main(args) == 0
    table = (tmp_path / "dst_from_scratch" / "sweep" / "table.csv").read_text().splitlines()
    assert len(table) == 3 and "seed" in table[0]  # header + one record per grid point
    names = sorted(p.name for p in (tmp_path / "dst_from_scratch" / "sweep").glob("*.ipynb"))
    assert names == [f"smoke_densities=0.5_epochs=1_methods=static_seeds={s}.ipynb" for s in (0, 1)]
    capsys.readouterr()
    assert cli.main(args) == 0  # second time: both points are done
    assert sum(line.startswith("skip ") for line in capsys.readouterr().out.splitlines()) == 2


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_ctrl_c_prints_what_is_kept_and_exits_130(command, tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_chapter" if command == "run" else "sweep", interrupt)
    (tmp_path / "dst_from_scratch").mkdir()
    (tmp_path / "dst_from_scratch" / "abc.json").write_text("{}")
    assert cli.main([command, "dst_from_scratch", "--profile", "smoke", "--out", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err + captured.out
    assert "1 finished records" in lines[0] and str(tmp_path / "dst_from_scratch" / "checkpoints") in lines[0]
    assert "same command again" in lines[0]


def test_a_failing_sweep_point_leaves_no_notebook_says_why_and_exits_1(tmp_path, monkeypatch, capsys):
    import papermill

    calls = []

    def execute_notebook(notebook, output, parameters, **kwargs):
        calls.append(parameters["seeds"])
        with open(output, "w") as partial:  # papermill writes the notebook as it goes
            partial.write("{}")
        if parameters["seeds"] == [0]:
            raise papermill.PapermillExecutionError(3, 2, "cfg = ...", "ValueError", "lr=-1.0: allowed > 0", [])
        with open(output, "w") as partial:
            partial.write("{}")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    args = ["sweep", "dst_from_scratch", "--profile", "smoke", "--out", str(tmp_path), "--grid", "seeds=0,1"]
    assert cli.main(args) == 1
    assert calls == [[0], [1]]  # the sweep went on after the failed point
    folder = tmp_path / "dst_from_scratch" / "sweep"
    assert sorted(p.name for p in folder.glob("*.ipynb")) == ["smoke_seeds=1.ipynb"]  # no partial notebook left
    assert not list(folder.glob(".*partial*"))
    err = capsys.readouterr().err
    assert "ValueError: lr=-1.0: allowed > 0" in err and "Traceback" not in err
    assert "1 of 2 grid points failed" in err


def test_config_error_in_a_notebook_is_the_message_alone(monkeypatch):
    from dstlib import config, experiments

    spec = experiments.spec("dst_from_scratch")
    with pytest.raises(ValueError) as error:
        config.from_namespace(spec, {"profile": "smoke", "densities": [1.5]})
    assert str(error.value).startswith("densities=[1.5]")
    assert error.value.__cause__ is None and error.value.__suppress_context__
    frames = []
    tb = error.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "from_namespace"  # a short traceback: it ends where the notebook called
