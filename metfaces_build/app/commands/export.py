"""`metfaces-build export`: argparse -> ExportOptions -> stages.export.export -> exit code."""
from __future__ import annotations

from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import export as stage
from ...stages import export_formats as formats
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__ + "\n" + formats.__doc__

ABOUT = """\
Pack the aligned crops as a training set: a StyleGAN2-ADA / StyleGAN3 dataset (zip or
folder, images sorted by name as 00000/img00000000.png, dataset.json with department
labels), WebDataset shards, a Hugging Face dataset folder or PNGs with metadata.jsonl;
each face keeps its provenance. Nothing is written when a crop fails its checks."""

EXAMPLES = """\
metfaces-build export --work ./metfaces-work --out metfaces.zip
metfaces-build export --work W --format webdataset --out tars --shard-size 1GB
metfaces-build export --images out --out faces --format hf --no-labels"""


def configure_parser(p) -> None:
    add_work_dir(p, default=None, help="work directory (default: metfaces-work)")
    add_options(p, stage.ExportOptions, required=("out",))


def main(args) -> int:
    work = Work(args.work) if args.work else None
    return print_summary(stage.export(work, options_from_args(stage.ExportOptions, args)))
