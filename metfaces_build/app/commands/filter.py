"""`metfaces-build filter`: argparse -> FilterOptions -> stages.filter.filter -> exit code."""
from __future__ import annotations

import argparse

from ...infra.stage import options_from_args
from ...infra.workdir import Work
from ...stages import filter as stage
from ...stages.recipe import filter_work
from ..flags import add_options, add_work_dir, print_summary

# the long manual (docs/commands.md, tools/make_command_docs.py): the stage's own account
MANUAL = stage.__doc__

ABOUT = """\
Prune the detected faces with explicit tests (resolution, score, pose, landmarks outside
the image, padding, overlaps, near-duplicates, sharpness, grayscale), each recorded with
its measured value: kept faces go to filtered.json, the others to rejected.jsonl with
their reasons. A person's decisions (--overrides) are applied after every test."""

EXAMPLES = """\
metfaces-build filter --work ./work
metfaces-build filter --work ./work --min-size 512 --min-score cnn=0.8
metfaces-build filter --work ./work --explain 436838
metfaces-build filter --work ./work --overrides ~/Downloads/overrides.json"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p)
    add_options(p, stage.FilterOptions)


def main(args) -> int:
    opts = options_from_args(stage.FilterOptions, args,
                             min_score=tuple(args.min_score) if args.min_score else None)
    if opts.explain is not None:  # prints one object's tests, writes nothing
        return print_summary(stage.filter(args.work, opts))
    return print_summary(filter_work(Work(args.work), opts, getattr(args, "_explicit", None)))
