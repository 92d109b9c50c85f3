"""`metfaces-build review`: argparse -> ReviewOptions -> stages.review.review -> exit code."""
from __future__ import annotations

from ...infra.stage import options_from_args
from ..flags import add_common, add_work_dir, print_summary

from ...stages import review as stage

DESCRIPTION = stage.__doc__


def configure_parser(p) -> None:
    add_work_dir(p)
    p.add_argument("--source-images", metavar="DIR", default=None,
                   help="folder that faces.json source_path entries are relative to "
                        "(default: --work)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where review.html and thumbs/ go (default: DIR/report)")
    add_common(p)


def main(args) -> int:
    return print_summary(stage.review(args.work, options_from_args(stage.ReviewOptions, args)))
