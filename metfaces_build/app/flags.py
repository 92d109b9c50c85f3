"""Flag helpers shared by the subcommands' argparse adapters (app/commands/*)."""
from __future__ import annotations

import argparse
from typing import Optional


def add_work_dir(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--work", metavar="DIR", default=None if required else "metfaces-work",
                   required=required,
                   help="work directory holding every stage's files (default: %(default)s)")


def add_common(p: argparse.ArgumentParser, workers: bool = True, force: bool = True) -> None:
    """--workers, --force, --quiet: the flags every stage takes."""
    from ..infra.stage import default_workers
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


def _int_at_least(lo: int, hi: Optional[int] = None):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if v < lo or (hi is not None and v > hi):
            bounds = f">= {lo}" if hi is None else f"from {lo} to {hi}"
            raise argparse.ArgumentTypeError(f"expected a number {bounds}, got {v}")
        return v
    return parse


positive_int = _int_at_least(1)
nonneg_int = _int_at_least(0)
zlib_level = _int_at_least(0, 9)


def nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s}")
    return v


def print_summary(summary) -> int:
    """Print a stage summary as the CLI does (lines on stdout, notes on stderr) and
    return its exit code."""
    import sys
    for line in summary.lines:
        print(line)
    for note in summary.notes:
        print(note, file=sys.stderr)
    return summary.exit_code
