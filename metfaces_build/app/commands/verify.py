"""`metfaces-build verify`: argparse -> VerifyOptions -> stages.verify.verify -> exit code."""
from __future__ import annotations

from ...core.errors import UsageError
from ...infra.stage import options_from_args
from ..flags import add_common, print_summary

from ...stages import verify as stage

DESCRIPTION = stage.__doc__


def configure_parser(p) -> None:
    p.add_argument("--json", required=True, metavar="FILE",
                   help="metfaces.json-compatible face list with image_md5 per face")
    p.add_argument("--work", metavar="DIR", default=None,
                   help="a work directory: --images defaults to its images/")
    p.add_argument("--images", metavar="DIR", help="folder of crops to check (or --work)")
    p.add_argument("--reference", metavar="DIR",
                   help="folder of other crops of the same faces (same names) to compare "
                        "pixels with: PSNR and max difference")
    p.add_argument("--out", metavar="FILE", help="write every face's result here (JSON)")
    p.add_argument("--accept-same-pixels", action="store_true",
                   help="count same_pixels (md5 differs, pixels equal the reference's) as a "
                        "match for the exit status")
    p.add_argument("--skip-bad", action="store_true",
                   help="go on past malformed records (listed in the output) instead of exit 2")
    add_common(p, force=False)


def main(args) -> int:
    images = args.images
    if images is None and args.work is not None:
        from ...infra.workdir import Work
        images = str(Work(args.work).images_dir)
    if images is None:
        raise UsageError("verify needs --images DIR (or --work DIR: its images/)")
    return print_summary(stage.verify(options_from_args(stage.VerifyOptions, args, images=images)))
