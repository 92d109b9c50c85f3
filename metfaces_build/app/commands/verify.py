"""`metfaces-build verify`: argparse -> VerifyOptions -> stages.verify.verify -> exit code."""
from __future__ import annotations

from ...core.errors import UsageError
from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import verify as stage
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Check crops against the image_md5 of a metfaces.json-compatible list: each face is a
match, same_pixels (the PNG's bytes differ, as another Pillow or zlib writes them, but
its pixels equal the reference's), mismatch or missing; with --reference, the PSNR and
largest pixel difference."""

EXAMPLES = """\
metfaces-build verify --json metfaces.json --work ./metfaces-work
metfaces-build verify --json metfaces.json --images out --reference ref"""


def configure_parser(p) -> None:
    add_options(p, stage.VerifyOptions, required=("json",))
    add_work_dir(p, default=None, help="work directory: --images is its images/")


def main(args) -> int:
    images = args.images
    if images is None and args.work is not None:
        images = str(Work(args.work).images_dir)
    if images is None:
        raise UsageError("verify needs --images DIR (or --work DIR: its images/)")
    return print_summary(stage.verify(options_from_args(stage.VerifyOptions, args, images=images)))
