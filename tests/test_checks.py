"""dstlib.checks: one message shape, "name=value: allowed ...", for every argument check."""

import math
import re

import pytest

from dstlib import checks


def message(call) -> str:
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


@pytest.mark.parametrize(("call", "expected"), [
    (lambda: checks.number("density", 1.5, low=0, high=1, low_open=True), "density=1.5: allowed a number in (0, 1]"),
    (lambda: checks.one_of("split", "dev", ("train", "test")), "split='dev': allowed one of 'train', 'test'"),
    (lambda: checks.integer("epochs", 0, low=1), "epochs=0: allowed an integer >= 1"),
    (lambda: checks.integer("n_mels", 4, low=8, high=128), "n_mels=4: allowed an integer in [8, 128]"),
    (lambda: checks.number("width", -1, low=0, low_open=True), "width=-1: allowed a finite number > 0"),
    (lambda: checks.number("gain", "2"), "gain='2': allowed a finite number"),
    (lambda: checks.number("p", 1.0, high=1, high_open=True), "p=1.0: allowed a finite number < 1"),
    (lambda: checks.positive_ints(num_classes=10, in_channels=0), "in_channels=0: allowed an integer >= 1"),
    (lambda: checks.numbers("widths", (16, 32), length=4, low=1, integer=True),
     "widths=(16, 32): allowed 4 integers >= 1"),
    (lambda: checks.numbers("rates", [120, 120], distinct=True, low=80, high=450, integer=True),
     "rates=[120, 120]: allowed distinct integers in [80, 450]"),
    (lambda: checks.numbers("radii", [], low=0), "radii=[]: allowed a non-empty list of finite numbers >= 0"),
    (lambda: checks.sequence("voices", ["en", 3], "voice names", lambda v: isinstance(v, str)),
     "voices=['en', 3]: allowed a non-empty list of voice names"),
    (lambda: checks.require(False, "stem_stride", 3, "1 or 2"), "stem_stride=3: allowed 1 or 2"),
])
def test_every_message_names_parameter_value_and_what_is_allowed(call, expected):
    assert message(call) == expected
    assert re.fullmatch(r"[\w.\[\]'(), -]+=.+: allowed .+", expected)


def test_checks_return_the_value_unchanged():
    assert checks.number("lr", 0.1, low=0) == 0.1
    assert checks.integer("seed", 3, low=0) == 3
    assert checks.one_of("prune", None, ("magnitude", None)) is None
    widths = (16, 32, 64, 64)
    assert checks.numbers("widths", widths, length=4, low=1, integer=True) is widths
    assert checks.require(True, "x", "kept", "anything") == "kept"


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), -math.inf, "1", None, [1]])
def test_numbers_are_finite_ints_or_floats_never_bools(value):
    with pytest.raises(ValueError):
        checks.number("x", value)


def test_integer_rejects_floats_and_bounds_are_inclusive_unless_open():
    with pytest.raises(ValueError, match=r"x=1.0: allowed an integer >= 0"):
        checks.integer("x", 1.0, low=0)
    assert checks.integer("x", 10**30, low=0) == 10**30  # big ints are fine
    assert checks.number("x", 0, low=0) == 0
    with pytest.raises(ValueError):
        checks.number("x", 0, low=0, low_open=True)
    assert checks.is_number(1, low=0, high=1) and not checks.is_number(1, low=0, high=1, high_open=True)


def test_one_of_does_not_take_a_bool_for_an_int():
    assert checks.one_of("channels", 1, (1, 3)) == 1
    with pytest.raises(ValueError, match="channels=True: allowed one of 1, 3"):
        checks.one_of("channels", True, (1, 3))
    assert checks.one_of("flag", True, (True, False)) is True


def test_sequences_must_be_lists_or_tuples_of_the_given_length_and_distinct_when_asked():
    for bad in ("abc", {1, 2}, (1, 2, 3), (1, 0)):
        with pytest.raises(ValueError):
            checks.numbers("pool", bad, length=2, low=1, integer=True)
    assert checks.sequence("words", ["a", ["b"]], "items", lambda item: True, distinct=True) == ["a", ["b"]]
    with pytest.raises(ValueError, match="allowed distinct items"):
        checks.sequence("words", [["b"], ["b"]], "items", lambda item: True, distinct=True)  # unhashable


def test_odd_ints():
    assert [checks.is_odd_int(v) for v in (1, 3, 2, 0, -1, 3.0, True)] == [True, True, False, False, False,
                                                                            False, False]


def test_invalid_builds_the_error_for_callers_that_raise_themselves():
    error = checks.invalid("images", (8,), "a tensor of shape (..., H, W)")
    assert isinstance(error, ValueError) and str(error) == "images=(8,): allowed a tensor of shape (..., H, W)"
