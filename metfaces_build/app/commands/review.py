"""`metfaces-build review`: argparse -> ReviewOptions -> stages.review.review -> exit code."""
from __future__ import annotations

from ...infra.stage import options_from_args
from ...stages import review as stage
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Write a review page (report/review.html, one file that opens offline): every face with
its thumbnail and measured values, to filter, sort and mark keep or reject; it saves
overrides.json, which `filter --overrides` (or `run --overrides`) applies."""

EXAMPLES = """\
metfaces-build review --work ./metfaces-work
metfaces-build filter --work W --overrides ~/Downloads/overrides.json"""


def configure_parser(p) -> None:
    add_work_dir(p)
    add_options(p, stage.ReviewOptions)


def main(args) -> int:
    return print_summary(stage.review(args.work, options_from_args(stage.ReviewOptions, args)))
