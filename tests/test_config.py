"""Config validation: every bad input is refused with a message naming parameter, value and what is allowed."""

import pytest

from dstlib import config, experiments


@pytest.mark.parametrize("chapter", experiments.names())
def test_every_profile_sets_every_knob_validly(chapter):
    experiments.spec(chapter).check()


def test_resolve_applies_overrides_and_ignores_none():
    resolved = experiments.resolve("dst_from_scratch", "smoke", densities=[0.3], epochs=None)
    assert resolved.densities == [0.3]
    assert resolved.epochs == experiments.spec("dst_from_scratch").values("smoke")["epochs"]
    assert resolved.chapter == "dst_from_scratch" and resolved.profile == "smoke"


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"chapter": "nope"}, ["chapter='nope'", "dst_from_scratch"]),
        ({"profile": "huge"}, ["profile='huge'", "smoke, tutorial, paper"]),
        ({"epochz": 3}, ["epochz", "allowed", "epochs"]),
        ({"epochs": 2.5}, ["epochs=2.5", "an integer"]),
        ({"epochs": 0}, ["epochs=0", "in [1, inf]"]),
        ({"densities": [0.5, 1.5]}, ["densities=[0.5, 1.5]", "(0, 1]"]),
        ({"densities": [0.0]}, ["densities=[0.0]", "(0, 1]"]),
        ({"densities": 0.5}, ["densities=0.5", "non-empty list"]),
        ({"densities": []}, ["densities=[]", "non-empty list"]),
        ({"methods": ["rigl", "magic"]}, ["methods=['rigl', 'magic']", "'set'"]),
        ({"dataset": "imagenet"}, ["dataset='imagenet'", "'digits'"]),
        ({"progress": "yes"}, ["progress='yes'", "True or False"]),
        ({"seeds": [-1]}, ["seeds=[-1]", "[0, inf]"]),
    ],
)
def test_bad_values_name_parameter_value_and_allowed(kwargs, fragments):
    args = {"chapter": "dst_from_scratch", "profile": "smoke"}
    args.update(kwargs)
    chapter, profile = args.pop("chapter"), args.pop("profile")
    with pytest.raises(ValueError) as error:
        experiments.resolve(chapter, profile, **args)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_sparsity_must_be_below_one():
    with pytest.raises(ValueError, match=r"sparsities=\[1.0\].*\[0, 1\)"):
        experiments.resolve("corruption_robustness", "smoke", sparsities=[1.0])


def test_parse_assignments_uses_knob_types():
    spec = experiments.spec("dst_from_scratch")
    parsed = config.parse_assignments(spec, ["densities=0.1,0.05", "epochs=3", "methods=rigl", "progress=True",
                                             "out_dir=/tmp/x"])
    assert parsed == {"densities": [0.1, 0.05], "epochs": 3, "methods": ["rigl"], "progress": True,
                      "out_dir": "/tmp/x"}
    with pytest.raises(ValueError, match="key=value"):
        config.parse_assignments(experiments.spec("dst_from_scratch"), ["epochs"])
    with pytest.raises(ValueError, match="unknown parameter 'epoch'"):
        config.parse_assignments(experiments.spec("dst_from_scratch"), ["epoch=3"])


def test_strings_from_papermill_are_parsed_with_the_knob_type():
    resolved = experiments.resolve("dst_from_scratch", "smoke", densities="[0.3, 0.1]", epochs="2", methods="rigl,set")
    assert resolved.densities == [0.3, 0.1] and resolved.epochs == 2 and resolved.methods == ["rigl", "set"]
    with pytest.raises(ValueError, match="epochs='two'"):
        experiments.resolve("dst_from_scratch", "smoke", epochs="two")


def test_config_is_read_only():
    resolved = experiments.resolve("dst_from_scratch", "smoke")
    with pytest.raises(AttributeError):
        resolved.epochs = 5


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("TRUE", True), ("false", False)])
def test_booleans_parse_from_the_command_line_in_any_spelling(text, value):
    assert config.parse_assignments(experiments.spec("dst_from_scratch"), [f"progress={text}"]) == {"progress": value}


def test_a_notebook_parameter_that_is_not_a_knob_fails_before_any_work():
    spec = experiments.spec("dst_from_scratch")
    namespace = {"profile": "smoke", "densities": None, "pd": config, "_private": 1, "In": []}
    assert config.from_namespace(spec, namespace).densities == spec.values("smoke")["densities"]
    with pytest.raises(ValueError, match=r"density=0.1: unknown parameter.*allowed: profile, .*densities"):
        config.from_namespace(spec, {**namespace, "density": 0.1})


def test_config_does_not_import_the_experiments():
    import subprocess
    import sys

    code = "import sys, dstlib.config; print('dstlib.experiments' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
