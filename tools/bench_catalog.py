#!/usr/bin/env python3
"""MetObjects.csv selection: rows/s, peak RSS on a full-size catalogue, API requests saved.

Writes a synthetic 480,000-row catalogue (tools/make_catalog.py: the real header, BOM and
hostile fields, roughly the real department sizes) unless --catalog is given, then runs
each selection in a fresh subprocess and reports its peak resident memory (ru_maxrss)
next to a subprocess that only imports the same modules. "Requests saved" compares
`fetch --from-csv` (one record request per selected object) with listing the departments
the objects could be in and fetching every record there.

example:
  python tools/bench_catalog.py                     # generates /tmp/.../MetObjects.csv
  python tools/bench_catalog.py --catalog MetObjects.csv
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (what, catalogue filter as CatalogFilter kwargs, departments a listing would have to cover)
SCENARIOS = [
    ("public-domain paintings with an artist, any department",
     {"public_domain": True, "classifications": ("Paintings",), "has_artist": True},
     None),  # None: every department holding a painting
    ("European Paintings, public domain",
     {"public_domain": True, "departments": ("European Paintings",)}, ("European Paintings",)),
    ("public-domain drawings dated 1500-1800 in Drawings and Prints",
     {"public_domain": True, "departments": ("Drawings and Prints",), "classifications": ("Drawings",),
      "date_begin": 1500, "date_end": 1800}, ("Drawings and Prints",)),
    ("no filter: every id (memory worst case)", {}, None),
]

CHILD = r"""
import json, resource, sys, time
from metfaces_build.met.catalog import CatalogFilter, iter_catalog, select_ids, CatalogStats
mode, path, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
out = {}
t0 = time.perf_counter()
if mode == "select":
    sel = select_ids(path, CatalogFilter(**kw))
    out = {"rows": sel.stats.rows, "selected": int(len(sel.ids)), "bad_rows": sel.stats.bad_rows}
elif mode == "departments":  # rows per department, and departments holding the classification
    from collections import Counter
    rows, holding = Counter(), set()
    flt = CatalogFilter(**kw)
    for _, dep in iter_catalog(path, CatalogFilter()):
        rows[dep] += 1
    for _, dep in iter_catalog(path, flt):
        holding.add(dep)
    out = {"rows": dict(rows), "holding": sorted(holding)}
out["seconds"] = time.perf_counter() - t0
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(mode: str, path: str, kw: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), json.dumps(kw)], cwd=REPO, env=env,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", help="an existing MetObjects.csv (default: generate one)")
    ap.add_argument("--rows", type=int, default=480_000, help="rows to generate (default: %(default)s)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.catalog
        if not path:
            sys.path.insert(0, str(REPO / "tools"))
            from make_catalog import write_catalog
            path = os.path.join(tmp, "MetObjects.csv")
            write_catalog(path, a.rows)
        size_mb = os.path.getsize(path) / 1e6
        base = child("select", path, {"limit": 1})  # interpreter + numpy + csv, one row read
        print(f"catalogue: {path} ({size_mb:.0f} MB)")
        print(f"baseline process (imports, one row): peak RSS {base['maxrss_mb']:.0f} MB")
        print("| selection | rows read | selected | rows/s | peak RSS MB | records via listing | "
              "records via CSV | requests saved |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for what, kw, deps in SCENARIOS:
            sel = child("select", path, kw)
            counts = child("departments", path, {k: v for k, v in kw.items() if k == "classifications"})
            deps = deps or counts["holding"]
            listed = sum(counts["rows"].get(d, 0) for d in deps)
            via_listing = listed + 1  # one /objects?departmentIds=... listing, then every record
            saved = via_listing - sel["selected"]
            print(f"| {what} | {sel['rows']} | {sel['selected']} | {sel['rows'] / sel['seconds']:,.0f} | "
                  f"{sel['maxrss_mb']:.0f} | {via_listing} ({len(deps)} departments) | {sel['selected']} | "
                  f"{saved} ({via_listing / max(1, sel['selected']):.1f}x fewer) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
