"""Choose object ids from the Met's open-access catalogue, `MetObjects.csv`, before any API call.

The Met publishes every object (~480,000 rows, ~300 MB) as one CSV. Filtering it locally
(public domain, department, classification, object name, dates, artist) turns "list a
department and fetch every record" into "fetch only the records we want": for paintings
that is orders of magnitude fewer requests. The file is streamed row by row (csv module,
bounded memory), starts with a UTF-8 byte-order mark, and has fields with commas, quotes
and newlines inside; rows that cannot be used are counted, not fatal.
"""
from __future__ import annotations

import csv
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from .client import Department, resolve_departments
from ..core.records import MAX_OBJECT_ID, as_object_id
from .sample_collection import DEPARTMENTS
from .shapes import department_aliases

# column names in the real file's header
COL_ID = "Object ID"
COL_PUBLIC_DOMAIN = "Is Public Domain"
COL_DEPARTMENT = "Department"
COL_OBJECT_NAME = "Object Name"
COL_CLASSIFICATION = "Classification"
COL_ARTIST = "Artist Display Name"
COL_BEGIN = "Object Begin Date"
COL_END = "Object End Date"
# a catalogue field may be long (tag lists, constituents) but never this long: the cap
# bounds one row's memory (fields x FIELD_LIMIT) and stops a file with a lost closing quote
# from swallowing the rest into one field
FIELD_LIMIT = 1 << 20
# a row of the real file spans a few lines (newlines inside quoted fields); this many means
# a stray quote joined rows together: said loudly, with the line number
MAX_ROW_LINES = 200


class CatalogError(ValueError):
    """The file is not a usable MetObjects.csv (missing, unreadable, wrong header)."""


@dataclass(frozen=True)
class CatalogFilter:
    """Which rows to keep. Text matches are case-insensitive; empty tuples mean "any".

    departments: display names (resolve ids first with `department_names`).
    classifications: a row matches "Paintings" when its Classification is "Paintings" or a
      sub-class such as "Paintings-Canvas", or a "|"-separated list holding one of those.
    object_names: exact Object Name (e.g. "Painting", "Drawing").
    date_begin/date_end: the object's [begin, end] years overlap this range (as the API's
      dateBegin/dateEnd); rows without integer years are left out when this is set.
    limit: stop after this many distinct ids (the rest of the file is not read).
    """
    public_domain: bool = False
    departments: tuple = ()
    classifications: tuple = ()
    object_names: tuple = ()
    date_begin: Optional[int] = None
    date_end: Optional[int] = None
    has_artist: bool = False
    limit: Optional[int] = None

    def columns(self) -> list:
        """The header columns this filter reads (besides Object ID)."""
        cols = []
        if self.public_domain:
            cols.append(COL_PUBLIC_DOMAIN)
        if self.departments:
            cols.append(COL_DEPARTMENT)
        if self.classifications:
            cols.append(COL_CLASSIFICATION)
        if self.object_names:
            cols.append(COL_OBJECT_NAME)
        if self.date_begin is not None or self.date_end is not None:
            cols += [COL_BEGIN, COL_END]
        if self.has_artist:
            cols.append(COL_ARTIST)
        return cols


@dataclass
class CatalogStats:
    """What a scan saw: rows read, rows matched, rows unusable (and the first few reasons)."""
    rows: int = 0
    matched: int = 0
    bad_rows: int = 0
    bad_examples: list = field(default_factory=list)
    stopped_at_limit: bool = False
    warnings: list = field(default_factory=list)  # rows spanning implausibly many lines

    def bad(self, line: int, why: str) -> None:
        self.bad_rows += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"line {line}: {why}")


@dataclass
class CatalogSelection:
    """The selected ids (int64, in file order, de-duplicated), each one's department, and stats."""
    ids: object                # numpy int64 array
    departments: list          # department name of ids[i]
    stats: CatalogStats


def department_names(specs: Iterable[str]) -> tuple:
    """Every name of the departments given by id or name (case-insensitive), via the table
    the API serves (MET_API.md) and the other names they go by in the catalogue
    (shapes.DEPARTMENT_ALIASES: department 21 is "Modern and Contemporary Art" there);
    ValueError lists the choices."""
    table = [Department(i, n) for i, n in DEPARTMENTS]
    names = dict(DEPARTMENTS)
    return tuple(n for d in resolve_departments(specs, table) for n in department_aliases(d, names[d]))


def split_alternatives(text: Optional[str]) -> tuple:
    """'Paintings|Drawings' -> ('Paintings', 'Drawings'); None -> ()."""
    return tuple(t.strip() for t in (text or "").split("|") if t.strip())


def iter_catalog(path, flt: CatalogFilter, stats: Optional[CatalogStats] = None) -> Iterator[tuple]:
    """Yield (object id, department) of each row `flt` keeps, in file order (ids may repeat
    if the file repeats them). Raises CatalogError for a file that cannot be a catalogue."""
    stats = stats if stats is not None else CatalogStats()
    csv.field_size_limit(FIELD_LIMIT)
    try:
        f = open(path, encoding="utf-8-sig", errors="replace", newline="")
    except FileNotFoundError:
        raise CatalogError(f"{path}: not found") from None
    except OSError as e:
        raise CatalogError(f"{path}: {e.strerror or e}") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise CatalogError(f"{path}: not a CSV file ({e})") from None
        if not header:
            raise CatalogError(f"{path}: empty file, expected MetObjects.csv's header")
        col = {name.strip(): i for i, name in enumerate(header)}
        if COL_ID not in col:
            raise CatalogError(f"{path}: the header has no '{COL_ID}' column, so this is not "
                               f"MetObjects.csv (header starts: {', '.join(header[:4])[:120]})")
        missing = [c for c in flt.columns() if c not in col]
        if missing:
            raise CatalogError(f"{path}: the header has no {', '.join(repr(c) for c in missing)} "
                               "column needed by the filters given")
        keep = _row_predicate(flt, col)
        i_id, i_dep = col[COL_ID], col.get(COL_DEPARTMENT)
        width = len(header)
        try:
            start = reader.line_num
            for row in reader:
                if reader.line_num - start > MAX_ROW_LINES and len(stats.warnings) < 5:
                    stats.warnings.append(
                        f"the row starting at line {start + 1} spans {reader.line_num - start} lines "
                        f"(a stray quote?): the rows in it were read as one")
                start = reader.line_num
                stats.rows += 1
                if len(row) != width:
                    if not row:
                        stats.rows -= 1  # a blank line is not a row
                        continue
                    stats.bad(reader.line_num, f"{len(row)} fields, header has {width}")
                    continue
                raw = row[i_id].strip()
                oid = as_object_id(raw)
                if oid is None:
                    stats.bad(reader.line_num, f"Object ID {raw[:30]!r}{'...' if len(raw) > 30 else ''} "
                                               f"is not a whole number from 1 to {MAX_OBJECT_ID}")
                    continue
                if keep(row):
                    stats.matched += 1
                    yield oid, (row[i_dep].strip() if i_dep is not None else "")
        except csv.Error as e:
            raise CatalogError(f"{path} line {reader.line_num}: {e}"
                               + (f" (at most {FIELD_LIMIT} characters per field)" if "limit" in str(e) else "")) from None


def select_ids(path, flt: CatalogFilter) -> CatalogSelection:
    """Every id `flt` keeps, de-duplicated in file order, cut at `flt.limit` (reading stops
    there). Memory: ~16 bytes per selected id (the id, a reference to an interned department name)."""
    stats = CatalogStats()
    ids, deps = array("q"), []
    seen: Optional[set] = set() if flt.limit else None  # only --limit needs distinct counts early
    interned: dict = {}
    for oid, dep in iter_catalog(path, flt, stats):
        if seen is not None:
            if oid in seen:
                continue
            seen.add(oid)
        ids.append(oid)
        deps.append(interned.setdefault(dep, dep))
        if flt.limit and len(ids) >= flt.limit:
            stats.stopped_at_limit = True
            break
    arr = np.frombuffer(ids, dtype=np.int64).copy() if len(ids) else np.zeros(0, np.int64)
    if seen is None and len(arr):
        _, first = np.unique(arr, return_index=True)
        if len(first) < len(arr):
            first.sort()
            arr, deps = arr[first], [deps[i] for i in first]
    return CatalogSelection(arr, deps, stats)


def _row_predicate(flt: CatalogFilter, col: dict):
    """One function row -> bool doing only the tests `flt` asks for (each lambda binds its
    column index as a default: the names are reused from test to test)."""
    tests = []
    if flt.public_domain:
        i = col[COL_PUBLIC_DOMAIN]
        tests.append(lambda r, i=i: r[i].strip().lower() == "true")
    if flt.departments:
        i, wanted = col[COL_DEPARTMENT], {d.casefold() for d in flt.departments}
        tests.append(lambda r, i=i, w=wanted: r[i].strip().casefold() in w)
    if flt.classifications:
        i, wanted = col[COL_CLASSIFICATION], tuple(c.casefold() for c in flt.classifications)
        tests.append(lambda r, i=i, w=wanted: _classified(r[i], w))
    if flt.object_names:
        i, wanted = col[COL_OBJECT_NAME], {n.casefold() for n in flt.object_names}
        tests.append(lambda r, i=i, w=wanted: r[i].strip().casefold() in w)
    if flt.date_begin is not None or flt.date_end is not None:
        ib, ie = col[COL_BEGIN], col[COL_END]
        lo = flt.date_begin if flt.date_begin is not None else -10 ** 9
        hi = flt.date_end if flt.date_end is not None else 10 ** 9
        tests.append(lambda r: _overlaps(r[ib], r[ie], lo, hi))
    if flt.has_artist:
        i = col[COL_ARTIST]
        tests.append(lambda r, i=i: bool(r[i].strip()))
    return lambda r: all(t(r) for t in tests)


def _classified(value: str, wanted: tuple) -> bool:
    for part in value.split("|"):
        part = part.strip().casefold()
        for w in wanted:
            if part == w or part.startswith(w + "-"):
                return True
    return False


def _overlaps(begin: str, end: str, lo: int, hi: int) -> bool:
    b, e = _year(begin), _year(end)
    if b is None or e is None:
        return False
    if b > e:
        b, e = e, b
    return b <= hi and e >= lo


def _year(s: str) -> Optional[int]:
    s = s.strip()
    t = s[1:] if s[:1] in "-+" else s
    if not (t.isascii() and t.isdigit()) or len(t) > 9:  # no year has 4,300 digits
        return None
    return int(s)


def catalog_summary(path, sel: CatalogSelection) -> str:
    """One line for the log: rows read, selected, unusable rows with an example."""
    st = sel.stats
    line = (f"{Path(path).name}: {st.rows} rows read, {len(sel.ids)} ids selected"
            + (" (stopped at --limit)" if st.stopped_at_limit else ""))
    if st.bad_rows:
        line += f"; {st.bad_rows} unusable rows skipped (e.g. {st.bad_examples[0]})"
    return line


def catalog_warnings(path, sel: CatalogSelection) -> list:
    """Lines to print even with --quiet: rows that swallowed others."""
    return [f"warning: {Path(path).name}: {w}" for w in sel.stats.warnings]
