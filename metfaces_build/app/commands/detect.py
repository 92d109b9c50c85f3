"""`metfaces-build detect`: argparse -> DetectOptions -> stages.detect.detect -> exit code."""
from __future__ import annotations

from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import detect as stage
from ...stages.recipe import detect_work
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Find every face and its 68 landmarks with dlib in the fetched originals (each image
shrunk so its long side is at most --max-side) and write faces.json, one record per
face numbered by face_idx; a rerun detects only new or changed images."""

EXAMPLES = """\
metfaces-build detect --work ./metfaces-work
metfaces-build detect --work ./metfaces-work --detector cascade --workers 8
metfaces-build detect --images ./paintings --out faces.json"""


def configure_parser(p) -> None:
    add_work_dir(p, default=None, help="work directory (default: metfaces-work, "
                                       "unless --images)")
    add_options(p, stage.DetectOptions)


def main(args) -> int:
    opts = options_from_args(stage.DetectOptions, args)
    if args.images:  # a plain folder: no work directory, no recipe
        return print_summary(stage.detect(Work(args.work) if args.work else None, opts))
    return print_summary(detect_work(Work(args.work or "metfaces-work"), opts,
                                     getattr(args, "_explicit", None)))
