"""`metfaces-build align`: argparse -> AlignOptions -> stages.align.align -> exit code."""
from __future__ import annotations

from ...core.errors import UsageError
from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import align as stage
from ...stages.recipe import align_work
from ..flags import add_options, add_work_dir, group_of, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Crop aligned square faces (1024x1024 by default) from the landmarks of filtered.json,
or of NVIDIA's metfaces.json, with the arithmetic of NVIDIA's metfaces.py, so the
crops are the MetFaces pixels; a rerun re-makes only crops whose record changed."""

EXAMPLES = """\
metfaces-build align --work ./metfaces-work
metfaces-build align --json metfaces.json --source-images src --output-dir out
metfaces-build align --work ./metfaces-work --random-shift 0.2 --retry-crops"""


def configure_parser(p) -> None:
    A = stage.AlignOptions
    add_work_dir(group_of(p, stage.IO), default=None,
                 help="work directory: its filtered.json into its images/")
    add_options(p, A)


def io_paths(args) -> dict:
    """json, source_images and output_dir from --work DIR (its layout, infra/workdir.py)
    and the explicit flags, which win; a UsageError when one is left unset."""
    paths = {"json": args.json, "source_images": args.source_images,
             "output_dir": args.output_dir}
    if args.work is not None:
        w = Work(args.work)
        defaults = {"json": w.filtered_json, "source_images": w.path, "output_dir": w.images_dir}
        paths = {k: v if v is not None else str(defaults[k]) for k, v in paths.items()}
    missing = [f"--{k.replace('_', '-')}" for k, v in paths.items() if v is None]
    if missing:
        raise UsageError("align needs --work DIR, or all of --json, --source-images and "
                         f"--output-dir (missing: {', '.join(missing)})")
    return paths


def main(args) -> int:
    opts = options_from_args(stage.AlignOptions, args, **io_paths(args))
    if args.work is not None and args.json is None and args.source_images is None \
            and args.output_dir is None:  # the work directory's own crops: its recipe too
        return print_summary(align_work(Work(args.work), opts, getattr(args, "_explicit", None)))
    return print_summary(stage.align(opts))
