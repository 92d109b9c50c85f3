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

import json
import os
import zlib
from collections.abc import Mapping
from typing import Iterator, Optional, Union

from ..core.errors import UsageError
from ..core.records import AlignEntry, FaceKey, Rejection
from .files import read_jsonl
from .jsonstream import read_json_items
from .workdir import MANIFEST, align_journal_path, manifest_path, read_manifest

PathLike = Union[str, os.PathLike]


def read_rejections(path: PathLike) -> Iterator[Rejection]:
    """rejected.jsonl's rejections in file order (a missing file: none); damaged lines,
    which name no face, are left out."""
    for row in read_jsonl(path):
        try:
            yield Rejection.from_json(row)
        except ValueError:
            continue


def _manifest_items(images_dir: PathLike, what: str = MANIFEST) -> Optional[Iterator]:
    """The manifest's items as read one at a time, or None when its top level is not a
    list; UsageError when it is missing or not JSON (for a list: when the reader reaches
    the fault)."""
    items = read_json_items(manifest_path(images_dir), what)
    return items if hasattr(items, "__next__") else None


def aligned_entries(images_dir: PathLike, what: str = "align manifest") -> Iterator[AlignEntry]:
    """The manifest's entries one at a time (a list of 200,000 is never held). UsageError
    when it is missing, not JSON, or not a list (raised when the reader reaches the fault)."""
    items = _manifest_items(images_dir, what)
    if items is None:
        raise UsageError(f"{manifest_path(images_dir)}: expected a list of align results")
    return (AlignEntry.from_json(e) for e in items)


def scan_aligned(images_dir: PathLike) -> Iterator[AlignEntry]:
    """As `aligned_entries`, but a missing or damaged manifest gives no entries (or those
    before the damage): for readers that only compare."""
    try:
        for e in _manifest_items(images_dir) or ():
            yield AlignEntry.from_json(e)
    except UsageError:
        return


def manifest_complete(images_dir: PathLike) -> bool:
    """Whether the manifest is there and reads whole as a list (what `read_aligned` takes
    for a manifest), read entry by entry and nothing kept."""
    try:
        items = _manifest_items(images_dir)
        if items is None:
            return False
        for _ in items:
            pass
        return True
    except (UsageError, OSError, ValueError, RecursionError):
        return False


def read_aligned(images_dir: PathLike) -> Optional[list]:
    """Every manifest entry, or None when the manifest is missing, unreadable or not a list."""
    data = read_manifest(images_dir)
    return None if data is None else [AlignEntry.from_json(e) for e in data]


class PreviousAligned(Mapping):
    """{FaceKey: AlignEntry} of earlier align runs, each entry held as its compact JSON,
    zlib-compressed (under 1 KB, where the parsed entry with its record's 68 landmark
    lists takes ~10 KB), and parsed again when asked for: a rerun over 200,000 faces
    does not hold 200,000 parsed entries. Iteration is in first-seen order, as a dict's."""

    def __init__(self) -> None:
        self._blobs: dict = {}

    def put(self, key: FaceKey, entry: AlignEntry) -> None:
        try:
            self._blobs[key] = zlib.compress(
                json.dumps(entry.raw, separators=(",", ":")).encode("utf-8", "surrogatepass"), 1)
        except (ValueError, TypeError, RecursionError):  # kept as it is, never lost
            self._blobs[key] = entry

    def __getitem__(self, key) -> AlignEntry:
        blob = self._blobs[key]
        if isinstance(blob, AlignEntry):
            return blob
        return AlignEntry.from_json(json.loads(zlib.decompress(blob).decode("utf-8",
                                                                            "surrogatepass")))

    def __contains__(self, key) -> bool:
        return key in self._blobs

    def __iter__(self) -> Iterator[FaceKey]:
        return iter(self._blobs)

    def __len__(self) -> int:
        return len(self._blobs)


def previous_aligned(images_dir: PathLike) -> PreviousAligned:
    """{FaceKey: AlignEntry} from the last completed align run plus the journal of an
    interrupted one (journal lines win): what a rerun may reuse. Entries naming no face
    are left out; a manifest that is missing, damaged or not a list gives none (the
    journal still counts). Both files are read entry by entry (`PreviousAligned`)."""
    prev = PreviousAligned()
    try:
        for e in _manifest_items(images_dir) or ():
            e = AlignEntry.from_json(e)
            if e.key is not None:
                prev.put(e.key, e)
    except (UsageError, OSError, ValueError, RecursionError):
        prev = PreviousAligned()  # as an unreadable manifest always read: nothing from it
    for row in read_jsonl(align_journal_path(images_dir)):
        e = AlignEntry.from_json(row)
        if e.key is not None:
            prev.put(e.key, e)
    return prev
