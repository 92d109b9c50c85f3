"""The stage contract: typed options in, a typed summary out.

Every stage is a function `stage(work, XOptions) -> XSummary` (or `stage(XOptions)` for
those that take no work directory). The options dataclass is the one place its defaults
live: the CLI reads argparse defaults from it (`default_of`), the public API builds it
from keyword arguments (`options_from_kwargs`) and `run` builds it directly. The summary
carries counts by status, output paths, elapsed time, the exit code and the text the
CLI prints, so run, demo and a notebook treat every stage alike.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from ..core.errors import UsageError


def default_workers() -> int:
    """Worker processes by default: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class StageSummary:
    """What a stage did: counts by status, the files it wrote, how long it took.

    `lines` is what the CLI prints on stdout (the first is the one-line summary), `notes`
    what it prints on stderr; `failed` counts the items that make the exit status 1."""
    stage: str = ""
    counts: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    elapsed: float = 0.0
    failed: int = 0
    lines: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every item ok; 1 some items failed (each recorded with its reason)."""
        return 1 if self.failed else 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        """One line of text: the first line the CLI prints."""
        if self.lines:
            return self.lines[0]
        body = ", ".join(f"{v} {k}" for k, v in self.counts.items()) or "nothing to do"
        return f"{self.stage}: {body}"

    def text(self) -> str:
        return "\n".join(self.lines) if self.lines else self.line()

    def __str__(self) -> str:
        return self.text()


def default_of(cls, name: str) -> Any:
    """The default of field `name` of options dataclass `cls` (argparse reads it here)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{cls.__name__}.{name} has no default")


def option_names(cls) -> list:
    return [f.name for f in dataclasses.fields(cls)]


def options_from_args(cls, args, **overrides):
    """`cls` from an argparse namespace: every field is read by name (a field the parser
    does not define is an AttributeError, never silently dropped); `overrides` win. The
    values pass `check_values`, as the API's do."""
    values = {}
    for name in option_names(cls):
        values[name] = overrides[name] if name in overrides else getattr(args, name)
    return cls(**check_values(cls, values, stage_name(cls)))


def options_from_kwargs(cls, kwargs: dict, where: str):
    """`cls` from keyword arguments; an unknown name is a TypeError naming the valid ones,
    a bad value a UsageError (`check_values`, the CLI's check too)."""
    names = option_names(cls)
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(names)}")
    return cls(**check_values(cls, kwargs, where))


# ---- one validation of option values, for the CLI and the API --------------------------------

# bounds every options class shares (a class's own LIMITS add to and override these)
COMMON_LIMITS = {"workers": (1, None), "fetch_workers": (1, None), "max_pixels": (1, None)}


def stage_name(cls) -> str:
    """'detect' for DetectOptions: the name messages start with."""
    return cls.__name__[:-len("Options")].lower() if cls.__name__.endswith("Options") else cls.__name__


@lru_cache(maxsize=None)
def option_types(cls) -> dict:
    """{field: (type, optional)} from the dataclass's annotations (str, int, float, bool,
    tuple, or Optional of one)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t, optional = hints.get(f.name, Any), False
        if typing.get_origin(t) is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            optional, t = True, (args[0] if len(args) == 1 else Any)
        out[f.name] = (t, optional)
    return out


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def check_values(cls, values: dict, where: Optional[str] = None) -> dict:
    """`values` (some or all fields of options class `cls`) checked and normalised: each
    has its field's type (a path may be any os.PathLike, kept as str; a list where a tuple
    is declared becomes a tuple; an int where a float is), a value among the class's
    `CHOICES` {field: allowed} and within its `LIMITS` {field: (lo, hi)}. The CLI
    (options_from_args, after argparse's own checks) and the API (options_from_kwargs)
    both pass here, so both refuse the same values: a UsageError naming the option."""
    where = where or stage_name(cls)
    types = option_types(cls)
    choices = getattr(cls, "CHOICES", {})
    limits = {**COMMON_LIMITS, **getattr(cls, "LIMITS", {})}
    out = dict(values)
    for name, v in values.items():
        if name not in types:
            continue
        t, optional = types[name]
        if v is None:
            if optional:
                continue
            raise UsageError(f"{where}: {name} needs a value")
        if t is bool:
            ok = isinstance(v, bool)
        elif t is int:
            ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
            v = int(v) if ok else v
        elif t is float:
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif t is str:
            if isinstance(v, os.PathLike):
                v = os.fspath(v)
            ok = isinstance(v, str)
        elif t is tuple:
            ok = isinstance(v, (tuple, list))
            v = tuple(v) if ok else v
        else:
            ok = True
        if not ok:
            kind = {bool: "True or False", int: "a whole number", float: "a number",
                    str: "a string (or a path)", tuple: "a list or tuple"}[t]
            raise UsageError(f"{where}: {name} must be {kind}, got {_short(v)}")
        if name in choices and v not in choices[name]:
            raise UsageError(f"{where}: {name} must be one of {', '.join(map(str, choices[name]))}; "
                             f"got {_short(v)}")
        if name in limits and t in (int, float):
            lo, hi = limits[name]
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                bounds = f">= {lo}" if hi is None else f"from {lo} to {hi}"
                raise UsageError(f"{where}: {name} must be {bounds}, got {v}")
        out[name] = v
    check = getattr(cls, "validate_values", None)
    if check is not None:
        check(out, where)
    return out
