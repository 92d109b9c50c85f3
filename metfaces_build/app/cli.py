"""The `metfaces-build` command: one subcommand per pipeline stage.

Each stage module provides `configure_parser(parser)` and `run(args) -> int`; this file
only wires them up, maps user mistakes to exit 2 without a traceback, and documents the
exit codes. Stage modules keep heavy imports (dlib, scipy, requests) inside functions, so
`--help` is instant.
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
    ("fetch", "metfaces_build.stages.fetch", "download Met object records and original images"),
    ("detect", "metfaces_build.stages.detect", "find faces + 68 landmarks with dlib -> faces.json"),
    ("filter", "metfaces_build.stages.filter", "prune faces with explicit, recorded heuristics"),
    ("align", "metfaces_build.stages.align", "crop aligned 1024x1024 faces (exact MetFaces arithmetic)"),
    ("compare", "metfaces_build.stages.compare", "regenerated vs stored landmarks, or two crop folders"),
    ("run", "metfaces_build.app.run", "fetch -> detect -> filter -> align -> report, resumable"),
    ("demo", "metfaces_build.app.demo", "the whole pipeline on the built-in Met API emulator"),
    ("review", "metfaces_build.stages.review", "a review page: every face, filter, sort, keep/reject"),
    ("export", "metfaces_build.stages.export", "StyleGAN2-ADA / StyleGAN3 dataset zip or folder"),
    ("verify", "metfaces_build.stages.verify", "check crops against metfaces.json image_md5"),
    ("emulator", "metfaces_build.met.emulator", "serve the sample Met API on loopback (tests, demo)"),
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metfaces-build", description=DESCRIPTION,
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"metfaces-build {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname, summary in COMMANDS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            mod = None
        if mod is None or not hasattr(mod, "configure_parser"):
            p = sub.add_parser(name, help=f"{summary} (not built yet)", description=f"{summary}\n\n"
                               "This stage is not built yet in this version.")
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(_run=_not_built(name))
            continue
        doc = (mod.__doc__ or summary).strip()
        p = sub.add_parser(name, help=summary, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.configure_parser(p)
        p.set_defaults(_run=mod.run)
    return parser


def _not_built(name):
    def run(args) -> int:
        print(f"metfaces-build {name}: this stage is not built yet in version {__version__}",
              file=sys.stderr)
        return 2
    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0)
        if not getattr(args, "_run", None):
            parser.print_help(sys.stderr)
            return 2
        return int(args._run(args))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


def main_entry() -> None:
    sys.exit(main())


# ---- shared flag helpers for stage modules -------------------------------------------

def add_work_dir(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--work", metavar="DIR", default=None if required else "metfaces-work",
                   required=required,
                   help="work directory holding every stage's files (default: %(default)s)")


def add_common(p: argparse.ArgumentParser, workers: bool = True, force: bool = True) -> None:
    """--workers, --force, --quiet: the flags every stage takes."""
    from ..infra.executors import default_workers
    if workers:
        p.add_argument("--workers", type=positive_int, default=default_workers(), metavar="N",
                       help="parallel worker processes (default: cores = %(default)s); output "
                            "is identical for any N")
    if force:
        p.add_argument("--force", action="store_true",
                       help="redo work whose output already exists and is valid")
    p.add_argument("--quiet", action="store_true", help="no progress bar, summary only")


def add_executor(p: argparse.ArgumentParser) -> None:
    """--executor / --scheduler: where a stage's per-item work runs (detect, align)."""
    g = p.add_argument_group("distributed execution (optional extra: "
                             "pip install 'metfaces-build[dask]')")
    g.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local: a process pool of --workers on this machine (default); dask: "
                        "the workers of a Dask cluster (--workers is then ignored). Output is "
                        "identical either way")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: "
                        "$DASK_SCHEDULER_ADDRESS); workers must see the same files at the "
                        "same absolute paths (docs/dask.md)")


def _int_at_least(lo: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected a number >= {lo}, got {v}")
        return v
    return parse


positive_int = _int_at_least(1)
nonneg_int = _int_at_least(0)


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s}")
    return v
