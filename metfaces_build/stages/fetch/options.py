"""fetch's options (its CLI flags and API keywords), their own checks (no network), its
summary, and the client configuration the options make."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Optional

from ...core.errors import UsageError
from ...infra.images import DEFAULT_MAX_PIXELS
from ...infra.stage import StageSummary
from ...met.client import DEFAULT_API, ClientConfig, image_url_problem
from .dry_run import DryRunPlan


@dataclass(frozen=True)
class FetchOptions:
    """Options of the fetch stage (names and defaults of its CLI flags). Say what to
    fetch with at least one of departments, search, ids, ids_file, since, from_json."""
    departments: Optional[str] = None   # "11,9" or "European Paintings"
    search: Optional[str] = None
    ids: Optional[str] = None           # "436001,436008"
    ids_file: Optional[str] = None
    since: Optional[str] = None         # YYYY-MM-DD
    from_json: Optional[str] = None
    from_csv: Optional[str] = None      # the Met's MetObjects.csv; catalogue filters below
    limit: Optional[int] = None
    public_domain: bool = False         # catalogue filters (with from_csv)
    classification: Optional[str] = None
    object_name: Optional[str] = None
    has_artist: bool = False
    has_images: bool = False
    highlight: bool = False
    on_view: bool = False
    medium: Optional[str] = None
    geo: Optional[str] = None
    date_begin: Optional[int] = None
    date_end: Optional[int] = None
    search_in: Optional[str] = None     # title | tags | artist
    api: str = DEFAULT_API
    image: str = "original"             # original | small
    rate: Optional[float] = None        # ceiling req/s per host (None: 9); see met/pacing.py
    retries: int = 8
    timeout: float = 60.0
    backoff_max: float = 60.0
    backoff_base: float = 1.0
    cooldown: float = 30.0
    max_outage: float = 900.0
    allow_host: tuple = ()
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 4                    # download threads sharing one rate limit
    recheck: bool = False
    dry_run: bool = False               # count what would be requested; request no record/image
    force: bool = False
    quiet: bool = False


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


def client_config(args):
    return ClientConfig(api_root=args.api, rate=args.rate, retries=args.retries, timeout=args.timeout,
                        backoff_base=args.backoff_base, backoff_max=args.backoff_max,
                        cooldown=args.cooldown, max_outage=args.max_outage, max_pixels=args.max_pixels,
                        allowed_hosts=tuple(args.allow_host), pool_size=max(10, 2 * args.workers))


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
