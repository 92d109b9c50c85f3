"""Download Met object records and original images into the work directory.

Choose objects by department (ids or names), a search with filters, explicit ids,
everything changed since a date, or rows of the Met's catalogue file MetObjects.csv
(`--from-csv`, filtered locally: no API call for an object you do not want); or rebuild
NVIDIA's `unprocessed/image-{id}.png` layout from a metfaces.json (`--from-json`),
marking images whose PNG no longer matches the recorded `source_md5` as `changed`.

Writes, in --work DIR:
  objects.jsonl          one line per object: status, reason, attempts, bytes, sha256, md5,
                         width, height (ok | no_image | not_public_domain | not_found |
                         http_error | bad_content | too_large | refused | changed)
  api/{id}.json          the API record exactly as served
  originals/{id}.{ext}   the image exactly as served, checked (length, magic bytes, full
                         decode, pixel limit) before it is renamed into place

A rerun skips settled objects and retries network/content failures (http_error,
bad_content); --recheck retries every non-ok object, --force redoes everything.
Updates: every object the --since DATE listing names is fetched again even when settled.
Its image is downloaded to a temporary name and replaces the original only when its
sha256 changed; the objects.jsonl line then keeps `previous_sha256`, `changed_at` and a
short `history`. An object that left the public domain or lost its image has its original
removed (detect, filter and align then withdraw its faces and crops). A refetch that
fails for any reason (the new image URL answers 404, a refused host, a corrupt image, the
network) keeps the old line, original and api/{id}.json (the new record is written only
once its image is accepted), so its faces and crops stay; the line says why in
`refresh_error`, and every later fetch of the selection retries it (--force too refreshes:
an object fetched before keeps its files when its refetch fails). Each
host (the API's, the images') is paced by all --workers threads together at a pace learned
from its blocks and remembered between runs (--rate is the ceiling; met/pacing.py),
retried with backoff, and a 403 block page pauses all threads together. Ctrl-C or a kill
loses nothing: rerun to resume.
--dry-run prints what would be requested (by department and by status already in
objects.jsonl) and how long it would take at that pace, without requesting any object record
or image (a --departments, --search or --since source still makes its listing requests).

examples:
  metfaces-build fetch --departments "European Paintings,11" --limit 500
  metfaces-build fetch --search portrait --has-images --medium Paintings --date-begin 1600 --date-end 1800
  metfaces-build fetch --from-json metfaces.json --rate 5
  metfaces-build fetch --from-csv MetObjects.csv --public-domain --classification Paintings --has-artist --dry-run
  metfaces-build fetch --api http://127.0.0.1:8000/public/collection/v1 --ids 436001,436008
"""
from __future__ import annotations
# Modules, one per role (docs/architecture.md): options (FetchOptions, FetchSummary, the
# options' checks), select (choosing ids), objects (one object: record and image),
# from_json (rebuilding NVIDIA's layout), dry_run, journal (objects.jsonl: index, updates,
# compaction), pool (the download threads) and stage (the driver: plan, execute, retire,
# summarise). This package re-exports what other modules and tests use.
from __future__ import annotations

from ...core.status import FETCH_FAILED as FAILED  # noqa: F401 - re-exported
from ...core.status import FETCH_STATUSES as STATUSES  # noqa: F401 - the statuses fetch records
from .dry_run import DryRunPlan, dry_run
from .from_json import SOURCE_DIR, SourceJob, compare_source, fetch_source, source_jobs, source_path_problem
from .journal import (JournalIndex, UpdateJournal, carry_history, compact_journal, fetch_skip_statuses,
                      update_kind)
from .objects import MAX_URL, fetch_object, refresh_failed
from .options import FetchOptions, FetchSummary, check_options, client_config
from .pool import run_pool
from .select import CHUNK_IDS, IdLabels, chunks, collect_ids, dedupe_ids, parse_id_list, read_ids_file
from .stage import fetch

__all__ = ["CHUNK_IDS", "DryRunPlan", "FAILED", "FetchOptions", "FetchSummary", "IdLabels",
           "JournalIndex", "MAX_URL", "SOURCE_DIR", "STATUSES", "SourceJob", "UpdateJournal",
           "carry_history", "check_options", "chunks", "client_config", "collect_ids",
           "compact_journal", "compare_source", "dedupe_ids", "dry_run", "fetch", "fetch_object",
           "fetch_skip_statuses", "fetch_source", "parse_id_list", "read_ids_file", "refresh_failed",
           "run_pool", "source_jobs", "source_path_problem", "update_kind"]
