"""Argument checks with one message style: ``name=value: allowed ...``.

Every check raises ``ValueError`` with the parameter's name, the ``repr`` of the value it got and what is
allowed, and returns the value unchanged when it is fine::

    >>> number("density", 1.5, low=0, high=1, low_open=True)
    Traceback (most recent call last):
    ValueError: density=1.5: allowed a number in (0, 1]
    >>> one_of("split", "dev", ("train", "test"))
    Traceback (most recent call last):
    ValueError: split='dev': allowed one of 'train', 'test'

Numbers are ``int`` or ``float`` and never ``bool``; they must be finite (no NaN, no infinity); integers
are ``int``. For a rule of its own a caller writes ``require(ok, name, value, "what is allowed")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def invalid(name: str, value: object, allowed: str) -> ValueError:
    """The error for argument ``name`` set to ``value``: ``ValueError("name=value: allowed <allowed>")``."""
    return ValueError(f"{name}={value!r}: allowed {allowed}")


def require(ok: bool, name: str, value: T, allowed: str) -> T:
    """Return ``value`` if ``ok``, else raise :func:`invalid` ``(name, value, allowed)``."""
    if not ok:
        raise invalid(name, value, allowed)
    return value


def one_of(name: str, value: T, allowed: Iterable[object]) -> T:
    """``value`` must equal one of ``allowed`` (``True`` does not stand for ``1``): ``"allowed one of 'a', 'b'"``."""
    allowed = tuple(allowed)
    bool_allowed = any(isinstance(choice, bool) for choice in allowed)
    ok = (bool_allowed or not isinstance(value, bool)) and any(value == choice for choice in allowed)
    return require(ok, name, value, "one of " + ", ".join(map(repr, allowed)))


def is_number(value: object, *, low: float | None = None, high: float | None = None, low_open: bool = False,
              high_open: bool = False, integer: bool = False) -> bool:
    """Whether ``value`` is a finite number (an ``int`` with ``integer``) within the bounds given."""
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def is_odd_int(value: object) -> bool:
    """Whether ``value`` is an odd ``int`` >= 1 (a kernel size with a centre, a symmetric group count)."""
    return is_number(value, low=1, integer=True) and value % 2 == 1


def describe_number(*, low: float | None = None, high: float | None = None, low_open: bool = False,
                    high_open: bool = False, integer: bool = False, plural: bool = False) -> str:
    """What :func:`is_number` accepts, in words: ``"a number in (0, 1]"``, ``"integers >= 1"``, ..."""
    if integer:
        kind = "integers" if plural else "an integer"
    else:
        finite = "" if low is not None and high is not None else "finite "
        kind = f"{finite}numbers" if plural else f"a {finite}number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return kind


def number(name: str, value: T, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, integer: bool = False) -> T:
    """A finite number (an ``int`` with ``integer``) within the bounds given, e.g. ``low=0, low_open=True``
    for ``"a finite number > 0"``; open bounds are excluded."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "integer": integer}
    return require(is_number(value, **bounds), name, value, describe_number(**bounds))


def integer(name: str, value: T, *, low: int | None = None, high: int | None = None) -> T:
    """An ``int`` (not ``bool``) in ``[low, high]``: ``integer("epochs", 0, low=1)`` raises
    ``epochs=0: allowed an integer >= 1``."""
    return number(name, value, low=low, high=high, integer=True)


def positive_ints(**values: object) -> None:
    """``positive_ints(num_classes=10, in_channels=3)``: each keyword must be an :func:`integer` >= 1."""
    for name, value in values.items():
        integer(name, value, low=1)


def sequence(name: str, values: T, items: str, item_ok: Callable[[Any], bool], *, length: int | None = None,
             distinct: bool = False) -> T:
    """A non-empty list or tuple whose items all pass ``item_ok`` (``items`` says what they are, plural).

    With ``length`` it must have that many items, with ``distinct`` no item twice. Messages read
    ``"allowed 4 integers >= 1"``, ``"allowed distinct integers in [80, 450]"`` or
    ``"allowed a non-empty list of integers >= 1"``.
    """
    items = f"distinct {items}" if distinct else items
    allowed = f"{length} {items}" if length is not None else (items if distinct else f"a non-empty list of {items}")
    ok = (
        isinstance(values, list | tuple)
        and len(values) > 0
        and (length is None or len(values) == length)
        and all(item_ok(item) for item in values)
        and (not distinct or _all_distinct(values))
    )
    return require(ok, name, values, allowed)


def numbers(name: str, values: T, *, length: int | None = None, distinct: bool = False, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            integer: bool = False) -> T:
    """A :func:`sequence` of numbers that each pass :func:`number` with the bounds given."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "integer": integer}
    return sequence(name, values, describe_number(**bounds, plural=True), lambda item: is_number(item, **bounds),
                    length=length, distinct=distinct)


def _all_distinct(values: list | tuple) -> bool:
    try:
        return len(set(values)) == len(values)
    except TypeError:  # unhashable items
        return all(a != b for i, a in enumerate(values) for b in values[i + 1:])
