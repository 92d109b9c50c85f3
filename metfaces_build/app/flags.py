"""Flags made from the options dataclasses (`add_options`), the help layout, and the few
flags no options class holds (--work, --quiet, ...)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from typing import Optional

from ..infra.stage import (bounds_text, default_of, default_workers, fields_by_name, option_types,
                           parse_limits, within)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's layout with a wider option column, so most options take one line, and
    "(default: X)" never split across lines."""

    def __init__(self, prog, indent_increment=2, max_help_position=28, width=None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _split_lines(self, text, width):
        text = self._whitespace_matcher.sub(" ", text).strip().replace("(default: ", "(default:\0")
        return [line.replace("\0", " ") for line in textwrap.wrap(text, width)]


def add_work_dir(p, required: bool = False, default: Optional[str] = "metfaces-work",
                 help: str = "work directory") -> None:
    default = None if required else default
    shown = f" (default: {default})" if default else ""
    p.add_argument("--work", metavar="DIR", default=default, required=required,
                   help=help + shown)


def add_common(p, workers: bool = True, force: bool = True) -> None:
    """--workers, --force, --quiet: the flags every stage takes."""
    if workers:
        p.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                       help="worker processes (default: cores)")
    if force:
        p.add_argument("--force", action="store_true", help="redo work already done and valid")
    p.add_argument("--quiet", action="store_true", help="no progress bar, summary only")


# ---- flags from an options dataclass ----------------------------------------------------------

def flag_name(cls, name: str) -> str:
    f = fields_by_name(cls)[name]
    spelled = f.metadata.get("flag", True)
    return spelled if isinstance(spelled, str) else "--" + name.replace("_", "-")


def default_text(cls, name: str) -> Optional[str]:
    """The default as the help shows it, or None (no default worth saying)."""
    m = fields_by_name(cls)[name].metadata
    if m.get("shown"):
        return m["shown"]
    v = _default(cls, name)
    if v is None or v is False or v == ():
        return None
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) and v >= 100_000 else str(v)


def _default(cls, name: str):
    """The field's default; None for a field the command fills in (align's paths)."""
    try:
        return default_of(cls, name)
    except KeyError:
        return None


def help_of(cls, name: str) -> str:
    """The option's one-line help with its default."""
    h = fields_by_name(cls)[name].metadata.get("help", "")
    shown = default_text(cls, name)
    return f"{h} (default: {shown})" if shown is not None else h


def add_options(p, cls, names=None, *, group: Optional[str] = None, skip=(),
                parse: Optional[dict] = None, required=()) -> None:
    """A flag for each option of `cls` that has one (`names`: just those, in that order),
    in the argument group its declaration names (else `group`, else the parser's own);
    `parse` {name: str -> value} for flags whose check lives in the app layer;
    `required`: the options the user must give."""
    names = names if names is not None else [f.name for f in dataclasses.fields(cls)]
    for name in names:
        if name in skip or fields_by_name(cls)[name].metadata.get("flag", True) is False:
            continue
        title = fields_by_name(cls)[name].metadata.get("group") or group
        a = add_option(group_of(p, title) if title else p, cls, name,
                       parse=(parse or {}).get(name))
        a.required = name in required


def add_option(p, cls, name: str, help: Optional[str] = None, parse=None):
    """The flag of option `name` of `cls` (type, parser, choices, default from its field)."""
    m = fields_by_name(cls)[name].metadata
    t, optional = option_types(cls)[name]
    kw = {"dest": name, "help": help if help is not None else help_of(cls, name)}
    default = _default(cls, name)
    if t is bool:
        kw.update(action="store_true", default=default)
    elif m.get("repeat"):
        kw.update(action="append", default=list(default) if default else None)
    else:
        kw["default"] = default
        parse = parse or m.get("parse") or value_parser(t, m.get("limits"))
        if parse is not None:
            kw["type"] = parse
    if m.get("metavar") and t is not bool:
        kw["metavar"] = m["metavar"]
    if m.get("choices"):
        kw["choices"] = m["choices"]
    if m.get("nargs"):
        kw["nargs"] = m["nargs"]
    return p.add_argument(flag_name(cls, name), **kw)


def group_of(p, title: str, description: Optional[str] = None):
    """The argument group `title` of parser `p`, made on first use."""
    groups = p.__dict__.setdefault("_groups_by_title", {})
    if title not in groups:
        groups[title] = p.add_argument_group(title, description)
    return groups[title]


def add_compact(p, title: str, cls, names, see: Optional[str] = None) -> None:
    """Flags listed compactly under `title`: with `see` (another command's --help, where
    each has its help and default) by name only; else as `--flag DEFAULT`, their help in
    docs/commands.md. For rarely changed options and a command that takes a whole stage's
    options (run takes fetch's)."""
    shown = []
    for name in names:
        a = add_option(p, cls, name, help=argparse.SUPPRESS)
        a.full_help = help_of(cls, name)   # the help it has in full elsewhere (tests read it)
        value = "" if see else default_text(cls, name)
        shown.append(f"{a.option_strings[0]}{' ' + value if value else ''}".replace(" ", "\0"))
    text = textwrap.fill("  ".join(shown), width=76, break_on_hyphens=False)
    group_of(p, f"{title} (see `{see}`)" if see else title, text.replace("\0", " "))


def value_parser(t, limits: Optional[tuple]):
    """str -> value for a flag of type `t` within `limits`, with the refusal's words."""
    if t is int:
        return _number(int, "a whole number", limits)
    if t is float:
        return _number(float, "a number", limits)
    return None


def _number(kind, words: str, limits: Optional[tuple]):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {s!r}") from None
        if limits is not None and not within(v, limits):
            raise argparse.ArgumentTypeError(f"expected a number {bounds_text(limits)}, got {s}")
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = value_parser(int, parse_limits(">= 1"))
nonneg_int = value_parser(int, parse_limits(">= 0"))
zlib_level = value_parser(int, parse_limits("0..9"))
nonneg_float = value_parser(float, parse_limits(">= 0"))
positive_float = value_parser(float, parse_limits("> 0"))


def print_summary(summary) -> int:
    """Print a stage summary as the CLI does (lines on stdout, notes on stderr) and
    return its exit code."""
    for line in summary.lines:
        print(line)
    for note in summary.notes:
        print(note, file=sys.stderr)
    return summary.exit_code

