"""Typed readers of the files one stage hands another: filter's rejected.jsonl and
align's manifest, aligned.json.

Stages read these as records (`Rejection`, `AlignEntry`), not raw dicts, so each field's
shape is checked once, here and in core/records.py. Damage is tolerated as it always
was: a rejected.jsonl line that is not JSON or names no face is left out; a manifest
item that is not an object reads as an entry with no status and no record. The readers
differ only in what a missing or malformed manifest means to the caller: an error
(`aligned_entries`, export), nothing (`scan_aligned`, status), or None (`read_aligned`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Optional, Union

from ..core.errors import UsageError
from ..core.records import AlignEntry, Rejection
from .files import read_json_or_none, read_jsonl
from .jsonstream import read_json_items
from .workdir import align_journal_path, manifest_path

PathLike = Union[str, os.PathLike]


def read_rejections(path: PathLike) -> Iterator[Rejection]:
    """rejected.jsonl's rejections in file order (a missing file: none); damaged lines,
    which name no face, are left out."""
    for row in read_jsonl(path):
        try:
            yield Rejection.from_json(row)
        except ValueError:
            continue


def aligned_entries(images_dir: PathLike, what: str = "align manifest") -> Iterator[AlignEntry]:
    """The manifest's entries one at a time (a list of 200,000 is never held). UsageError
    when it is missing, not JSON, or not a list (raised when the reader reaches the fault)."""
    path = manifest_path(images_dir)
    items = read_json_items(path, what)
    if not hasattr(items, "__next__"):
        raise UsageError(f"{path}: expected a list of align results")
    return (AlignEntry.from_json(e) for e in items)


def scan_aligned(images_dir: PathLike) -> Iterator[AlignEntry]:
    """As `aligned_entries`, but a missing or damaged manifest gives no entries (or those
    before the damage): for readers that only compare."""
    path = manifest_path(images_dir)
    try:
        items = read_json_items(path, Path(path).name)
        for e in (items if hasattr(items, "__next__") else ()):
            yield AlignEntry.from_json(e)
    except UsageError:
        return


def read_aligned(images_dir: PathLike) -> Optional[list]:
    """Every manifest entry, or None when the manifest is missing, unreadable or not a list."""
    data = read_json_or_none(manifest_path(images_dir))
    return [AlignEntry.from_json(e) for e in data] if isinstance(data, list) else None


def previous_aligned(images_dir: PathLike) -> dict:
    """{FaceKey: AlignEntry} from the last completed align run plus the journal of an
    interrupted one (journal lines win): what a rerun may reuse. Entries naming no face
    are left out."""
    prev: dict = {}
    rows = (read_aligned(images_dir) or []) + \
        [AlignEntry.from_json(e) for e in read_jsonl(align_journal_path(images_dir))]
    for e in rows:
        key = e.key
        if key is not None:
            prev[key] = e
    return prev

