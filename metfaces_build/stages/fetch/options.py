"""fetch's options (its CLI flags and API keywords), their own checks (no network), its
summary, and the client configuration the options make."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Optional

from ...core.errors import UsageError
from ...infra.stage import StageSummary, convert, opt
from ...met.client import ClientConfig, image_url_problem
from .dry_run import DryRunPlan


_NET = ClientConfig  # the network defaults live with the client (met/client.py)


NETWORK = "network"


FILTERS = "filters (catalogue: with --from-csv; search: with --search)"


WHAT = "what to fetch (combine freely)"


@dataclass(frozen=True)
class FetchOptions:
    """Options of the fetch stage (names and defaults of its CLI flags). Say what to
    fetch with at least one of departments, search, ids, ids_file, since, from_json."""
    departments: Optional[str] = opt(None, "department ids or names, e.g. 11,9",
                                     metavar="LIST", group=WHAT, recipe=True)
    search: Optional[str] = opt(None, "search term (API /search)", metavar="TEXT", group=WHAT,
                                recipe=True)
    ids: Optional[str] = opt(None, "object ids, comma-separated", metavar="LIST", group=WHAT,
                             recipe=True)
    ids_file: Optional[str] = opt(None, "object ids, one per line", metavar="FILE", group=WHAT,
                                  recipe=True)
    since: Optional[str] = opt(None, "refetch objects changed since this date",
                               metavar="YYYY-MM-DD", group=WHAT)
    from_json: Optional[str] = opt(None, "rebuild the images of NVIDIA's metfaces.json",
                                   metavar="FILE", group=WHAT, recipe=True)
    from_csv: Optional[str] = opt(None, "rows of the Met's MetObjects.csv", metavar="FILE",
                                  group=WHAT, recipe=True)
    limit: Optional[int] = opt(None, "only the first N ids", metavar="N", limits=">= 1",
                               group=WHAT, recipe=True)
    public_domain: bool = opt(False, "catalogue: 'Is Public Domain' is True", group=FILTERS,
                              recipe=True)
    classification: Optional[str] = opt(None, "catalogue: e.g. Paintings (and sub-classes)",
                                        metavar="A|B", group=FILTERS, recipe=True)
    object_name: Optional[str] = opt(None, "catalogue: exact Object Name", metavar="A|B",
                                     group=FILTERS, recipe=True)
    has_artist: bool = opt(False, "catalogue: the artist is named", group=FILTERS, recipe=True)
    has_images: bool = opt(False, "search: hasImages=true", group=FILTERS, recipe=True)
    highlight: bool = opt(False, "search: isHighlight=true", group=FILTERS, recipe=True)
    on_view: bool = opt(False, "search: isOnView=true", group=FILTERS, recipe=True)
    medium: Optional[str] = opt(None, "search: medium, e.g. Paintings|Drawings", metavar="A|B",
                                group=FILTERS, recipe=True)
    geo: Optional[str] = opt(None, "search: geoLocation, e.g. France|Paris", metavar="A|B",
                             group=FILTERS, recipe=True)
    date_begin: Optional[int] = opt(None, "objects dated from YEAR (with --date-end)",
                                    metavar="YEAR", group=FILTERS, recipe=True)
    date_end: Optional[int] = opt(None, "objects dated up to YEAR", metavar="YEAR",
                                  group=FILTERS, recipe=True)
    search_in: Optional[str] = opt(None, "search: match in title, tags or artist",
                                   choices=("title", "tags", "artist"), metavar="WHERE", group=FILTERS,
                                   recipe=True)
    api: str = opt(_NET.api_root, "API root (or the emulator's)", metavar="URL",
                   shown="the Met's, collectionapi.metmuseum.org",
                   group=NETWORK, recipe=True)
    image: str = opt("original", "original, or small (~800 px)",
                     choices=("original", "small"), group=NETWORK, recipe=True)
    rate: Optional[float] = opt(_NET.rate, "ceiling, requests/s per host",
                                metavar="R", limits="> 0", shown="9", group=NETWORK,
                                recipe=True)
    retries: int = opt(_NET.retries, "retries per request", metavar="N", group=NETWORK,
                       recipe=True)
    timeout: float = opt(_NET.timeout, "longest wait for the next byte, s", metavar="S",
                         limits="> 0", group=NETWORK, recipe=True)
    backoff_max: float = opt(_NET.backoff_max, "cap on one backoff, s", metavar="S",
                             limits="> 0", group=NETWORK, recipe=True)
    backoff_base: float = opt(_NET.backoff_base, "first backoff (doubled per try), s",
                              metavar="S", limits="> 0", group=NETWORK, recipe=True)
    cooldown: float = opt(_NET.cooldown, "pause of all threads after a block, s",
                          metavar="S", limits=">= 0", group=NETWORK, recipe=True)
    max_outage: float = opt(_NET.max_outage, "stop (resumable) after S without success",
                            metavar="S", limits="> 0", group=NETWORK, recipe=True)
    allow_host: tuple = opt((), "another image host (repeatable)", metavar="HOST",
                            repeat=True, group=NETWORK, recipe=True)
    max_pixels: int = opt(_NET.max_pixels, "refuse larger images", metavar="N",
                          limits=">= 1", recipe=True)
    workers: int = opt(4, "download threads sharing one rate", metavar="N", limits=">= 1")
    recheck: bool = opt(False, "also retry settled non-ok objects")
    dry_run: bool = opt(False, "count what would be fetched; fetch nothing")
    force: bool = opt(False, "fetch everything again")
    quiet: bool = opt(False, "no progress bar, summary only")


@dataclass
class FetchSummary(StageSummary):
    """fetch's outcome: `counts` by status of the objects fetched now; `already` those a
    rerun left alone; `outage` why it stopped early, if it did."""
    already: dict = field(default_factory=dict)
    outage: Optional[str] = None
    plan: Optional[DryRunPlan] = None  # set by a dry run (nothing was fetched)
    # {host: {rate, block_rate, blocks, lost}}: the pace learned per host (met/pacing.py)
    pace: dict = field(default_factory=dict)
    # objects fetched again because the --since listing named them: {update kind: [ids]}
    # (kinds: workdir.UPDATE_KINDS; new objects count here too)
    updates: dict = field(default_factory=dict)


def client_config(opts: FetchOptions) -> ClientConfig:
    """The Met client's config: the same-named options, and the three named otherwise."""
    return convert(ClientConfig, opts, api_root=opts.api, allowed_hosts=tuple(opts.allow_host),
                   pool_size=max(10, 2 * opts.workers))


def check_options(opts: FetchOptions) -> None:
    """The options' own checks, no network (stages/recipe.py calls it too): a UsageError
    for a source missing or combined with one it cannot go with."""
    if not (opts.departments or opts.search is not None or opts.ids or opts.ids_file or opts.since
            or opts.from_json or opts.from_csv):
        raise UsageError("fetch: say what to fetch: --departments, --search, --ids, --ids-file, "
                         "--since, --from-csv or --from-json (see --help)")
    if opts.from_json and (opts.departments or opts.search is not None or opts.ids or opts.ids_file
                           or opts.since or opts.from_csv):
        raise UsageError("fetch: --from-json cannot be combined with other sources")
    if opts.from_csv and (opts.search is not None or opts.since):
        raise UsageError("fetch: --from-csv cannot be combined with --search or --since "
                         "(--departments and --date-begin/--date-end filter the file)")
    catalogue_only = [f for f, on in (("--public-domain", opts.public_domain),
                                      ("--has-artist", opts.has_artist),
                                      ("--classification", opts.classification),
                                      ("--object-name", opts.object_name)) if on]
    if catalogue_only and not opts.from_csv:
        raise UsageError(f"fetch: {', '.join(catalogue_only)} filter a catalogue: add --from-csv FILE")
    if not opts.from_csv and (opts.date_begin is None) != (opts.date_end is None):
        raise UsageError("fetch: --date-begin and --date-end go together")
    if opts.retries < 0:
        raise UsageError("fetch: --retries must be >= 0")
    if opts.since is not None:
        try:
            datetime.date.fromisoformat(opts.since)
        except (TypeError, ValueError):
            raise UsageError(f"fetch: --since: expected a date YYYY-MM-DD, got {opts.since!r}") from None
    if image_url_problem(opts.api, opts.api) is not None:
        raise UsageError(f"fetch: --api must be an http(s) URL, got {opts.api!r}")
