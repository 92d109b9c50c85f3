"""The stage contract: typed options in, a typed summary out.

Every stage is a function `stage(work, XOptions) -> XSummary` (or `stage(XOptions)` for
those that take no work directory). The options dataclass is the one place its defaults
live: the CLI reads argparse defaults from it (`default_of`), the public API builds it
from keyword arguments (`options_from_kwargs`) and `run` builds it directly. The summary
carries counts by status, output paths, elapsed time, the exit code and the text the
CLI prints, so run, demo and a notebook treat every stage alike.

Each option is declared once, as a field made by `opt` (default, one-line help, metavar,
choices, limits, group): app/flags.py makes the argparse flags from it, `check_values`
reads the choices and limits, `convert` copies options into a lower layer's config, and
stages/recipe.py reads which fields belong in the recipe.
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


# ---- an option, declared once ------------------------------------------------------------------

def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None,
        metavar: Optional[str] = None, choices: Optional[tuple] = None,
        limits: Optional[str] = None, group: Optional[str] = None, shown: Optional[str] = None,
        flag: Any = True, recipe: bool = False, repeat: bool = False, nargs: Any = None,
        parse: Any = None, threshold: bool = False):
    """A field of an options dataclass with everything its flag and its check need.

    `help` is one line (the CLI appends the default); `limits` ">= 1", "> 0" or "0..9";
    `shown` the default as the help says it when the value is None or computed ("cores");
    `flag=False`: no CLI flag (set by the command from other flags); `recipe`: recorded in
    the work directory's recipe; `repeat`: a repeatable flag collected into a tuple;
    `parse`: the flag's own parser (a str -> value function raising ArgumentTypeError)."""
    meta = {"help": help, "metavar": metavar, "choices": choices, "limits": parse_limits(limits),
            "group": group, "shown": shown, "flag": flag, "recipe": recipe, "repeat": repeat,
            "nargs": nargs, "parse": parse, "threshold": threshold}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def like(cls, name: str, default: Any = dataclasses.MISSING, **changes):
    """A field declared as `cls`'s field `name`: the same default (unless `default` is
    given) and declaration (`changes`, e.g. help=..., override parts of it). How one
    options class takes another's option without restating it."""
    f = fields_by_name(cls)[name]
    metadata = {**f.metadata, **changes}
    if "limits" in changes:
        metadata["limits"] = parse_limits(changes["limits"])
    if default is not dataclasses.MISSING:
        return field(default=default, metadata=metadata)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field(default_factory=f.default_factory, metadata=metadata)  # type: ignore[misc]
    return field(default=f.default, metadata=metadata)


def parse_limits(text: Optional[str]) -> Optional[tuple]:
    """(lo, hi, lo_open) from ">= 1", "> 0", "0..9"."""
    if text is None:
        return None
    text = text.replace(" ", "")
    if ".." in text:
        lo, hi = text.split("..")
        return (_num(lo), _num(hi), False)
    if text.startswith(">="):
        return (_num(text[2:]), None, False)
    if text.startswith(">"):
        return (_num(text[1:]), None, True)
    raise ValueError(f"limits: expected '>= N', '> N' or 'A..B', got {text!r}")


def _num(s: str):
    return float(s) if "." in s else int(s)


def bounds_text(limits: tuple) -> str:
    """'>= 1', '> 0' or 'from 0 to 9': the words of a refusal."""
    lo, hi, lo_open = limits
    if hi is not None:
        return f"from {lo} to {hi}"
    return f"> {lo}" if lo_open else f">= {lo}"


def within(v, limits: tuple) -> bool:
    lo, hi, lo_open = limits
    if lo is not None and (v <= lo if lo_open else v < lo):
        return False
    return hi is None or v <= hi


@lru_cache(maxsize=None)
def fields_by_name(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls)}


def recipe_fields(cls) -> tuple:
    """The option names `cls` records in the work directory's recipe."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("recipe"))


def convert(target, source, **overrides):
    """`target` (a dataclass) from the same-named attributes of `source`; `overrides` win
    and a field `source` lacks keeps its default. The one conversion from a stage's
    options to a lower layer's config (the Met client's, the aligner's, the filter's)."""
    values = {}
    for f in dataclasses.fields(target):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif hasattr(source, f.name) and f.init:
            values[f.name] = getattr(source, f.name)
    return target(**values)


def overridable(config, names: tuple, cls_name: str, group: Optional[str] = None):
    """A frozen dataclass with the fields `names` of dataclass `config` as options that
    may be left unset: each Optional, default None (the caller's config decides), with
    the config field's declaration (help, metavar, limits) and its default as the help's
    (`shown`). So a stage's tunables are declared once, in its config."""
    hints = typing.get_type_hints(config)
    made = []
    for name in names:
        f = fields_by_name(config)[name]
        t = hints[name]
        if typing.get_origin(t) is typing.Union:
            t = next(a for a in typing.get_args(t) if a is not type(None))
        default = default_of(config, name)
        metadata = {**f.metadata, "group": group or f.metadata.get("group"),
                    "shown": f.metadata.get("shown") or str(default)}
        made.append((name, Optional[t], field(default=None, metadata=metadata)))
    return dataclasses.make_dataclass(cls_name, made, frozen=True)


# the options many stages share, declared once
DASK = "distributed execution (pip install 'metfaces-build[dask]'; docs/dask.md)"


def executor_opt():
    return opt("local", "local processes, or a Dask cluster", choices=("local", "dask"),
               group=DASK)


def scheduler_opt():
    return opt(None, "Dask scheduler", metavar="ADDRESS",
               shown="$DASK_SCHEDULER_ADDRESS", group=DASK)


def workers_opt(help: str = "worker processes (same output for any N)"):
    return opt(help=help, factory=default_workers, metavar="N", limits=">= 1", shown="cores")


def force_opt(help: str = "redo work already done and valid"):
    return opt(False, help)


def quiet_opt():
    return opt(False, "no progress bar, summary only")


def skip_bad_opt(help: str = "record malformed records and go on"):
    return opt(False, help)


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
    f = fields_by_name(cls)[name]
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
    is declared becomes a tuple; an int where a float is), a value among its field's
    `choices` and within its `limits` (as `opt` declared them). The CLI (options_from_args,
    after argparse's own checks) and the API (options_from_kwargs) both pass here, so both
    refuse the same values: a UsageError naming the option."""
    where = where or stage_name(cls)
    types = option_types(cls)
    fields = fields_by_name(cls)
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
        choices = fields[name].metadata.get("choices")
        if choices and v not in choices:
            raise UsageError(f"{where}: {name} must be one of {', '.join(map(str, choices))}; "
                             f"got {_short(v)}")
        limits = fields[name].metadata.get("limits")
        if limits and t in (int, float) and not within(v, limits):
            raise UsageError(f"{where}: {name} must be {bounds_text(limits)}, got {v}")
        out[name] = v
    check = getattr(cls, "validate_values", None)
    if check is not None:
        check(out, where)
    return out
