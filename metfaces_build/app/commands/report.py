"""`metfaces-build report`: argparse -> ReportOptions -> stages.report.report -> exit code."""
from __future__ import annotations

from ...infra.stage import options_from_args
from ...stages import report as stage
from ..flags import add_options, add_work_dir, print_summary

MANUAL = """\
Write the work directory's report: what was fetched, detected, kept and rejected (with
the reasons and contact sheets of both), how regenerated landmarks compare, and the crops
made. The report is left alone when nothing it is made from has changed since it was
written (--force writes it again); `run` writes it too.

Output: DIR/report/report.md, report.html, stats.json and the contact sheets (PNG).
"""

ABOUT = """\
Write the work directory's report (report.md, report.html, stats.json and contact
sheets): what was fetched, detected, kept and rejected (with the reasons), how
landmarks compare, and the crops made. Left alone when its inputs are unchanged."""

EXAMPLES = """\
metfaces-build report --work ./metfaces-work
metfaces-build report --work W --out-dir /tmp/report --max-tiles 96"""


def configure_parser(p) -> None:
    add_work_dir(p)
    add_options(p, stage.ReportOptions)


def main(args) -> int:
    return print_summary(stage.report(args.work, options_from_args(stage.ReportOptions, args)))
