"""MetObjects.csv selection: hostile fields, filters against an independent reference, errors."""
from __future__ import annotations

import sys

import pytest

from metfaces_build.met.catalog import CatalogError, CatalogFilter, department_names, select_ids
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import make_catalog  # noqa: E402

H = make_catalog.HEADER


def write_rows(path, rows, header=H, bom=True):
    import csv
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header] if isinstance(r, dict) else r)


def row(oid, **kw):
    d = {"Object ID": str(oid), "Is Public Domain": "True", "Department": "European Paintings",
         "Classification": "Paintings", "Object Name": "Painting", "Artist Display Name": "Someone",
         "Object Begin Date": "1700", "Object End Date": "1710", "Title": "Untitled"}
    d.update({k.replace("_", " "): v for k, v in kw.items()})
    return d


def test_hostile_rows_select_exactly_the_right_ids(tmp_path):
    p = tmp_path / "MetObjects.csv"
    rows = [
        row(1, Title='Portrait, "the elder",\nsecond line\r\nthird'),       # keep
        row(2, Is_Public_Domain="False"),                                    # not PD
        row(3, Is_Public_Domain="true", Department="european PAINTINGS"),   # keep (case)
        row(4, Classification="Paintings-Canvas"),                           # keep (sub-class)
        row(5, Classification="Prints|Paintings"),                          # keep (one of a list)
        row(6, Classification="Paintingsque"),                               # not a painting
        row(7, Object_Begin_Date="", Object_End_Date=""),                    # no dates
        row(8, Object_Begin_Date="-300", Object_End_Date="1650"),            # overlaps 1600..1800
        row(9, Artist_Display_Name="   "),                                   # no artist
        row(10, Department="Drawings and Prints"),                            # other department
        row(11, Object_Begin_Date="ca. 1700"),                                # not a year
        row(12, Object_End_Date="1590", Object_Begin_Date="1500"),            # before the range
        row(1, Title="a repeated id"),                                        # duplicate of 1
        row(13, Medium="x" * 200_000),                                        # a very long field
    ]
    write_rows(p, rows)
    with open(p, "a", encoding="utf-8", newline="") as f:
        f.write("\r\n")                                                       # blank line
        f.write('"too","few","fields"\r\n')                                   # unusable row
        f.write(",".join("abc" if c == "Object ID" else "" for c in H) + "\r\n")  # bad id
    assert p.read_bytes().startswith(b"\xef\xbb\xbf")
    flt = CatalogFilter(public_domain=True, departments=department_names(["11"]),
                        classifications=("paintings",), date_begin=1600, date_end=1800, has_artist=True)
    sel = select_ids(p, flt)
    assert sel.ids.tolist() == [1, 3, 4, 5, 8, 13]
    assert sel.departments[:2] == ["European Paintings", "european PAINTINGS"]  # as the file says
    assert sel.stats.rows == 16 and sel.stats.bad_rows == 2 and sel.stats.matched == 7
    # no filter: every usable row, each id once
    assert len(select_ids(p, CatalogFilter()).ids) == 13
    # object name and limit (reading stops)
    assert select_ids(p, CatalogFilter(object_names=("PAINTING",), limit=2)).ids.tolist() == [1, 2]


def reference(rows, flt: CatalogFilter) -> list:
    """The same selection computed on the generator's dicts, without any CSV parsing."""
    out, seen = [], set()
    for r in rows:
        if flt.public_domain and r["Is Public Domain"].lower() != "true":
            continue
        if flt.departments and r["Department"].lower() not in {d.lower() for d in flt.departments}:
            continue
        if flt.classifications and not any(
                part == c.lower() or part.startswith(c.lower() + "-")
                for part in r["Classification"].lower().split("|") for c in flt.classifications):
            continue
        if flt.object_names and r["Object Name"].lower() not in {n.lower() for n in flt.object_names}:
            continue
        if flt.date_begin is not None:
            try:
                b, e = int(r["Object Begin Date"]), int(r["Object End Date"])
            except ValueError:
                continue
            if e < flt.date_begin or b > flt.date_end:
                continue
        if flt.has_artist and not r["Artist Display Name"].strip():
            continue
        if int(r["Object ID"]) not in seen:
            seen.add(int(r["Object ID"]))
            out.append(int(r["Object ID"]))
    return out


@pytest.mark.parametrize("flt", [
    CatalogFilter(public_domain=True, classifications=("Paintings",)),
    CatalogFilter(departments=("Drawings and Prints", "asian art"), object_names=("Print",), has_artist=True),
    CatalogFilter(public_domain=True, date_begin=-500, date_end=1600),
    CatalogFilter(classifications=("Prints",)),
    CatalogFilter(),
])
def test_generated_catalogue_matches_the_reference(tmp_path, flt):
    p = tmp_path / "MetObjects.csv"
    make_catalog.write_catalog(p, 4000, seed=3)
    want = reference(make_catalog.make_rows(4000, seed=3), flt)
    sel = select_ids(p, flt)
    assert sel.ids.tolist() == want and len(want) > 0
    assert sel.stats.rows == 4000 and sel.stats.bad_rows == 0


def test_refuses_a_file_that_is_not_the_catalogue(tmp_path):
    p = tmp_path / "other.csv"
    write_rows(p, [["1", "x"]], header=["Object Number", "Title"])
    with pytest.raises(CatalogError, match="no 'Object ID' column"):
        select_ids(p, CatalogFilter())
    q = tmp_path / "few.csv"
    write_rows(q, [["1"]], header=["Object ID"])
    with pytest.raises(CatalogError, match="'Is Public Domain'"):
        select_ids(q, CatalogFilter(public_domain=True))
    assert select_ids(q, CatalogFilter()).ids.tolist() == [1]
    with pytest.raises(CatalogError, match="not found"):
        select_ids(tmp_path / "missing.csv", CatalogFilter())
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CatalogError, match="empty"):
        select_ids(empty, CatalogFilter())


def test_department_names_from_ids_and_names():
    assert department_names(["11", "drawings and prints", "11"]) == ("European Paintings", "Drawings and Prints")
    with pytest.raises(ValueError, match="known:"):
        department_names(["Armour"])
