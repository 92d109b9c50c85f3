"""`metfaces-build fetch`: argparse -> FetchOptions -> stages.fetch.fetch -> exit code."""
from __future__ import annotations

import argparse
import datetime

from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import fetch as stage
from ...stages.recipe import fetch_work
from ..flags import add_compact, add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Download Met object records and original images (checked, then kept) into the work
directory, chosen by department, search, ids, date or the Met's catalogue file; a
rerun skips what is done and retries what failed. Writes objects.jsonl."""

EXAMPLES = """\
metfaces-build fetch --departments "European Paintings,11" --limit 500
metfaces-build fetch --search portrait --has-images --medium Paintings
metfaces-build fetch --work W --since 2024-01-01 --dry-run"""


# rarely changed: listed with their defaults, their help in docs/commands.md
TUNING = ("retries", "timeout", "backoff_max", "backoff_base", "cooldown", "max_outage")


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p)
    add_options(p, stage.FetchOptions, skip=TUNING, parse={"since": parse_date})
    add_compact(p, "network tuning (flag and default; seconds)", stage.FetchOptions, TUNING)


def parse_date(s: str) -> str:
    try:
        datetime.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {s!r}") from None
    return s


def options(args) -> "stage.FetchOptions":
    """FetchOptions from parsed fetch flags (--allow-host collected into a tuple)."""
    return options_from_args(stage.FetchOptions, args, allow_host=tuple(args.allow_host or ()))


def main(args) -> int:
    # `_explicit`: the flags typed on the command line (absent without the CLI's parser)
    return print_summary(fetch_work(Work(args.work), options(args),
                                    getattr(args, "_explicit", None)))
