"""Chapter profiles and parameter validation.

Every chapter declares its knobs (:class:`Knob`, each with a default), the values it sets for all its
profiles (``defaults``: the paper's engine settings, say) and, per profile, only what differs:

* ``smoke``: seconds; the tests run it to prove every code path works;
* ``tutorial``: the default and what the book builds, at most 5 minutes on a 2-core CPU;
* ``paper``: the paper's datasets, models and schedule; needs downloads and a GPU.

:func:`resolve` layers knob defaults < chapter defaults < profile < overrides and validates everything
before any data is loaded: an unknown chapter, profile or key, a wrong type, a value out of range or a
combination the chapter cannot run (its ``checks``) raises a ``ValueError`` that names the parameter,
the value and what is allowed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "tutorial", "paper")
_REQUIRED = object()  # a knob's default when every chapter has to set it


@dataclass(frozen=True)
class Knob:
    """One chapter parameter: its type, its allowed values and a one-line help text.

    ``kind`` is ``int``, ``float``, ``str`` or ``bool``. ``choices`` restricts the values; ``low`` and
    ``high`` bound numbers (``low_open`` / ``high_open`` exclude the bound). ``is_list`` means the value
    is a non-empty list whose elements obey the rest. ``optional`` allows ``None`` as a value.
    ``default`` is the value when neither the chapter nor the profile sets one (none: the chapter must).
    ``axis`` marks a list knob whose elements are grid points (seeds, densities, methods): a run's
    record does not depend on which other values the list held.
    """

    help: str
    kind: type = float
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    is_list: bool = False
    optional: bool = False
    default: Any = _REQUIRED
    axis: bool = False

    @property
    def has_default(self) -> bool:
        return self.default is not _REQUIRED

    def allowed(self) -> str:
        """A human description of the allowed values, used in error messages and ``--help``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {int: "an integer", float: "a number", str: "a string", bool: "True or False"}[self.kind]
            if self.low is not None or self.high is not None:
                left = "(" if self.low_open else "["
                right = ")" if self.high_open else "]"
                low = "-inf" if self.low is None else f"{self.low:g}"
                high = "inf" if self.high is None else f"{self.high:g}"
                text += f" in {left}{low}, {high}{right}"
        if self.is_list:
            text = f"a non-empty list of {text.removeprefix('a ').removeprefix('an ')}"
        return text + (" or None" if self.optional else "")

    def validate(self, name: str, value: Any) -> Any:
        """Return ``value`` normalised (tuples become lists, ints become floats for float knobs).

        Raises ``ValueError`` naming ``name``, ``value`` and :meth:`allowed` on a bad value.
        """
        if value is None and self.optional:
            return None
        if isinstance(value, str) and (self.is_list or self.kind is not str):
            value = self.parse(value)  # papermill's -p passes "[0.1, 0.2]" and "0.5" as text
        if self.is_list:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) == 0:
                raise ValueError(f"{name}={value!r}: allowed {self.allowed()}")
            return [self._validate_scalar(name, v, whole=value) for v in value]
        return self._validate_scalar(name, value, whole=value)

    def _validate_scalar(self, name: str, value: Any, whole: Any) -> Any:
        def fail() -> ValueError:
            return ValueError(f"{name}={whole!r}: allowed {self.allowed()}")

        if self.kind is bool:
            if not isinstance(value, bool):
                raise fail()
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail()
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail()
            value = float(value)
        elif not isinstance(value, self.kind):
            raise fail()
        if self.choices is not None and value not in self.choices:
            raise fail()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise fail()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise fail()
        return value

    def parse(self, text: str) -> Any:
        """Parse a command-line string (``"0.5"``, ``"rigl,set"``, ``"[0.1, 0.2]"``) into a value."""
        if text in ("None", "none", "null") and self.optional:
            return None
        if self.kind is bool and text.strip().lower() in ("true", "false"):
            return text.strip().lower() == "true"
        if self.is_list and not text.strip().startswith("["):
            return [self.parse_element(part.strip()) for part in text.split(",") if part.strip()]
        return self.parse_element(text)

    def parse_element(self, text: str) -> Any:
        """Parse one scalar (one list element for a list knob) from text."""
        if self.kind is str and not text.startswith(("[", "'", '"')):
            return text
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text


# Knobs every chapter shares.
COMMON_KNOBS: dict[str, Knob] = {
    "seeds": Knob("random seeds; one run per seed and setting", int, low=0, is_list=True, axis=True),
    "device": Knob("where to train: auto picks cuda when available", str, choices=("auto", "cpu", "cuda"),
                   default="auto"),
    "out_dir": Knob("folder for result records; None = results/ at the repository root", str, optional=True,
                    default=None),
    "progress": Knob("show one progress bar over the chapter's runs (points done, time left)", bool, default=True),
    "workers": Knob("grid points trained at once on a CPU, each in a process with its share of the torch "
                    "threads (the same records as 1, which trains them one after another here)", int, low=1,
                    default=2),
    "shard": Knob("run only the K-th of N slices of the grid, 'K/N' (each point in exactly one slice, "
                  "balanced by cost): one job of a SLURM array or one GPU each", str, default="1/1"),
    "fast_dev_run": Knob("run the profile's whole path for a few steps: its model at full size, its data loader, "
                         "the engine with a topology update, a few evaluation samples (records marked as such)",
                         bool, default=False),
}
# Knobs that say where and how a run is done and shown, not what it computes: no record depends on them.
PRESENTATION_KNOBS = ("device", "out_dir", "progress", "workers", "shard")

# A fast dev run trains each point for this many optimizer steps (the first one counted in FLOPs, the
# others timed) and evaluates it on this many samples.
FAST_DEV_STEPS = 3
FAST_DEV_EVAL_SAMPLES = 8
# What a fast dev run changes in every chapter (where the chapter has the knob), under the chapter's own
# ``ChapterSpec.fast_dev``: one seed and one epoch, and a topology update at the first step.
FAST_DEV_COMMON = {"epochs": 1, "update_every": 1, "update_every_epochs": 1 / FAST_DEV_STEPS, "download": False}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)`` with ``1 <= K <= N``; a ``ValueError`` naming the value otherwise."""
    k, sep, n = text.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise ValueError(f"shard={text!r}: allowed 'K/N' with integers 1 <= K <= N, such as '2/8'")
    return int(k), int(n)


@dataclass(frozen=True)
class ChapterSpec:
    """A chapter's experiment: its knobs and the values of each profile.

    ``knobs`` maps parameter names to :class:`Knob`; ``defaults`` holds the chapter's values for every
    profile (over the knobs' own defaults); ``profiles`` maps each of :data:`PROFILES` to what differs
    from them (:meth:`values` gives the whole profile, :meth:`check` that it is complete and valid).
    ``checks`` are functions of a resolved :class:`Config` that raise a ``ValueError`` on a combination of
    knobs the chapter cannot run (``dataset="digits"`` with a 1-D model), called by :func:`resolve` before
    any work. ``notebook`` is the path of the chapter's notebook relative to the repository root.
    ``fast_dev`` is what a fast dev run changes besides :data:`FAST_DEV_COMMON` (a batch of two, one point
    per method instead of every sparsity, no download): never the model or the data's layout.
    """

    name: str
    title: str
    notebook: str
    knobs: Mapping[str, Knob]
    profiles: Mapping[str, Mapping[str, Any]]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    checks: Sequence[Callable[[Config], None]] = ()
    paper: str = ""
    fast_dev: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, profile: str = "tutorial", **overrides: Any) -> Config:
        """:func:`resolve` for this chapter."""
        return resolve(self, profile, **overrides)

    def all_knobs(self) -> dict[str, Knob]:
        """The chapter's own knobs plus :data:`COMMON_KNOBS`."""
        return {**COMMON_KNOBS, **self.knobs}

    def values(self, profile: str) -> dict[str, Any]:
        """Every knob's value in ``profile``: knob defaults, then the chapter's, then the profile's."""
        knobs = self.all_knobs()
        values = {key: knob.default for key, knob in knobs.items() if knob.has_default}
        return {**values, **self.defaults, **self.profiles[profile]}

    def check(self) -> None:
        """Assert every profile gives every knob a valid value and passes the chapter's ``checks`` (a
        programming error otherwise)."""
        knobs = self.all_knobs()
        for profile in PROFILES:
            values = self.values(profile)
            missing = sorted(set(knobs) - set(values))
            unknown = sorted(set(values) - set(knobs))
            if missing or unknown:
                raise AssertionError(f"{self.name}/{profile}: missing {missing}, unknown {unknown}")
            resolve(self, profile)


class Config(dict):
    """A resolved, validated chapter configuration: a plain ``dict`` with attribute access.

    ``config.chapter`` and ``config.profile`` name where it came from; ``config["epochs"]`` and
    ``config.epochs`` are the same value.
    """

    def __init__(self, chapter: str, profile: str, values: Mapping[str, Any]):
        super().__init__(values)
        self.__dict__["chapter"] = chapter
        self.__dict__["profile"] = profile

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Config is read-only; use dstlib.config.resolve(..., key=value)")

    def to_dict(self) -> dict[str, Any]:
        """All values plus ``chapter`` and ``profile``, JSON-serialisable."""
        return {"chapter": self.chapter, "profile": self.profile, **self}


IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def resolve(spec: ChapterSpec, profile: str = "tutorial", **overrides: Any) -> Config:
    """Validated configuration of the chapter ``spec`` in ``profile`` with ``overrides`` applied.

    An override equal to ``None`` means "take the profile's value", so a notebook's parameters cell
    can list every knob with ``None`` defaults. Raises ``ValueError`` on an unknown profile or key and
    on a bad value, before anything runs. (``dstlib.experiments.resolve`` takes a chapter's name.)
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: allowed one of {', '.join(PROFILES)}")
    knobs = spec.all_knobs()
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        shown = ", ".join(f"{k}={overrides[k]!r}" for k in unknown)
        raise ValueError(f"{shown}: unknown parameter(s) for chapter {spec.name!r}; "
                         f"allowed: {', '.join(sorted(knobs))}")
    values = spec.values(profile)
    if overrides.get("fast_dev_run"):
        values.update(fast_dev_changes(spec, values))
    values.update({k: v for k, v in overrides.items() if v is not None})
    parse_shard(values["shard"])
    validated = {key: knobs[key].validate(key, value) for key, value in values.items()}
    config = Config(spec.name, profile, validated)
    for check in spec.checks:
        check(config)
    return config


def fast_dev_changes(spec: ChapterSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a fast dev run changes in a profile's ``values``: :data:`FAST_DEV_COMMON` for the knobs
    the chapter has, the first seed, then the chapter's ``fast_dev``."""
    changes = {key: value for key, value in FAST_DEV_COMMON.items() if key in values}
    if "seeds" in values:
        changes["seeds"] = values["seeds"][:1]
    changes.update(spec.fast_dev)
    return {key: value for key, value in changes.items() if key not in values or values[key] != value}


def shortened(spec: ChapterSpec, config: Config) -> list[str]:
    """What a fast dev run of ``config`` changed in its profile, one ``knob: before -> after`` each."""
    before = spec.values(config.profile)
    return [f"{key}: {before.get(key)!r} -> {config[key]!r}" for key in fast_dev_changes(spec, before)
            if key in config and before.get(key) != config[key]]


def from_namespace(spec: ChapterSpec, namespace: Mapping[str, Any]) -> Config:
    """The configuration of a notebook: ``profile`` and the knobs read from its global ``namespace``.

    Called in a chapter's first code cell, right after the ``parameters`` cell (and the cell papermill
    injects). Any other plain variable defined by then is a parameter that is not a knob (``-p density
    0.1`` for ``densities``) and raises a ``ValueError`` naming it, instead of silently running minutes
    of the defaults. Modules, functions and classes (imports), private names and IPython's own names
    are ignored. The ``ValueError`` of a bad value is raised from here with the message alone (``name=value:
    allowed ...``), so papermill's ``evalue`` is that message and the traceback is two frames long.
    """
    import types

    knobs = spec.all_knobs()
    stray = sorted(name for name, value in namespace.items()
                   if not name.startswith("_") and name not in knobs and name != "profile"
                   and name not in IPYTHON_NAMES and not isinstance(value, types.ModuleType) and not callable(value))
    if stray:
        shown = ", ".join(f"{k}={namespace[k]!r}" for k in stray)
        raise ValueError(f"{shown}: unknown parameter(s) for chapter {spec.name!r}; "
                         f"allowed: profile, {', '.join(sorted(knobs))}")
    try:
        return resolve(spec, namespace.get("profile", "tutorial"), **{k: namespace.get(k) for k in knobs})
    except ValueError as error:  # raised afresh: a notebook's traceback shows this frame, not resolve's
        raise ValueError(str(error)) from None


def parse_assignments(spec: ChapterSpec, assignments: Sequence[str]) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` from the command line using each knob's type.

    Raises ``ValueError`` on a malformed assignment or an unknown key.
    """
    knobs = spec.all_knobs()
    parsed: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: allowed key=value")
        if key not in knobs:
            raise ValueError(f"--set {item!r}: unknown parameter {key!r} for chapter {spec.name!r}; "
                             f"allowed: {', '.join(sorted(knobs))}")
        parsed[key] = knobs[key].parse(text.strip())
    return parsed
