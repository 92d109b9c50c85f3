"""Choosing the ids to fetch: departments, a search, explicit ids (--ids, --ids-file),
everything changed since a date, or the rows of the Met's catalogue (--from-csv).

Ids travel as int64 numpy arrays in chunks (the whole collection is ~500k ids), and a
dry run labels each with its department (IdLabels) as far as it can without records.
"""
from __future__ import annotations

import re
import sys
from array import array
from typing import Callable, Iterator, Optional

from ...core.errors import UsageError
from ...core.records import MAX_OBJECT_ID, as_object_id
from ...met.catalog import (CatalogError, CatalogFilter, catalog_summary, catalog_warnings,
                            department_names, select_ids, split_alternatives)
from ...met.client import resolve_departments

CHUNK_IDS = 1024


def dedupe_ids(ids):
    """Ids in first-seen order without repeats (the Met's lists repeat ids)."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    a = np.asarray(ids, dtype=np.int64)
    if a.size == 0:
        return a
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def parse_id_list(text: str, where: str = "--ids") -> list:
    out = []
    for tok in re.split(r"[,\s]+", text.strip()):
        if not tok:
            continue
        oid = as_object_id(tok)
        if oid is None:
            shown = tok if len(tok) <= 40 else tok[:40] + "..."
            raise UsageError(f"{where}: {shown!r} is not an object id (a whole number from 1 "
                             f"to {MAX_OBJECT_ID})")
        out.append(oid)
    return out


def read_ids_file(path: str):
    """One id per line (or comma-separated); '#' starts a comment. Streamed into an array."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    buf = array("q")
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.split("#", 1)[0]
                if line.strip():
                    buf.extend(parse_id_list(line, f"{path} line {n}"))
    except FileNotFoundError:
        raise UsageError(f"--ids-file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise UsageError(f"--ids-file {path}: {e}") from None
    return np.frombuffer(buf, dtype=np.int64) if len(buf) else np.zeros(0, np.int64)


def search_filters(opts) -> dict:
    f = {}
    if opts.has_images:
        f["hasImages"] = True
    if opts.highlight:
        f["isHighlight"] = True
    if opts.on_view:
        f["isOnView"] = True
    if opts.medium:
        f["medium"] = opts.medium
    if opts.geo:
        f["geoLocation"] = opts.geo
    if opts.date_begin is not None:
        f["dateBegin"], f["dateEnd"] = opts.date_begin, opts.date_end
    if opts.search_in:
        f[{"title": "title", "tags": "tags", "artist": "artistOrCulture"}[opts.search_in]] = True
    return f


def catalog_filter(opts) -> CatalogFilter:
    """The --from-csv filter flags as a typed CatalogFilter (department ids become names)."""
    try:
        deps = department_names(opts.departments.split(",")) if opts.departments else ()
    except ValueError as e:
        raise UsageError(f"--departments: {e}") from None
    return CatalogFilter(public_domain=opts.public_domain, departments=deps,
                         classifications=split_alternatives(opts.classification),
                         object_names=split_alternatives(opts.object_name),
                         date_begin=opts.date_begin, date_end=opts.date_end,
                         has_artist=opts.has_artist, limit=opts.limit)


def catalog_ids(path: str, flt, log: Callable[[str], None], labels: Optional["IdLabels"] = None):
    """Ids of the MetObjects.csv rows `flt` keeps (no API request); their departments go to
    `labels` when given (dry runs)."""
    try:
        sel = select_ids(path, flt)
    except CatalogError as e:
        raise UsageError(f"--from-csv {e}") from None
    log(catalog_summary(path, sel))
    for w in catalog_warnings(path, sel):
        print(w, file=sys.stderr)
    if labels is not None:
        labels.add_each(sel.ids, sel.departments)
    return sel.ids


class IdLabels:
    """Department name per id, as far as a dry run can know it without fetching records
    (catalogue rows, per-department listings, earlier records in objects.jsonl); ids and
    int32 name codes in arrays, so half a million ids cost a few MB."""

    def __init__(self):
        self.names: list = []
        self._code: dict = {}
        self._ids: list = []
        self._codes: list = []
        self._sorted = None

    def _code_of(self, name: str) -> int:
        if name not in self._code:
            self._code[name] = len(self.names)
            self.names.append(name)
        return self._code[name]

    def add(self, ids, name: str) -> None:
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        self.add_codes(ids, np.full(len(ids), self._code_of(name), dtype=np.int32))

    def add_each(self, ids, names: list) -> None:
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        self.add_codes(ids, np.fromiter((self._code_of(n) for n in names), np.int32, len(names)))

    def add_codes(self, ids, codes) -> None:
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self._codes.append(codes)
        self._sorted = None

    def lookup(self, ids) -> list:
        """Department of each id ('' when unknown); the first label added for an id wins."""
        import numpy as np  # heavy: deferred so importing the CLI stays instant
        ids = np.asarray(ids, dtype=np.int64)
        if not self._ids or not len(ids):
            return [""] * len(ids)
        if self._sorted is None:
            a, c = np.concatenate(self._ids), np.concatenate(self._codes)
            uniq, first = np.unique(a, return_index=True)
            self._sorted = (uniq, c[first])
        uniq, codes = self._sorted
        pos = np.minimum(np.searchsorted(uniq, ids), len(uniq) - 1)
        hit = uniq[pos] == ids
        return [self.names[codes[p]] if h else "" for p, h in zip(pos, hit)]


def collect_ids(client, opts, log: Callable[[str], None], labels: Optional[IdLabels] = None,
                listed: Optional[list] = None):
    """All requested ids, de-duplicated in first-seen order and cut to --limit. With
    `labels` (dry runs), departments are listed one by one so each id gets its department.
    With `listed`, the arrays of ids the --since listing named are appended to it: those
    changed at the Met, so never skipped as settled."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    parts = _given_ids(opts, log, labels)
    deps, known = _departments(client, opts)
    if opts.search is not None:
        parts += _searched_ids(client, opts, log, deps)
    elif labels is not None and deps:
        parts += _listed_by_department(client, opts, log, deps, known, labels, listed)
    elif deps or opts.since:
        found = client.object_ids(deps, opts.since)
        log(f"object list{f' changed since {opts.since}' if opts.since else ''}: {len(found)} ids")
        parts.append(np.asarray(found, dtype=np.int64))
        if opts.since and listed is not None:
            listed.append(parts[-1])
    ids = dedupe_ids(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return ids[: opts.limit] if opts.limit else ids


def _given_ids(opts, log: Callable[[str], None], labels: Optional[IdLabels]) -> list:
    """The id arrays named without asking the API: catalogue rows, --ids, --ids-file."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    parts = []
    if opts.from_csv:
        parts.append(catalog_ids(opts.from_csv, catalog_filter(opts), log, labels))
    if opts.ids:
        parts.append(np.asarray(parse_id_list(opts.ids), dtype=np.int64))
    if opts.ids_file:
        parts.append(read_ids_file(opts.ids_file))
    return parts


def _departments(client, opts) -> tuple:
    """(department ids asked for, the departments the API knows): ([], []) unless
    --departments names them for the API (with --from-csv they filter the file)."""
    if not opts.departments or opts.from_csv:
        return [], []
    known = client.departments()
    try:
        return resolve_departments(opts.departments.split(","), known), known
    except ValueError as e:
        raise UsageError(f"--departments: {e}") from None


def _searched_ids(client, opts, log: Callable[[str], None], deps: list) -> list:
    """One search per department asked for (or one in all)."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    parts = []
    filters = search_filters(opts)
    for dep in deps or [None]:
        extra = {"departmentId": dep} if dep is not None else {}
        found = client.search(opts.search, **filters, **extra)
        log(f"search {opts.search!r}{f' in department {dep}' if dep else ''}: {len(found)} ids")
        parts.append(np.asarray(found, dtype=np.int64))
    return parts


def _listed_by_department(client, opts, log: Callable[[str], None], deps: list, known: list,
                          labels: IdLabels, listed: Optional[list]) -> list:
    """Each department's listing on its own, so a dry run knows each id's department."""
    import numpy as np  # heavy: deferred so importing the CLI stays instant
    parts = []
    names = {d.id: d.name for d in known}
    for dep in deps:
        found = np.asarray(client.object_ids([dep], opts.since), dtype=np.int64)
        log(f"object list of department {dep}: {len(found)} ids")
        labels.add(found, names.get(dep, str(dep)))
        parts.append(found)
        if opts.since and listed is not None:
            listed.append(found)
    return parts


def chunks(ids, size: int = CHUNK_IDS) -> Iterator:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def listed_set(listed: list) -> frozenset:
    """The ids the --since listing named (a set: a listing is at most the collection)."""
    return frozenset(int(i) for part in listed for i in part)


def todo_ids(chunk, statuses: list, skip: frozenset, changed: frozenset = frozenset()) -> list:
    """The ids of `chunk` to request: not settled (`skip`), or changed at the Met."""
    return [int(i) for i, st in zip(chunk, statuses) if st not in skip or int(i) in changed]
