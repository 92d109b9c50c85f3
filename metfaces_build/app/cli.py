"""The `metfaces-build` command: one subcommand per pipeline stage.

Each subcommand has an adapter module (app/commands/*, app/run.py, app/demo.py) with
`configure_parser(parser)` and `main(args) -> int` (argparse -> options -> stage function
-> print -> exit code); this file only wires them up, maps user mistakes to exit 2 without
a traceback, and documents the exit codes. Stage modules keep heavy imports (dlib, scipy,
requests) inside functions, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import platform
import sys
from typing import Optional, Sequence

from .. import __version__
from ..core.errors import UsageError
from .flags import HelpFormatter
from .helptext import command_help

# (subcommand, module, one-line summary)
COMMANDS = [
    ("fetch", "metfaces_build.app.commands.fetch", "download Met object records and original images"),
    ("detect", "metfaces_build.app.commands.detect", "find faces + 68 landmarks with dlib -> faces.json"),
    ("filter", "metfaces_build.app.commands.filter", "prune faces with explicit, recorded heuristics"),
    ("align", "metfaces_build.app.commands.align", "crop aligned 1024x1024 faces (exact MetFaces arithmetic)"),
    ("compare", "metfaces_build.app.commands.compare", "regenerated vs stored landmarks, or two crop folders"),
    ("run", "metfaces_build.app.run", "fetch -> detect -> filter -> align -> report, resumable"),
    ("demo", "metfaces_build.app.demo", "the whole pipeline on the built-in Met API emulator"),
    ("report", "metfaces_build.app.commands.report", "the report: counts, reasons, contact sheets"),
    ("review", "metfaces_build.app.commands.review", "a review page: every face, filter, sort, keep/reject"),
    ("status", "metfaces_build.app.commands.status", "per stage: current, stale (and why) or missing"),
    ("export", "metfaces_build.app.commands.export", "StyleGAN2-ADA / StyleGAN3 dataset zip or folder"),
    ("verify", "metfaces_build.app.commands.verify", "check crops against metfaces.json image_md5"),
    ("emulator", "metfaces_build.app.commands.emulator", "serve the sample Met API on loopback (tests, demo)"),
]

DESCRIPTION = """\
Re-derive the MetFaces dataset (aligned 1024x1024 faces from artworks at the
Metropolitan Museum of Art) from the Met Collection API, reproducibly, and
extend it to the rest of the collection: fetch -> detect -> filter -> align,
plus compare, report and export."""

EPILOG = """\
exit status: 0 all items ok; 1 some items failed (each recorded with its
reason); 2 usage error (bad flag, missing or malformed input file).

Every stage reads and writes plain files in a work directory, skips work already
done (--force redoes it), writes atomically, and prints a summary. Run
`metfaces-build COMMAND --help` for a command's options.

examples:
  metfaces-build demo --work ./demo-work    # all of it, on a built-in emulator
  metfaces-build run --work W --departments "European Paintings" --limit 200
  metfaces-build align --work W             # W/filtered.json -> W/images/
  metfaces-build verify --json metfaces.json --images W/images --reference ref

The manuals of all commands: docs/commands.md.
"""


def version_line() -> str:
    """`metfaces-build 0.2.0 (Python 3.11.7, /path/to/metfaces_build)`: which copy runs."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"metfaces-build {__version__} (Python {platform.python_version()}, {here})"


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() owns the exit code,
    and never expands a flag's prefix (`--work` must not become `--workers`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D401
        raise UsageError(f"{self.prog}: {message}")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, just that subcommand's flags are configured (the
    others keep their one-line help), so a run imports one command module, not eleven."""
    parser = _Parser(prog="metfaces-build", description=DESCRIPTION,
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname, summary in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=summary)
            continue
        mod = importlib.import_module(modname)
        description, epilog = command_help(name, mod)
        p = sub.add_parser(name, help=summary, description=description, epilog=epilog,
                           usage="%(prog)s [options]", formatter_class=HelpFormatter)
        mod.configure_parser(p)
        p.set_defaults(_run=mod.main, _parser=p)
    return parser


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set:
    """The option names (dests) the user typed: what changes the work directory's recipe
    (a flag left out takes the recipe's value, not argparse's default)."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    return {a.dest for a in parser._actions
            if a.option_strings and any(s in typed for s in a.option_strings)}


def unknown_command(word: str, names: Sequence[str]) -> str:
    """The message for a mistyped subcommand, with the closest ones (difflib)."""
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"metfaces-build: unknown command {word!r}{hint} "
            f"(commands: {', '.join(names)}; see metfaces-build --help)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # the command is the first word not starting with '-' (no top-level flag takes
        # a value); "" (none, or not a command) configures no subcommand at all
        first = next((a for a in argv if not a.startswith("-")), "")
        names = [c[0] for c in COMMANDS]
        if first and first not in names:
            raise UsageError(unknown_command(first, names))
        parser = build_parser(first)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0)
        if not getattr(args, "_run", None):
            parser.print_help(sys.stderr)
            return 2
        args._explicit = explicit_dests(args._parser, argv)
        return int(args._run(args))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def main_entry() -> None:
    sys.exit(main())
