"""The whole pipeline on a built-in Met API emulator: no network, no data to download.

Starts the emulator in this process on a free loopback port, with a few faults switched
on (429 with Retry-After, 5xx, connection resets, HTML served as 200) so the retries
are exercised, and then:

  1. writes the emulator's ground truth (the known 68 landmarks of every face it
     painted) to DIR/truth.json;
  2. runs `metfaces-build run` on its sample collection (35 objects over 5
     departments): fetch -> detect -> filter -> align -> report;
  3. runs `metfaces-build compare` of the detected landmarks (DIR/faces.json) against
     the truth, which adds a "regenerated vs stored landmarks" section to the report;
  4. prints a headline and where the report is: DIR/report/report.md (and a
     self-contained report.html), and the review page DIR/report/review.html.

The first start builds the sample images (~30 s, cached in $METFACES_EMULATOR_CACHE or
~/.cache/metfaces-build); after that the demo takes well under a minute on 2 cores.
Rerunning it resumes in the same work directory; --force redoes everything.

The sample collection contains, on purpose, objects without an image, objects that are
not public domain and one 300-Mpx image that fetch refuses (too_large). Those outcomes
are expected: they are printed as such and do not make the demo fail. Any other failure
(a download that ran out of retries, an unreadable image, a crop that failed) is a real
error: it is printed and the exit status is 1.

exit status: 0 the pipeline ran, produced crops and the report, and every failed item
was one the sample collection contains on purpose; 1 anything else failed (listed);
2 usage error.

examples:
  metfaces-build demo
  metfaces-build demo --work /tmp/metfaces-demo --workers 2
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from ..core.errors import UsageError
from ..core.status import ALIGN_RETIRED, DETECT_DONE
from ..infra.files import atomic_write_json, read_json_or_none
from ..infra.workdir import Work
from ..met.emulator import start_emulator
from ..stages.compare import CompareOptions
from ..stages.review import ReviewOptions
from ..stages.review import review as write_review
from .commands.compare import compare_with_report
from .flags import add_common, add_work_dir, nonneg_float, print_summary
from .run import RunOptions, print_run, run

DEPARTMENTS = "11,9,15,1,19"  # every department of the sample collection
FAULTS = "429,5xx,reset,html200"
# fetch status each kind of sample object is meant to end with
EXPECTED_FETCH = {"faces": "ok", "noface": "ok", "no_image": "no_image",
                  "not_pd": "not_public_domain", "huge": "too_large"}
# loopback: no need for the real API's pacing; faults are retried within milliseconds
FETCH_OPTIONS = {"rate": 100.0, "retries": 8, "timeout": 20.0, "backoff_base": 0.05,
                 "backoff_max": 0.5, "cooldown": 1.0}


MANUAL = __doc__  # the long manual (docs/commands.md)

ABOUT = """\
Run the whole pipeline (fetch, detect, filter, align, report, review page) on the
built-in Met API emulator, with a few network faults switched on: no network, nothing
to download. Then compare the detected landmarks with the emulator's ground truth."""

EXAMPLES = """\
metfaces-build demo
metfaces-build demo --work /tmp/metfaces-demo --workers 2"""


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_work_dir(p, default="metfaces-demo")
    p.add_argument("--fault-rate", type=nonneg_float, default=0.1, metavar="P",
                   help="share of requests that get a fault (default: %(default)s)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="cache of the sample images (default: ~/.cache/metfaces-build)")
    add_common(p)


def main(args) -> int:
    if args.fault_rate > 1:
        raise UsageError(f"--fault-rate must be within 0..1, got {args.fault_rate}")
    t0 = time.monotonic()
    work = Path(args.work)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use work directory {work}: {e}") from None
    try:  # the first start's ~30 s build is announced even with --quiet
        emu = start_emulator(faults=FAULTS, fault_rate=args.fault_rate, seed=1, retry_after=0.1,
                             cache_dir=args.cache_dir,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    except RuntimeError as e:  # e.g. the sample photos' packages are missing
        raise UsageError(str(e)) from None
    with emu:
        print(f"Met API emulator: {emu.api_root} (faults {FAULTS} at rate {args.fault_rate})",
              flush=True)
        layout = Work(work)
        atomic_write_json(layout.truth_json, emu.truth())
        # min_face=0: every painted face is compared with the truth, even small ones
        opts = RunOptions(api=emu.api_root, departments=DEPARTMENTS, workers=args.workers,
                          min_face=0, no_review=True,  # review: written after compare
                          force=args.force, quiet=args.quiet, **FETCH_OPTIONS)
        summary = run(layout, opts, echo=print_summary)
        # the sample collection fails some items on purpose (assess() below tells expected
        # from unexpected, and only the latter make the demo exit 1): say so here
        summary.lines = [EXPECTED_FAILURES_NOTE if line.startswith("some items failed in ")
                         else line for line in summary.lines]
        if print_run(summary) == 2:
            return 2
        try:
            compare_rc = print_summary(compare_with_report(CompareOptions(
                stored=str(layout.truth_json), regenerated=str(layout.faces_json),
                out=str(work), workers=args.workers, quiet=args.quiet)))
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            compare_rc = 2
        review = None
        if layout.filtered_json.is_file():  # again, now with compare's landmarks
            review = write_review(layout, ReviewOptions(workers=args.workers, quiet=True)).page
        stats = emu.stats()
        kinds = {o.id: o.kind for o in emu.collection.objects}
    outcome = assess(work, kinds)
    if compare_rc != 0:
        outcome.errors.append(f"compare exited {compare_rc}")
    print_headline(work, outcome, stats, time.monotonic() - t0)
    if review is not None:
        print(f"review page: {review} (open it in a browser: every face, keep/reject overrides)")
    return 1 if outcome.errors else 0


EXPECTED_FAILURES_NOTE = (
    "some items failed on purpose (the sample collection holds a refused 300-Mpx image, "
    "objects without an image, ...): the check at the end says whether any failure was "
    "unexpected; only those make the demo exit 1")


class Outcome:
    """What the demo produced, split into expected outcomes and real errors."""

    def __init__(self):
        self.expected: Counter = Counter()
        self.errors: list = []
        self.numbers: dict = {}


def assess(work: Path, kinds: dict) -> Outcome:
    """Check every stage's files against what the sample collection should give."""
    layout = Work(work)
    out = Outcome()
    objects = layout.objects()
    for oid, kind in sorted(kinds.items()):
        want, row = EXPECTED_FETCH[kind], objects.get(oid)
        if row is None:
            out.errors.append(f"fetch: object {oid} was never fetched")
        elif row.get("status") != want:
            out.errors.append(f"fetch: object {oid}: {row.get('status')} ({row.get('reason')}), "
                              f"expected {want}")
        elif want != "ok":
            out.expected[want] += 1
    outcomes = layout.outcomes()
    out.numbers["objects"] = len(kinds)
    out.numbers["fetched"] = outcomes.get("fetch", {}).get("ok", 0)

    images = list(layout.detections().values())
    for r in images:
        if r.get("status") not in DETECT_DONE:
            out.errors.append(f"detect: {r.get('source_path')}: {r.get('status')} "
                              f"({r.get('reason')})")
    out.numbers["images"] = len(images)
    out.numbers["no_face"] = outcomes.get("detect", {}).get("no_face", 0)
    out.numbers["faces"] = layout.face_count()

    fs = layout.filter_summary() or {}
    for path, why in (fs.get("image_problems") or {}).items():
        out.errors.append(f"filter: {path}: {why}")
    out.numbers["kept"], out.numbers["rejected"] = fs.get("kept", 0), fs.get("rejected", 0)
    out.numbers["reasons"] = fs.get("reasons") or {}

    for e in layout.aligned() or []:
        if e.get("status") not in ("ok",) + ALIGN_RETIRED:  # retired crops are no error
            out.errors.append(f"align: {e.get('output')}: {e.get('status')} ({e.get('reason')})")
    out.numbers["aligned"] = outcomes.get("align", {}).get("ok", 0)
    if not out.numbers["aligned"]:
        out.errors.append("align: no crops were produced")
    if not (layout.report_dir / "report.md").exists():
        out.errors.append("report: report/report.md was not written")
    out.numbers["compare"] = read_json_or_none(layout.compare_json) or {}
    return out


def print_headline(work: Path, o: Outcome, stats: dict, seconds: float) -> None:
    n = o.numbers
    faults = stats.get("faults") or {}
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(n["reasons"].items(),
                                                       key=lambda kv: -kv[1]))
    cmp_ = n["compare"]
    print(f"\ndemo finished in {seconds:.0f} s")
    injected = sum(faults.values())
    print(f"  emulator   {stats.get('requests', 0)} requests, "
          + (f"{injected} faults injected ({', '.join(f'{v} {k}' for k, v in sorted(faults.items()))})"
             + ("" if any(e.startswith("fetch") for e in o.errors) else ", all retried")
             if injected else "no faults injected"))
    print(f"  fetched    {n['fetched']} originals of {n['objects']} objects")
    if o.expected:
        print(f"  expected   {', '.join(f'{v} {k}' for k, v in sorted(o.expected.items()))}: "
              "in the sample collection on purpose (too_large: a 300-Mpx image)")
    print(f"  detected   {n['faces']} faces in {n['images']} images"
          + (f" ({n['no_face']} without a face)" if n["no_face"] else ""))
    print(f"  kept       {n['kept']} faces; rejected {n['rejected']}"
          + (f" ({reasons})" if reasons else ""))
    print(f"  aligned    {n['aligned']} crops -> {Work(work).images_dir}")
    if cmp_:
        print(f"  vs truth   {cmp_.get('matched')} matched, {cmp_.get('missed')} missed, "
              f"{cmp_.get('extra')} extra; median NME {cmp_.get('median_nme') or 0:.3f}, "
              f"within 0.05: {100 * (cmp_.get('within_0.05') or 0):.0f}%")
    print(f"report: {Work(work).report_dir / 'report.md'} (one-file version: report.html)")
    if o.errors:
        print(f"\n{len(o.errors)} unexpected failure(s):", file=sys.stderr)
        for e in o.errors[:20]:
            print(f"  {e}", file=sys.stderr)
        if len(o.errors) > 20:
            print(f"  ... and {len(o.errors) - 20} more", file=sys.stderr)


