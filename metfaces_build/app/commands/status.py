"""`metfaces-build status`: per stage, current / stale (and why) / missing."""
from __future__ import annotations

from ..flags import add_work_dir

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
    import sys

    from ...stages.status import status, status_json
    s = status(args.work)
    if args.json:
        print(status_json(s))
    else:
        for line in s.lines:
            print(line)
    for note in s.notes:
        print(note, file=sys.stderr)
    return s.exit_code
