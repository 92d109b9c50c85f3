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
import os
from dataclasses import dataclass, field
from typing import Any


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
    does not define is an AttributeError, never silently dropped); `overrides` win."""
    values = {}
    for name in option_names(cls):
        values[name] = overrides[name] if name in overrides else getattr(args, name)
    return cls(**values)


def options_from_kwargs(cls, kwargs: dict, where: str):
    """`cls` from keyword arguments; an unknown name is a TypeError naming the valid ones."""
    names = option_names(cls)
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(names)}")
    return cls(**kwargs)
