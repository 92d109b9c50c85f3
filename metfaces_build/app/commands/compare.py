"""`metfaces-build compare`: argparse -> CompareOptions -> stages.compare.compare (plus the
report of a landmark comparison written to --out) -> exit code."""
from __future__ import annotations

import argparse

from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import compare as stage
from ...stages.report import ReportOptions, report
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Compare regenerated landmarks with stored ones (NVIDIA's metfaces.json): faces are
matched by eye-centre distance in inter-ocular units, and the report says how far
landmarks, boxes and crops moved. Or compare two folders of crops pixel by pixel."""

EXAMPLES = """\
metfaces-build compare --stored metfaces.json --work ./metfaces-work
metfaces-build compare --stored metfaces.json --regenerated f.json --out cmp
metfaces-build compare --crops nvidia/images ./metfaces-work/images"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p, default=None, help="work directory: its faces.json, written to DIR")
    add_options(p, stage.CompareOptions)


def compare_with_report(opts) -> "stage.CompareSummary":
    """compare, then (landmarks with an output folder) the report of that folder: what
    `metfaces-build compare` does. The report lives above the compare stage, so the two
    stage modules do not import each other."""
    summary = stage.compare(opts)
    if opts.out and not opts.crops:  # the report stage: stamped, so `status` knows it
        src = summary.source_images
        rep = report(opts.out, ReportOptions(source_images=str(src) if src else None))
        summary.outputs["report"] = rep.outputs["markdown"]
        summary.lines.append(f"report: {rep.outputs['markdown']}")
    return summary


def main(args) -> int:
    paths = {}
    if args.work is not None and not args.crops:
        w = Work(args.work)
        paths = {"regenerated": args.regenerated or str(w.faces_json),
                 "out": args.out or str(w.path),
                 "source_images": args.source_images or str(w.path)}
    opts = options_from_args(stage.CompareOptions, args,
                             crops=tuple(args.crops) if args.crops else None, **paths)
    return print_summary(compare_with_report(opts))
