"""`metfaces-build filter`: argparse -> FilterOptions -> stages.filter.filter -> exit code."""
from __future__ import annotations

import argparse

from ...infra.stage import options_from_args
from ..flags import add_common, add_work_dir, nonneg_float, positive_int, print_summary

from ...stages import filter as stage

DESCRIPTION = stage.__doc__


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p)
    p.add_argument("--source-images", metavar="DIR", default=None,
                   help="folder that faces.json source_path entries are relative to (default: --work)")
    p.add_argument("--faces", metavar="JSON", default=None,
                   help="input face list (default: DIR/faces.json)")
    p.add_argument("--config", metavar="TOML", default=None, help="thresholds from a TOML file")
    p.add_argument("--explain", metavar="OBJ_ID", default=None,
                   help="print every test for this object's faces; writes nothing")
    p.add_argument("--skip-bad", action="store_true",
                   help="record malformed face records as rejected (bad_record) instead of stopping")
    g = p.add_argument_group("thresholds (defaults in the description above)")
    g.add_argument("--min-size", type=nonneg_float, metavar="PX")
    g.add_argument("--min-score", action="append", metavar="DETECTOR=VALUE")
    g.add_argument("--max-roll", type=nonneg_float, metavar="DEG")
    g.add_argument("--min-mouth-drop", type=float, metavar="X")
    g.add_argument("--eye-jaw-min", type=nonneg_float, metavar="X")
    g.add_argument("--eye-jaw-max", type=nonneg_float, metavar="X")
    g.add_argument("--max-yaw", type=nonneg_float, metavar="X")
    g.add_argument("--max-landmark-outside", type=nonneg_float, metavar="X")
    g.add_argument("--max-padding", type=nonneg_float, metavar="SHARE")
    g.add_argument("--max-overlap", type=nonneg_float, metavar="IOU")
    g.add_argument("--max-hash-distance", type=int, metavar="BITS", help="negative disables")
    g.add_argument("--min-sharpness", type=nonneg_float, metavar="VAR")
    g.add_argument("--grayscale-chroma", type=nonneg_float, metavar="X")
    g.add_argument("--reject-grayscale", action="store_true")
    g.add_argument("--crop-size", type=positive_int, metavar="PX")
    g.add_argument("--no-crop-tests", action="store_true",
                   help="skip sharpness, grayscale and near-duplicates (no image decoding)")
    p.add_argument("--overrides", metavar="JSON", default=None,
                   help="a person's decisions, {\"faces\": {\"436015-00\": \"keep\", ...}} (the "
                        "review page saves it): copied to DIR/overrides.json, replacing the "
                        "decisions there, and applied after every test; DIR/overrides.json is "
                        "applied on every later run too (delete it to drop them)")
    add_common(p)


def main(args) -> int:
    opts = options_from_args(stage.FilterOptions, args,
                             min_score=tuple(args.min_score) if args.min_score else None)
    if opts.explain is not None:  # prints one object's tests, writes nothing
        return print_summary(stage.filter(args.work, opts))
    from ...infra.workdir import Work
    from ...stages.recipe import filter_work
    return print_summary(filter_work(Work(args.work), opts, getattr(args, "_explicit", None)))
