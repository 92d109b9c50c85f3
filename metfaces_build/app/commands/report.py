"""`metfaces-build report`: argparse -> ReportOptions -> stages.report.report -> exit code."""
from __future__ import annotations

from ...infra.stage import default_of, options_from_args
from ..flags import add_work_dir, positive_int, print_summary

from ...stages import report as stage

DESCRIPTION = """\
Write the work directory's report: what was fetched, detected, kept and rejected (with
the reasons and contact sheets of both), how regenerated landmarks compare, and the crops
made. The report is left alone when nothing it is made from has changed since it was
written (--force writes it again); `run` writes it too.

Output: DIR/report/report.md, report.html, stats.json and the contact sheets (PNG).

examples:
  metfaces-build report --work ./metfaces-work
  metfaces-build report --work ./metfaces-work --out-dir /tmp/report --max-tiles 96
"""


def configure_parser(p) -> None:
    R = stage.ReportOptions
    add_work_dir(p)
    p.add_argument("--source-images", metavar="DIR", default=None,
                   help="folder that source_path entries are relative to (default: --work)")
    p.add_argument("--out-dir", metavar="DIR", default=None,
                   help="where to write (default: DIR/report)")
    p.add_argument("--max-tiles", type=positive_int, default=default_of(R, "max_tiles"),
                   metavar="N", help="faces per contact sheet (default: %(default)s)")
    p.add_argument("--title", default=default_of(R, "title"),
                   help="the report's title (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="write it again even when its inputs have not changed")


def main(args) -> int:
    return print_summary(stage.report(args.work, options_from_args(stage.ReportOptions, args)))
