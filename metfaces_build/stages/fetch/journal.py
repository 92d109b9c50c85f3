"""fetch's journal, objects.jsonl: what a rerun skips, each refetched object's image
history and update kind, and the journal's index and compaction at the scale of the whole
collection (500k objects: arrays, byte offsets, never one dict per line).

Only fetch writes objects.jsonl, so this lives here; infra/workdir.py keeps what every
stage reads of it (`Work.objects`, `scan_objects`, `JournalDamage`).
"""
from __future__ import annotations

import contextlib

import datetime
from pathlib import Path
from typing import Optional

from ...core.records import as_object_id
from ...core.status import (BAD_CONTENT, CHANGED, FETCH_SETTLED, FETCH_STATUSES, HTTP_ERROR,
                            OK, REFUSED, TOO_LARGE)
from ...infra.files import atomic_open, loads
from ...infra.workdir import parse_object_line

HISTORY_KEEP = 10  # image versions remembered per object in objects.jsonl
# the record fields whose change makes a refetch a "record" update
RECORD_KEYS = ("title", "artist", "date", "department", "is_public_domain", "image_url", "meta_url")


def fetch_skip_statuses(force: bool, recheck: bool) -> frozenset:
    """Statuses a fetch rerun leaves alone: none with --force, ok/changed with --recheck,
    else every settled status."""
    if force:
        return frozenset()
    return frozenset({OK, CHANGED}) if recheck else FETCH_SETTLED


# ---- updates: an object fetched again -------------------------------------------------

def carry_history(old: Optional[dict], new: dict, now: str) -> dict:
    """`new` (an objects.jsonl line) with the object's image history: when its sha256
    differs from `old`'s (re-shot, or image gone), `previous_sha256`, `changed_at` and one
    more `history` item {sha256, image_url, until}; else the old history carried on."""
    out = dict(new)
    if not old:
        return out
    for k in ("previous_sha256", "changed_at", "history"):
        if k in old and k not in out:
            out[k] = old[k]
    old_sha, new_sha = old.get("sha256") or "", out.get("sha256") or ""
    if old_sha and old_sha != new_sha:
        hist = list(old.get("history") or [])
        hist.append({"sha256": old_sha, "image_url": old.get("image_url") or "", "until": now})
        out["history"] = hist[-HISTORY_KEEP:]
        out["previous_sha256"], out["changed_at"] = old_sha, now
    return out


def update_kind(old: Optional[dict], new: dict) -> str:
    """How object line `new` differs from `old` (the journal's previous line), one of
    workdir.UPDATE_KINDS: new (no usable line before), new_image (sha256 changed), record
    (same image, other record fields), withdrawn (had an image, now not public domain / no
    image / gone), unchanged, or failed (the refetch failed: the old files are kept)."""
    st = new.get("status")
    if st in (HTTP_ERROR, BAD_CONTENT, TOO_LARGE, REFUSED) or new.get("refresh_error"):
        return "failed"
    if not old or old.get("status") not in (OK, CHANGED):
        return "new" if st == OK else "unchanged"
    if st != OK:
        return "withdrawn"
    if (old.get("sha256") or "") != (new.get("sha256") or ""):
        return "new_image"
    if any(old.get(k) != new.get(k) for k in RECORD_KEYS):
        return "record"
    return "unchanged"


def utc_now() -> str:
    """The time an image was replaced, when the record has no metadataDate (UTC)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class UpdateJournal:
    """The objects.jsonl appender for a run with --since: each refetched object's line
    carries its image history (carry_history) and is classified (new / new_image /
    record / withdrawn / unchanged / failed) into `updates`. A failed refetch of an object
    that had an image writes the old line again with `refresh_error`, so a network error
    never withdraws it."""

    def __init__(self, journal, previous: dict, changed: frozenset, updates: dict, now: str):
        self.journal, self.previous, self.changed = journal, previous, changed
        self.updates, self.now = updates, now
        # refetches that failed and kept the old line (fetch_object -> refresh_failed): they
        # count as failures, though the line they write says "ok"
        self.kept_failures = 0

    def write(self, row: dict) -> None:
        oid = row.get("id")
        if row.get("refresh_error") and row.get("status") == OK:
            self.kept_failures += 1
        if oid not in self.changed:
            if row.get("refresh_error"):  # a --force refetch that failed: old line kept
                self.updates.setdefault("failed", []).append(oid)
            self.journal.write(row)
            return
        old = self.previous.get(oid)
        kind = update_kind(old, row)
        self.updates.setdefault(kind, []).append(oid)
        if kind == "failed" and old and old.get("status") == OK:
            row = {**old, "refresh_error": row.get("refresh_error")
                   or f"{row.get('status')}: {row.get('reason', '')}"}
        else:
            row = carry_history(old, row, row.get("metadata_date") or self.now)
            row.pop("refresh_error", None)
        self.journal.write(row)


# ---- the index and compaction ---------------------------------------------------------

class JournalIndex:
    """The latest status per id in objects.jsonl, and where its line is, as numpy arrays
    (8+1+8 bytes per id): bounded memory even for a 500k-object journal, and vectorised
    look-ups per chunk."""

    def __init__(self, path: Path):
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        self.path = Path(path)
        ids, codes, offsets = [], [], []
        code_of = {s: i for i, s in enumerate(FETCH_STATUSES)}
        # ids whose latest line kept its old state after a failed refresh: due again
        self.refresh_pending: set = set()
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            f = None
        off = 0
        with f if f is not None else contextlib.nullcontext(()) as lines:  # closed on any error
            for line in lines:
                try:
                    row = loads(line) if line.strip() else None
                except ValueError:  # truncated, garbled, not UTF-8, too deep
                    row = None
                oid, st = (row.get("id"), row.get("status")) if isinstance(row, dict) else (None, None)
                if isinstance(oid, int) and as_object_id(oid) is not None and isinstance(st, str) \
                        and st in code_of:
                    ids.append(oid)
                    codes.append(code_of[st])
                    offsets.append(off)
                    if row.get("refresh_error"):
                        self.refresh_pending.add(oid)
                    else:
                        self.refresh_pending.discard(oid)
                off += len(line)
        a, c = np.asarray(ids, dtype=np.int64), np.asarray(codes, dtype=np.int8)
        # last line per id wins: unique over the reversed arrays keeps the last occurrence
        uniq, first_rev = np.unique(a[::-1], return_index=True)
        self.ids, self.codes = uniq, c[::-1][first_rev]
        self.offsets = np.asarray(offsets, dtype=np.int64)[::-1][first_rev]

    def line_of(self, oid: int) -> Optional[dict]:
        """The latest line of `oid`, read back from the journal (None when it has none).
        Safe while the journal is appended to: lines before the end never move."""
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        pos = int(np.searchsorted(self.ids, oid))
        if pos >= len(self.ids) or self.ids[pos] != oid:
            return None
        with open(self.path, "rb") as f:
            f.seek(int(self.offsets[pos]))
            row = loads(f.readline())
        return row if isinstance(row, dict) and row.get("id") == oid else None

    def statuses(self, ids) -> list:
        """Status (or None) of each id."""
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, ids)
        pos_c = np.minimum(pos, max(len(self.ids) - 1, 0))
        hit = (pos < len(self.ids)) & (self.ids[pos_c] == ids) if len(self.ids) else np.zeros(len(ids), bool)
        return [FETCH_STATUSES[self.codes[p]] if h else None for p, h in zip(pos_c, hit)]


def compact_journal(path: Path) -> int:
    """Rewrite objects.jsonl atomically with only the latest line per id, sorted by id.

    A damaged line (unreadable) is kept verbatim, after the others, unless a later readable
    line of the same object supersedes it: what it said is unknown, so it is not ours to
    delete. Only an unterminated last line, the one a kill cut short, is dropped. Two
    passes over byte offsets, so memory is 16 bytes per line, not one dict per record.
    """
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    if not path.exists():
        return 0
    ids, offsets = [], []
    damaged: dict = {}  # id (None: unreadable) -> offsets of damaged lines not superseded (yet)
    with open(path, "rb") as f:
        off = n_lines = 0
        for line in f:
            n_lines += 1
            _, oid, ok = parse_object_line(line) if line.strip() else (None, None, True)
            if ok and oid is not None:
                ids.append(oid)
                offsets.append(off)
                damaged.pop(oid, None)  # superseded by this readable line
            elif not ok and line.endswith(b"\n"):  # (unterminated: a kill cut the last line)
                damaged.setdefault(oid, []).append(off)
            off += len(line)
    a, o = np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    uniq, first_rev = np.unique(a[::-1], return_index=True)
    keep = o[::-1][first_rev]  # offsets of the last line per id, in id order
    kept_damaged = sorted(x for offs in damaged.values() for x in offs)
    if np.array_equal(keep, o) and n_lines == len(o) + len(kept_damaged) \
            and all(x > (o[-1] if len(o) else -1) for x in kept_damaged):
        return len(keep)  # already compact: rewrite nothing
    with open(path, "rb") as src, atomic_open(path, "wb") as dst:
        for off in list(keep) + kept_damaged:
            src.seek(int(off))
            line = src.readline()
            dst.write(line if line.endswith(b"\n") else line + b"\n")
    return len(keep)
