"""`metfaces-build fetch`: argparse -> FetchOptions -> stages.fetch.fetch -> exit code."""
from __future__ import annotations

import argparse

from ...infra.stage import default_of, options_from_args
from ..flags import add_common, add_work_dir, nonneg_float, positive_int, print_summary

from ...stages import fetch as stage

DESCRIPTION = stage.__doc__


def configure_parser(p: argparse.ArgumentParser) -> None:
    F = stage.FetchOptions
    add_work_dir(p)
    src = p.add_argument_group("what to fetch (combine freely; ids are de-duplicated)")
    src.add_argument("--departments", metavar="LIST",
                     help="comma-separated department ids or names, case-insensitive (e.g. 11,9 or "
                          "'European Paintings')")
    src.add_argument("--search", metavar="TEXT", help="search term (API /search); see filters below")
    src.add_argument("--ids", metavar="LIST", help="comma-separated object ids")
    src.add_argument("--ids-file", metavar="FILE", help="object ids, one per line ('#' comments)")
    src.add_argument("--since", metavar="YYYY-MM-DD", type=_date,
                     help="objects whose metadata changed since this date; each is fetched "
                          "again even if done (record; image replaced only if its sha256 "
                          "changed; withdrawn objects lose their original)")
    src.add_argument("--from-json", metavar="FILE",
                     help="rebuild unprocessed/image-{id}.png at each record's source_path from its "
                          "source_url (NVIDIA's metfaces.json); mark md5 mismatches `changed`")
    src.add_argument("--from-csv", metavar="FILE",
                     help="the Met's catalogue MetObjects.csv (github.com/metmuseum/openaccess): "
                          "fetch only the rows the catalogue filters below keep; --departments, "
                          "--date-begin/--date-end and --limit then filter the file")
    src.add_argument("--limit", type=positive_int, metavar="N", help="only the first N ids")
    cat = p.add_argument_group("catalogue filters (with --from-csv; text matches ignore case)")
    cat.add_argument("--public-domain", action="store_true", help="'Is Public Domain' is True")
    cat.add_argument("--classification", metavar="A|B",
                     help="e.g. Paintings (also matches sub-classes such as Paintings-Canvas)")
    cat.add_argument("--object-name", metavar="A|B", help="exact Object Name, e.g. Painting|Drawing")
    cat.add_argument("--has-artist", action="store_true", help="'Artist Display Name' is not empty")
    flt = p.add_argument_group("search filters (with --search)")
    flt.add_argument("--has-images", action="store_true", help="hasImages=true")
    flt.add_argument("--highlight", action="store_true", help="isHighlight=true")
    flt.add_argument("--on-view", action="store_true", help="isOnView=true")
    flt.add_argument("--medium", metavar="A|B", help="e.g. Paintings|Drawings")
    flt.add_argument("--geo", metavar="A|B", help="geoLocation, e.g. France|Paris")
    flt.add_argument("--date-begin", type=int, metavar="YEAR",
                     help="with --date-end: objects dated within (--search or --from-csv; the "
                          "catalogue also takes either alone)")
    flt.add_argument("--date-end", type=int, metavar="YEAR")
    flt.add_argument("--search-in", choices=("title", "tags", "artist"), help="match the term only there")
    net = p.add_argument_group("network")
    net.add_argument("--api", default=default_of(F, "api"), metavar="URL",
                     help="API root (default: %(default)s); point it at `metfaces-build emulator`")
    net.add_argument("--image", choices=("original", "small"), default=default_of(F, "image"),
                     help="primaryImage (full size, default) or primaryImageSmall (~800 px)")
    net.add_argument("--rate", type=_pos_float, default=default_of(F, "rate"), metavar="R",
                     help="ceiling in requests per second per host, shared by all workers "
                          "(default: 9; the documented limit is 80, but bursts of ~30 get a block). "
                          "The pace adapts below it: it starts at what earlier runs learned for "
                          "the host, else at R when given, else at 1/s, and stays under the rate "
                          "at which a block came (learned paces: ~/.cache/metfaces-build/pace.json)")
    net.add_argument("--retries", type=int, default=default_of(F, "retries"), metavar="N",
                     help="retries per request on 403/429/5xx/resets/timeouts (default: %(default)s)")
    net.add_argument("--timeout", type=_pos_float, default=default_of(F, "timeout"), metavar="S",
                     help="longest wait for the next byte, in seconds; one request may take "
                          "10x this in all (default: %(default)s)")
    net.add_argument("--backoff-max", type=_pos_float, default=default_of(F, "backoff_max"), metavar="S",
                     help="cap on one exponential backoff, seconds (default: %(default)s)")
    net.add_argument("--backoff-base", type=_pos_float, default=default_of(F, "backoff_base"), metavar="S",
                     help="first backoff, doubled per attempt, with jitter (default: %(default)s)")
    net.add_argument("--cooldown", type=nonneg_float, default=default_of(F, "cooldown"), metavar="S",
                     help="shared pause of all workers after a 403 block page (default: %(default)s)")
    net.add_argument("--max-outage", type=_pos_float, default=default_of(F, "max_outage"), metavar="S",
                     help="end the run (resumable) after this long without a success (default: %(default)s)")
    net.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                     help="another host images may come from (repeatable)")
    p.add_argument("--max-pixels", type=positive_int, default=default_of(F, "max_pixels"), metavar="N",
                   help="refuse images with more pixels (status too_large; default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=default_of(F, "workers"), metavar="N",
                   help="download threads sharing one rate limit (default: %(default)s)")
    p.add_argument("--recheck", action="store_true",
                   help="also retry settled non-ok objects (no_image, not_found, too_large, ...)")
    p.add_argument("--dry-run", action="store_true",
                   help="print how many objects would be requested (by department and by status "
                        "in objects.jsonl) and the time at the learned pace; requests no object record or "
                        "image (--departments/--search/--since still make their listing requests)")
    add_common(p, workers=False)


def _pos_float(s: str) -> float:
    v = nonneg_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s}")
    return v


def _date(s: str) -> str:
    import datetime
    try:
        datetime.date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {s!r}") from None
    return s


def options(args, **overrides) -> "stage.FetchOptions":
    """FetchOptions from parsed fetch flags (run reuses it with its own --fetch-workers)."""
    overrides.setdefault("allow_host", tuple(args.allow_host or ()))
    return options_from_args(stage.FetchOptions, args, **overrides)


def main(args) -> int:
    from ...infra.workdir import Work
    from ...stages.recipe import fetch_work
    return print_summary(fetch_work(Work(args.work), options(args), _given(args)))


def _given(args):
    """The flags typed on the command line (None when called without the CLI's parser)."""
    return getattr(args, "_explicit", None)
