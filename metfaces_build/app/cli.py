"""The `metfaces-build` command: one subcommand per pipeline stage.

Each subcommand has an adapter module (app/commands/*, app/run.py, app/demo.py) with
`configure_parser(parser)` and `main(args) -> int` (argparse -> options -> stage function
-> print -> exit code); this file only wires them up, maps user mistakes to exit 2 without
a traceback, and documents the exit codes. Stage modules keep heavy imports (dlib, scipy,
requests) inside functions, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .. import __version__
from ..core.errors import UsageError

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
Re-derive the MetFaces dataset (aligned 1024x1024 faces from artworks at the Metropolitan
Museum of Art) from the Met Collection API, reproducibly, and extend it to the rest of
the collection: fetch -> detect -> filter -> align, plus compare, report and export."""

EPILOG = """\
exit status: 0 all items ok; 1 some items failed (each recorded with its reason);
2 usage error (bad flag, missing or malformed input file).

Every stage reads and writes plain files in a work directory, skips work already done
(--force redoes it), writes atomically, and prints a summary. Run
`metfaces-build COMMAND --help` for a command's manual.

example (the whole pipeline on the built-in emulator):
  metfaces-build demo --work ./demo-work
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() owns the exit code."""

    def error(self, message):  # noqa: D401
        raise UsageError(f"{self.prog}: {message}")


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, just that subcommand's flags are configured (the
    others keep their one-line help), so a run imports one command module, not eleven."""
    parser = _Parser(prog="metfaces-build", description=DESCRIPTION,
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"metfaces-build {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname, summary in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=summary)
            continue
        mod = importlib.import_module(modname)
        doc = (getattr(mod, "DESCRIPTION", None) or mod.__doc__ or summary).strip()
        p = sub.add_parser(name, help=summary, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure_parser(p)
        p.set_defaults(_run=mod.main, _parser=p)
    return parser


def explicit_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set:
    """The option names (dests) the user typed: what changes the work directory's recipe
    (a flag left out takes the recipe's value, not argparse's default)."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    return {a.dest for a in parser._actions
            if a.option_strings and any(s in typed for s in a.option_strings)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # the command is the first word not starting with '-' (no top-level flag takes
        # a value); "" (none, or not a command) configures no subcommand at all
        first = next((a for a in argv if not a.startswith("-")), "")
        parser = build_parser(first if first in {c[0] for c in COMMANDS} else "")
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
