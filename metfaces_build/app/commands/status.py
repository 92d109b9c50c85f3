"""`metfaces-build status`: per stage, current / stale (and why) / missing."""
from __future__ import annotations

import sys

from ...stages.status import status, status_json
from ..flags import add_work_dir

MANUAL = """\
Say, per stage, whether the work directory's output is current, stale (and why: "1
crop(s) of faces no longer kept in filtered.json", "filter config changed", "2
original(s) re-shot since detect", "3 object(s) failed on the network, rerun to retry")
or missing, and the command that brings it current (usually `run --work DIR`, which
reads the recipe). Reads files only: no network, nothing written. What the Met added
since the last fetch is found by `run`, not here.

exit status: 0 everything current; 1 something stale or missing; 2 usage error.

--json prints one JSON object ({current, recipe, stages: [{stage, state, reasons, fix}]}):

  metfaces-build status --work ./metfaces-work --json | jq '.stages[] | select(.state != "current")'
"""

ABOUT = """\
Say, per stage, whether the work directory's output is current, stale (and why) or
missing, and the command that brings it current (usually `run --work DIR`). Reads
files only: no network, nothing written. Exit status 1 when anything is not current."""

EXAMPLES = """\
metfaces-build status --work ./metfaces-work
metfaces-build status --work ./metfaces-work --json"""


def configure_parser(p) -> None:
    add_work_dir(p)
    p.add_argument("--json", action="store_true", help="print one JSON object, for scripts")


def main(args) -> int:
    s = status(args.work)
    if args.json:
        print(status_json(s))
    else:
        for line in s.lines:
            print(line)
    for note in s.notes:
        print(note, file=sys.stderr)
    return s.exit_code
