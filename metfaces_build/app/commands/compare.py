"""`metfaces-build compare`: argparse -> CompareOptions -> stages.compare.compare (plus the
report of a landmark comparison written to --out) -> exit code."""
from __future__ import annotations

import argparse

from ...infra.stage import default_of, options_from_args
from ..flags import add_common, nonneg_float, print_summary

from ...stages import compare as stage

DESCRIPTION = stage.__doc__


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", metavar="DIR", default=None,
                   help="a work directory: --regenerated defaults to its faces.json, --out "
                        "and --source-images to DIR itself")
    p.add_argument("--stored", metavar="JSON", help="reference face list, e.g. NVIDIA's metfaces.json")
    p.add_argument("--regenerated", metavar="JSON", help="our face list, e.g. WORK/faces.json")
    p.add_argument("--crops", nargs=2, metavar=("A", "B"), help="compare two folders of PNG crops")
    p.add_argument("--out", metavar="DIR", help="write compare.json, per-face JSONL and report/ here")
    p.add_argument("--gate", type=nonneg_float, default=default_of(stage.CompareOptions, "gate"), metavar="X",
                   help="max eye-centre distance of a match, in stored inter-ocular distances "
                        "(default: %(default)s)")
    p.add_argument("--source-images", metavar="DIR",
                   help="where source_path resolves for the mismatch sheet "
                        "(default: the folder of --regenerated)")
    p.add_argument("--skip-bad", action="store_true",
                   help="ignore malformed records (counted) instead of stopping")
    add_common(p, force=False)


def compare_with_report(opts) -> "stage.CompareSummary":
    """compare, then (landmarks with an output folder) the report of that folder: what
    `metfaces-build compare` does. The report lives above the compare stage, so the two
    stage modules do not import each other."""
    from ...stages.report import ReportOptions, report
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
        from ...infra.workdir import Work
        w = Work(args.work)
        paths = {"regenerated": args.regenerated or str(w.faces_json),
                 "out": args.out or str(w.path),
                 "source_images": args.source_images or str(w.path)}
    opts = options_from_args(stage.CompareOptions, args,
                             crops=tuple(args.crops) if args.crops else None, **paths)
    return print_summary(compare_with_report(opts))
