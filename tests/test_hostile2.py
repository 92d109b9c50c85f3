"""Hostile inputs, round 2 (issue 18): one bad answer never stops a run, one bad character
never blocks the dataset, small input never costs unbounded memory or time.

Network cases run against fake servers on loopback (test_hostile.FakeServer); work-file
cases against hand-damaged copies of a small work directory. Each test names the finding
(1-9) it covers; the property tests at the end drive the readers with random input.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from conftest import REPO
from test_hostile import FAST, FakeServer, fetch, journal, serve_image
from test_hostile import srv  # noqa: F401 - the fixture

DEEP = b'{"message":' + b"[" * 60_000 + b"]" * 60_000 + b"}"


# ---- 1. one hostile answer never stops the fetch ------------------------------------------

def test_deeply_nested_error_bodies_are_that_objects_failure(cli, tmp_path, srv):
    serve_image(srv)
    srv.routes["/api/objects/15"] = (404, {"Content-Type": "application/json"}, DEEP)
    srv.routes["/api/objects/16"] = (400, {"Content-Type": "application/json"}, DEEP)
    srv.obj(17, f"{srv.base}/img/deep.jpg")  # the image answers a deep 404 too
    srv.routes["/img/deep.jpg"] = (404, {"Content-Type": "application/json"}, DEEP)
    srv.obj(14, f"{srv.base}/img/ok.jpg")
    srv.obj(18, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "14,15,16,17,18")
    rows = journal(work)
    assert rc == 1 and sorted(rows) == [14, 15, 16, 17, 18]
    assert rows[15]["status"] == "not_found" and rows[15]["reason"] == "HTTP 404: (no message)"
    assert rows[16]["status"] == "http_error" and "(no message)" in rows[16]["reason"]
    assert rows[17]["status"] == "not_found"
    assert rows[14]["status"] == rows[18]["status"] == "ok"


def test_error_message_is_read_with_the_guarded_reader():
    from metfaces_build.met.client import _message
    assert _message(DEEP) == "(no message)"
    assert _message(b'{"message":"Not a valid object"}') == "Not a valid object"
    assert _message(b'{"message":"\\ud800 gone"}') == "\ufffd gone"
    assert _message(b'{"message":' + b"7" * 5000 + b"}") == "(no message)"  # a 5000-digit int
    assert len(_message(json.dumps({"message": "x" * 10_000}).encode())) <= 203


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0), ("-5", 0.0), ("nan", None), ("soon", None), ("", None),
    ("1e999", 1e9), ("99999999999999999999999999", 1e9),
    ("Mon, 1 Jan 1 0:0:0 +9999999999999999999", 1e9),      # OverflowError on today's main
    ("Fri, 31 Dec 9999 23:59:59 GMT", 1e9), ("Mon, 1 Jan 1990 0:0:0 GMT", 0.0),
])
def test_retry_after_is_finite_and_bounded(value, expected):
    from metfaces_build.met.client import parse_retry_after
    got = parse_retry_after(value, now=1_700_000_000)
    assert got == expected


def test_absurd_retry_after_fails_the_object_and_the_run_goes_on(tmp_path, srv):
    """503 with an overflowing date, 429 with 10^20 seconds: each object fails at once
    (not after years of sleep), the others are fetched. A subprocess, with a timeout: on
    a build that honours the header the run would sleep for the cap (600 s)."""
    serve_image(srv)
    srv.routes["/api/objects/15"] = (503, {"Content-Type": "text/plain",
                                           "Retry-After": "Mon, 1 Jan 1 0:0:0 +9999999999999999999"}, b"busy")
    srv.routes["/api/objects/16"] = (503, {"Content-Type": "text/plain",
                                           "Retry-After": "100000000000000000000"}, b"busy")
    srv.obj(14, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "metfaces_build", "fetch", "--work", str(work), "--api", srv.api,
                        "--ids", "14,15,16", *FAST, "--max-outage", "5"],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert time.monotonic() - t0 < 30 and "Traceback" not in p.stderr
    rows = journal(work)
    assert p.returncode == 1 and rows[14]["status"] == "ok"
    for oid in (15, 16):
        assert rows[oid]["status"] == "http_error" and "beyond --max-outage" in rows[oid]["reason"]


# ---- 2. text that cannot be written as JSON / UTF-8 ------------------------------------------

def test_lone_surrogates_and_huge_floats_are_cleaned_where_json_is_read():
    from metfaces_build.infra.files import loads
    got = loads(b'{"t":"a\\ud800b","a":1e999,"k\\udc00":["\\uDFFF"],"ok":"\\ud83d\\ude00","n":-1e999}')
    assert got == {"t": "a\ufffdb", "a": None, "k\ufffd": ["\ufffd"], "ok": "\U0001F600", "n": None}
    json.dumps(got, ensure_ascii=False).encode("utf-8")  # writable anywhere


def test_lone_surrogate_title_and_inf_artist_fetch_and_dry_run(cli, tmp_path, srv):
    serve_image(srv)
    raw = (b'{"objectID":1,"isPublicDomain":true,"primaryImage":"' + srv.base.encode()
           + b'/img/ok.jpg","title":"Saint \\ud800 Anne","artistDisplayName":1e999,'
           + b'"department":"Dept \\udc00"}')
    srv.json("/api/objects/1", None, raw=raw)
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    row = journal(work)[1]
    assert rc == 0 and row["status"] == "ok"
    assert row["title"] == "Saint \ufffd Anne" and row["artist"] == "" and row["department"] == "Dept \ufffd"
    # a journal written before this fix holds the escape itself: still printable
    (work / "objects.jsonl").write_text('{"id":1,"status":"ok","department":"Dept \\udc00"}\n')
    rc, out, err = cli("fetch", "--work", work, "--api", srv.api, "--ids", "1", "--dry-run", "--recheck")
    assert rc == 0 and "Traceback" not in err and "Dept \ufffd" in out


# ---- 3. text fields are capped where records enter ---------------------------------------

def test_huge_title_is_capped_and_kept_once(cli, tmp_path, srv):
    from metfaces_build.core.records import MAX_TEXT
    serve_image(srv)
    title = "T" * (3 << 20)
    srv.obj(1, f"{srv.base}/img/ok.jpg", title=title, artistDisplayName="A" * (1 << 20))
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    row = journal(work)[1]
    assert rc == 0 and row["status"] == "ok"
    assert row["title"] == "T" * MAX_TEXT and row["artist"] == "A" * MAX_TEXT
    assert row["clipped"] == {"title": f"first {MAX_TEXT} of {3 << 20} characters kept",
                              "artist": f"first {MAX_TEXT} of {1 << 20} characters kept"}
    assert (work / "objects.jsonl").stat().st_size < 4 * MAX_TEXT
    assert json.loads((work / "api" / "1.json").read_bytes())["title"] == title  # the raw record, once


def test_huge_image_url_is_refused_not_cut(cli, tmp_path, srv):
    serve_image(srv)
    srv.obj(1, f"{srv.base}/img/ok.jpg?" + "x" * 10_000)
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    row = journal(work)[1]
    assert row["status"] == "refused" and "image URL of 10" in row["reason"]
    assert not any(p.startswith("/img/") for p in srv.paths())


def test_huge_image_url_in_an_update_keeps_the_earlier_original(cli, tmp_path, srv):
    serve_image(srv)
    srv.obj(1, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    assert rc == 0 and (work / "originals" / "1.jpg").is_file()
    srv.obj(1, f"{srv.base}/img/ok.jpg?" + "x" * 10_000)
    srv.json("/api/objects", {"total": 1, "objectIDs": [1]})  # the --since listing
    rc, out, err = fetch(cli, work, srv, "--since", "2020-01-01")
    row = journal(work)[1]
    assert row["status"] == "ok" and "image URL of 10" in row["refresh_error"]
    assert (work / "originals" / "1.jpg").is_file()


def test_face_records_cap_their_text_fields():
    from synthfaces import face_json, place
    from metfaces_build.core.records import MAX_TEXT, FaceRecord
    d = face_json("1", 0, place(80, 200, 200))
    d["title"] = "x" * (MAX_TEXT + 5)
    rec = FaceRecord.from_json(d)
    assert rec.title == "x" * MAX_TEXT
    assert rec.extra["clipped"] == {"title": f"first {MAX_TEXT} of {MAX_TEXT + 5} characters kept"}


# ---- 7. a trickling server is bounded by the total time per request -------------------------

def test_trickling_image_is_stopped_at_the_total_time_bound(cli, tmp_path, srv):
    data = b"\xff\xd8\xff" + bytes(200)
    srv.routes["/img/slow.jpg"] = _trickle_route(data, 0.1)
    srv.obj(1, f"{srv.base}/img/slow.jpg")
    work = tmp_path / "w"
    t0 = time.monotonic()
    # --timeout 0.3: no gap between bytes reaches it; the request may take 10 x 0.3 = 3 s
    rc, out, err = cli("fetch", "--work", work, "--api", srv.api, "--ids", "1", "--quiet", "--rate", "500",
                       "--timeout", "0.3", "--retries", "0", "--max-outage", "5")
    took = time.monotonic() - t0
    row = journal(work)[1]
    assert row["status"] == "http_error" and "the most one request may take" in row["reason"], row
    assert took < 12  # 200 bytes at 10/s would take 20 s
    assert list((work / "originals").iterdir()) == []


def test_total_time_bound_is_a_client_setting(srv):
    from metfaces_build.met.client import ClientConfig, FetchFailure, MetClient
    srv.routes["/api/objects/1"] = _trickle_route(b'{"objectID": 1, "title": "' + b"x" * 200 + b'"}', 0.05,
                                                   ctype="application/json")
    client = MetClient(ClientConfig(api_root=srv.api, timeout=5, total_timeout=1, retries=0, rate=100))
    t0 = time.monotonic()
    with pytest.raises(FetchFailure, match="after 1 s, the most one request may take"):
        client.get_object(1)
    assert time.monotonic() - t0 < 5
    client.close()


def _trickle_route(data: bytes, gap: float, ctype: str = "image/jpeg"):
    """A route sending `data` one byte every `gap` seconds (stops when the client hangs up)."""
    def route(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for i in range(len(data)):
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                time.sleep(gap)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return None
    return route


# ---- 5. crops are decoded with the pixel guard ----------------------------------------------

def png_header_bomb(path: Path, w: int = 12000, h: int = 12000) -> Path:
    """A valid 1-bit PNG of w x h black pixels: ~20 KB on disk, 432 MB as RGB."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes((w + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_verify_and_compare_refuse_a_pixel_bomb_from_the_header(tmp_path):
    from metfaces_build.stages.compare import CropPair, compare_crop_pair
    from metfaces_build.stages.verify import VerifyTask, verify_crop
    bomb = png_header_bomb(tmp_path / "1-00.png")
    assert bomb.stat().st_size < 200_000
    res = verify_crop(VerifyTask("1", 0, "0" * 32, str(bomb), ""))
    assert res.status == "unreadable" and "exceeds the limit" in res.reason and "a crop is at most" in res.reason
    diff = compare_crop_pair(CropPair("1-00.png", str(bomb), str(bomb)))
    assert diff.status == "unreadable" and "exceeds the limit" in diff.reason


# ---- 6. the catalogue: huge ids, huge years, huge fields, a stray quote -------------------

CSV_HEADER = '"Object ID","Is Public Domain","Department","Object Begin Date","Object End Date"\n'


def test_catalogue_counts_huge_numbers_as_bad_rows(tmp_path):
    from metfaces_build.met.catalog import CatalogFilter, select_ids
    p = tmp_path / "MetObjects.csv"
    p.write_text(CSV_HEADER
                 + "1,True,Paintings,1800,1810\n"
                 + "99999999999999999999,True,Paintings,1800,1810\n"       # > int64: OverflowError
                 + "7" * 5000 + ",True,Paintings,1800,1810\n"              # > 4300 digits: ValueError
                 + "3,True,Paintings," + "9" * 5000 + ",1810\n"            # a 5000-digit year
                 + "4,True,Paintings,1700,1720\n")
    sel = select_ids(p, CatalogFilter(date_begin=1700, date_end=1900))
    assert sel.ids.tolist() == [1, 4]
    assert sel.stats.rows == 5 and sel.stats.bad_rows == 2
    assert "line 3: Object ID '999" in sel.stats.bad_examples[0]


def test_catalogue_bounds_the_field_size(cli, tmp_path, srv):
    """A 2 MiB field is refused (one row of 20 such fields would cost hundreds of MB)."""
    from metfaces_build.met.catalog import FIELD_LIMIT
    assert FIELD_LIMIT <= 1 << 20
    p = tmp_path / "MetObjects.csv"
    p.write_text(CSV_HEADER + '1,True,"' + "x" * (2 << 20) + '",1800,1810\n')
    rc, out, err = cli("fetch", "--work", tmp_path / "w", "--api", srv.api, "--from-csv", p, "--dry-run")
    assert rc == 2 and "Traceback" not in err
    assert f"line 2: field larger than field limit ({FIELD_LIMIT})" in err and str(p) in err


def test_catalogue_stray_quote_is_warned_with_its_line(cli, tmp_path, srv):
    p = tmp_path / "MetObjects.csv"
    rows = [f"{i},True,Paintings,1800,1810\n" for i in range(1, 1001)]
    rows[2] = '3,True,"Paintings,1800,1810\n'  # never closed: swallows the rest of the file
    p.write_text(CSV_HEADER + "".join(rows))
    rc, out, err = cli("fetch", "--work", tmp_path / "w", "--api", srv.api, "--from-csv", p,
                       "--dry-run", "--quiet")
    assert rc == 0 and "Traceback" not in err
    assert "warning: MetObjects.csv: the row starting at line 4 spans 998 lines (a stray quote?)" in err


# ---- 8. damaged work files -------------------------------------------------------------------

@pytest.fixture(scope="module")
def review_base(tmp_path_factory):
    """make_review_work's directory (filter and compare run), once per module."""
    from metfaces_build.app.cli import main
    from test_review import make_review_work

    def cli(*argv):
        return main([str(a) for a in argv]), "", ""
    return make_review_work(tmp_path_factory.mktemp("base"), cli)


@pytest.fixture
def rwork(review_base, tmp_path):
    w = tmp_path / "work"
    shutil.copytree(review_base, w)
    return w


def _files(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if "report" not in p.parts}


@pytest.mark.parametrize("change", [{"reasons": None}, {"reasons": [1, 2]}, {"image_problems": 5},
                                    {"overrides": "x"}, {"kept": "many", "config": []}])
def test_damaged_filter_summary_is_refiltered_or_read_as_empty(cli, rwork, change):
    from test_review import FILTER_FLAGS
    from metfaces_build.app.run import summarize_work
    from metfaces_build.infra.workdir import Work
    rc, _, err = cli("filter", "--work", rwork, *FILTER_FLAGS)  # in place: up to date
    assert rc == 0
    fs = rwork / "filter_summary.json"
    fs.write_text(json.dumps({**json.loads(fs.read_text()), **change}))
    rows = summarize_work(Work(rwork), {})           # run's closing table
    assert [r.name for r in rows][:3] == ["fetch", "detect", "filter"]
    rc, out, err = cli("review", "--work", rwork, "--quiet")
    assert rc == 0 and "Traceback" not in err
    rc, out, err = cli("filter", "--work", rwork, *FILTER_FLAGS)
    assert rc == 0 and "Traceback" not in err and "up to date" not in err
    assert json.loads(fs.read_text())["reasons"] == {"resolution": 2, "score": 1}  # refiltered


def test_overrides_faces_list_and_rejected_rows_of_wrong_shape(cli, rwork):
    from test_review import FILTER_FLAGS
    (rwork / "overrides.json").write_text('{"faces": ["100-00"]}')
    lines = (rwork / "rejected.jsonl").read_text().splitlines()
    bad = json.loads(lines[0])
    bad.update(values=[5], reasons="abc", limits=7)
    lines[0] = json.dumps(bad)
    lines.append(json.dumps({"obj_id": "101", "face_idx": [0]}))
    (rwork / "rejected.jsonl").write_text("\n".join(lines) + "\n")
    before = _files(rwork)
    rc, out, err = cli("review", "--work", rwork, "--quiet")
    assert rc == 0 and "Traceback" not in err
    rc, out, err = cli("filter", "--work", rwork, *FILTER_FLAGS)
    assert rc == 2 and "overrides.json" in err and "Traceback" not in err
    assert before <= _files(rwork)


@pytest.mark.parametrize("name", ["faces.json", "filtered.json", "filter_cache.json", "rejected.jsonl",
                                  "objects.jsonl", "detect.jsonl", "filter_summary.json",
                                  "overrides.json", "compare_faces.jsonl"])
def test_a_directory_in_place_of_a_work_file(cli, rwork, name):
    from test_review import FILTER_FLAGS
    p = rwork / name
    if p.exists():
        p.unlink()
    p.mkdir()
    (p / "keep.txt").write_text("mine")
    for argv in (("filter", "--work", rwork, *FILTER_FLAGS), ("review", "--work", rwork, "--quiet"),
                 ("export", "--work", rwork, "--out", rwork / "x.zip", "--quiet")):
        rc, out, err = cli(*argv)
        assert "Traceback" not in err and rc in (0, 1, 2), (argv[0], err)
        if rc == 2:
            assert len(err.strip().splitlines()) == 1 and "error:" in err, err
    assert (p / "keep.txt").read_text() == "mine"  # nothing deleted


def test_damaged_detect_journal_line_is_detected_again_not_a_crash(tmp_path):
    from metfaces_build.infra.workdir import Work
    from metfaces_build.stages.detect import face_changes, reusable_detections
    good = {"source_path": "originals/1.png", "obj_id": "1", "status": "ok", "settings": {"d": 1},
            "faces": [{"obj_id": "1", "face_idx": 0, "face_spec": {}}]}
    bad = {**good, "source_path": "originals/2.png", "obj_id": "2", "faces": [5]}
    worse = {**good, "source_path": "originals/3.png", "obj_id": "3", "faces": 5}
    keep = reusable_detections([good, bad, worse], ["originals/1.png", "originals/2.png", "originals/3.png"],
                               {"d": 1})
    assert list(keep) == ["originals/1.png"]
    assert face_changes([bad, worse], [good])[0] == {"added": 1, "removed": 0, "moved": 0}
    (tmp_path / "detect.jsonl").write_text("\n".join(json.dumps(r) for r in (good, bad, worse)) + "\n")
    assert Work(tmp_path).face_count() == 2


# ---- 9. duplicate keys in overrides.json ----------------------------------------------------

def test_duplicate_decisions_in_overrides_are_warned(cli, rwork):
    from test_review import FILTER_FLAGS
    (rwork / "overrides.json").write_text('{"faces": {"101-00": "keep", "101-00": "reject"}}')
    rc, out, err = cli("filter", "--work", rwork, *FILTER_FLAGS)
    assert rc == 0 and "names '101-00' more than once: the last decision for each was used" in err


# ---- 4. the review page: every value escaped, a CSP, "__proto__" a department -------------

XSS = '<img src=x onerror="window.pwned=1">'


def test_review_page_escapes_every_value_and_forbids_inline_handlers(rwork):
    from metfaces_build.infra.headless import Browser, find_chromium
    from metfaces_build.stages import review
    if not find_chromium():
        if os.environ.get("METFACES_REQUIRE_BROWSER") == "1":
            pytest.fail("METFACES_REQUIRE_BROWSER=1 but no Chromium found")
        pytest.skip("no Chromium found")
    kept = json.loads((rwork / "filtered.json").read_text())
    for f in kept:
        f["filter"].update(sharpness=XSS, qsize=XSS)
    f0 = kept[0]
    f0["detector"], f0["score"] = XSS, XSS
    (rwork / "filtered.json").write_text(json.dumps(kept))
    rows = [json.loads(line) for line in (rwork / "rejected.jsonl").read_text().splitlines()]
    for r in rows:
        r["values"]["sharpness"] = XSS
        r["limits"] = {t: XSS for t in r["reasons"]}
    (rwork / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    objs = [json.loads(line) for line in (rwork / "objects.jsonl").read_text().splitlines()]
    for o in objs:
        if o["id"] == 104:  # no stored API record: objects.jsonl names its department
            o["department"] = "__proto__"
    (rwork / "objects.jsonl").write_text("".join(json.dumps(o) + "\n" for o in objs))
    page_path = review.write_review(rwork).page
    html = page_path.read_text()
    assert "Content-Security-Policy" in html and "'unsafe-inline'" not in html.split("script-src")[1].split(";")[0]
    with Browser.launch() as b:
        p = b.new_page()
        p.goto(page_path.resolve().as_uri())
        assert p.eval("document.body.dataset.ready") == "1"
        p.eval("window.scrollTo(0, document.body.scrollHeight)")
        p.press("ArrowRight")
        p.press("Enter")  # the open card's table shows every measure
        time.sleep(0.3)
        assert p.eval("window.pwned === undefined")
        assert p.eval("document.querySelectorAll('#grid img[src=\"x\"], #info img[src=\"x\"]').length") == 0
        assert XSS in p.eval("document.getElementById('grid').textContent")
        depts = p.eval("[...document.getElementById('f-dept').options].map(o => o.value)")
        assert "__proto__" in depts
        # the CSP itself: a handler that reached the DOM anyway does not run
        p.eval("document.body.insertAdjacentHTML('beforeend', '<img src=\"nowhere.png\" onerror=\"window.ran=1\">')")
        time.sleep(0.5)
        assert p.eval("window.ran === undefined")
        b.send("Target.closeTarget", {"targetId": p.target})


# ---- done when: one department, three hostile objects, `run` then `export` ------------------

class HostileProxy(FakeServer):
    """Loopback proxy to the emulator: `routes` answer as in FakeServer, everything else
    is forwarded (with our Host header, so record URLs point back here), and `edit[path]`
    rewrites a forwarded body."""

    def __init__(self, upstream: str):
        super().__init__()
        self.edit: dict = {}
        fallback = self.httpd.RequestHandlerClass.do_GET

        def do_get(handler):
            path = handler.path.split("?", 1)[0]
            if path in self.routes:
                return fallback(handler)
            import urllib.error
            import urllib.request
            req = urllib.request.Request(upstream + handler.path, headers={"Host": handler.headers["Host"]})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
            except urllib.error.HTTPError as e:
                status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
            if path in self.edit:
                body = self.edit[path](body)
            handler.send_response(status)
            handler.send_header("Content-Type", ctype)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        self.httpd.RequestHandlerClass.do_GET = do_get


def _odd_record(body: bytes) -> bytes:
    d = json.loads(body)
    d["title"], d["artistDisplayName"] = "@T@", "@A@"
    return (json.dumps(d).replace('"@T@"', '"Saint \\ud800 Catherine"').replace('"@A@"', "1e999")).encode()


def test_run_with_three_hostile_objects_then_export(cli, tmp_path):
    import zipfile

    from metfaces_build.met.emulator import start_emulator
    deep, busy, odd = 436001, 436008, 436043  # department 11, European Paintings, all with faces
    with start_emulator() as emu:
        proxy = HostileProxy(emu.url)
        try:
            prefix = emu.api_root[len(emu.url):]  # /public/collection/v1
            api = proxy.base + prefix
            proxy.json(f"{prefix}/objects", {"total": 3, "objectIDs": [deep, busy, odd]})
            proxy.routes[f"{prefix}/objects/{deep}"] = (404, {"Content-Type": "application/json"}, DEEP)
            proxy.routes[f"{prefix}/objects/{busy}"] = (
                503, {"Content-Type": "text/html", "Retry-After": "Mon, 1 Jan 1 0:0:0 +9999999999999999999"},
                b"<html>busy</html>")
            proxy.edit[f"{prefix}/objects/{odd}"] = _odd_record
            work = tmp_path / "w"
            max_outage = 60
            t0 = time.monotonic()
            rc, out, err = cli("run", "--work", work, "--api", api, "--departments", "11", "--quiet",
                               "--workers", "2", "--rate", "100", "--retries", "2", "--backoff-base", "0.01",
                               "--backoff-max", "0.02", "--max-outage", max_outage)
            took = time.monotonic() - t0
        finally:
            proxy.close()
    assert "Traceback" not in err and took < max_outage, (took, err)
    rows = journal(work)
    assert rows[deep]["status"] == "not_found" and rows[busy]["status"] == "http_error"
    assert "beyond --max-outage" in rows[busy]["reason"]
    # 1e999 reads as null, so the artist comes from the record's constituents (as the Met's)
    assert rows[odd]["status"] == "ok" and rows[odd]["title"] == "Saint \ufffd Catherine" \
        and rows[odd]["artist"] == "Gilbert Stuart"
    assert (work / "report" / "review.html").is_file()
    assert "Saint \ufffd Catherine" in (work / "report" / "review.html").read_text(encoding="utf-8")
    rc, out, err = cli("export", "--work", work, "--out", tmp_path / "faces.zip", "--quiet")
    assert rc == 0 and "Traceback" not in err, err
    with zipfile.ZipFile(tmp_path / "faces.zip") as z:
        meta = json.loads(z.read("metfaces-export.json"))
        assert [(i["crop"], i["title"]) for i in meta["images"]] == [(f"{odd}-00.png", "Saint \ufffd Catherine")]
        assert meta["images"][0]["file"] in z.namelist()


# ---- property tests: random and mutated input to every reader -------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# text with lone surrogates, NUL, U+2028 and markup; numbers that overflow or are huge
ODD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["\ud800", "a\udfffb", "</script>", XSS, "__proto__", "\u2028", "\x00", "-" * 5000])
BIG = "@5000 digits@"  # _dump writes it as a 5000-digit number (hypothesis cannot print one)
ODD_NUMBER = st.sampled_from([float("inf"), float("-inf"), float("nan"), BIG, -1, 2 ** 64, 1e308]) \
    | st.integers() | st.floats()
JSON = st.recursive(st.none() | st.booleans() | ODD_NUMBER | ODD_TEXT,
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(ODD_TEXT, kids, max_size=4),
                    max_leaves=12)
FAST_PROPS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _dump(v) -> bytes:
    """JSON text as a hostile server writes it: surrogates escaped, Infinity, NaN, 10^5000."""
    return json.dumps(v).replace(json.dumps(BIG), "9" * 5000).encode()


def _mutate(data: bytes, cuts: list) -> bytes:
    for pos, what in cuts:
        pos = pos % (len(data) + 1)
        data = data[:pos] + what + data[pos + len(what) // 2:]
    return data


MUTATIONS = st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(
    [b"[", b"]", b"{", b'"', b"\\ud800", b"1e999", b"NaN", b"\xff", b",", b"\x00", b"9" * 5000])), max_size=4)


@FAST_PROPS
@given(JSON, MUTATIONS)
def test_api_answer_readers_never_raise_anything_but_valueerror(value, cuts):
    from metfaces_build.met.client import _message, decode_json, parse_object_ids
    raw = _mutate(_dump(value), cuts)
    for body in (raw, b'{"message":' + raw + b"}", b'{"objectIDs":' + raw + b"}"):
        msg = _message(body)
        assert isinstance(msg, str) and len(msg) <= 203
        msg.encode("utf-8")
        try:
            data = decode_json(body)
        except ValueError:
            continue
        json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")  # writable anywhere
        try:
            ids = parse_object_ids(data)
        except ValueError:
            continue
        assert all(isinstance(i, int) and 0 < i < 2 ** 63 for i in ids)


@FAST_PROPS
@given(st.text(max_size=60) | st.sampled_from(["Mon, 1 Jan 1 0:0:0 +9999999999999999999", "1e999", "-0",
                                                 "Fri, 31 Dec 9999 23:59:59 GMT", "9" * 5000]))
def test_retry_after_never_raises(value):
    from metfaces_build.met.client import parse_retry_after
    got = parse_retry_after(value)
    assert got is None or 0 <= got <= 1e9


@FAST_PROPS
@given(st.dictionaries(st.sampled_from(["title", "artistDisplayName", "department", "objectDate",
                                        "isPublicDomain", "primaryImage", "objectURL", "metadataDate"]),
                       JSON, max_size=8), MUTATIONS)
def test_object_records_always_become_a_writable_record(tmp_path_factory, fields, cuts):
    """Any record served for an object: fetch records it (ok or a failure), as UTF-8-safe
    JSON with every text field within MAX_TEXT."""
    from metfaces_build.core.records import MAX_TEXT
    from metfaces_build.met.client import ApiJson, FetchFailure, decode_json
    from metfaces_build.stages.fetch import fetch_object
    raw = _dump({"objectID": 7, **fields})
    raw = raw[:1] + _mutate(raw[1:], cuts) if cuts else raw
    try:
        data = decode_json(raw)
    except ValueError:
        return  # the client records this as bad_content before fetch_object sees it

    class Client:
        def get_object(self, oid):
            if not isinstance(data, dict) or data.get("objectID") != oid:
                raise FetchFailure("bad_content", "answer is for another object")
            return ApiJson(data, raw, 1)

        def download(self, url, folder, stem):
            raise FetchFailure("http_error", "no network here")
    work = tmp_path_factory.mktemp("w")
    (work / "api").mkdir()
    (work / "originals").mkdir()
    obj = fetch_object(Client(), work, 7)
    line = json.dumps(obj.to_json(), allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert obj.id == 7 and isinstance(obj.status, str)
    for k in ("title", "artist", "department", "date", "image_url"):
        assert isinstance(getattr(obj, k), str) and len(getattr(obj, k)) <= MAX_TEXT
    assert len(line) < 8 * MAX_TEXT * 4


WORK_FILES = ["faces.json", "filtered.json", "rejected.jsonl", "filter_summary.json", "overrides.json",
              "objects.jsonl", "compare.json", "compare_faces.jsonl", "filter_cache.json", "api/100.json",
              "detect.jsonl", "images/aligned.json"]


@pytest.fixture(scope="module")
def aligned_base(review_base, tmp_path_factory):
    """review_base plus 128 px crops of its kept faces (so export has something to read)."""
    from metfaces_build.app.cli import main
    w = tmp_path_factory.mktemp("aligned") / "work"
    shutil.copytree(review_base, w)
    assert main([str(a) for a in ("align", "--json", w / "filtered.json", "--source-images", w,
                                  "--output-dir", w / "images", "--size", 128, "--supersampling", 1,
                                  "--workers", 1)]) == 0
    return w


@st.composite
def damaged_file(draw):
    """(file name, new bytes): random JSON in place of the file, one value inside it
    replaced, or the bytes mutated."""
    name = draw(st.sampled_from(WORK_FILES))
    how = draw(st.sampled_from(["replace", "inner", "bytes"]))
    return name, how, draw(JSON), draw(MUTATIONS), draw(st.integers(0, 10 ** 6))


def _damage(path: Path, how: str, value, cuts, where: int) -> None:
    from metfaces_build.infra.files import loads
    old = path.read_bytes() if path.is_file() else b"{}"
    if how == "replace":
        path.write_bytes(_dump(value))
    elif how == "bytes":
        path.write_bytes(_mutate(old, cuts) if cuts else old[: where % (len(old) + 1)])
    else:  # one value somewhere inside the document (or inside one line of a journal)
        lines = old.splitlines() if path.suffix == ".jsonl" else [old]
        i = where % max(1, len(lines))
        try:
            doc = loads(lines[i]) if lines else {}
        except ValueError:
            doc = {}
        node, key = doc, None
        for step in range(1 + where % 4):
            kids = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
            if not kids:
                break
            key, child = kids[(where >> step) % len(kids)]
            if step == where % 4 or not isinstance(child, (dict, list)):
                break
            node = child
        if key is None:
            doc = value
        else:
            node[key] = value
        if lines:
            lines[i] = _dump(doc)
        else:
            lines = [_dump(doc)]
        path.write_bytes(b"\n".join(lines) + b"\n")


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(damaged_file())
def test_damaged_work_files_never_cost_a_traceback_or_a_file(aligned_base, tmp_path_factory, case):
    """Every reader of the work directory (review, report, run's table, the outcomes,
    filter, export) on a damaged file: it works or says one line (UsageError, exit 2); no
    other exception, no file lost."""
    from test_review import FILTER_FLAGS
    from metfaces_build.app.cli import main
    from metfaces_build.app.run import summarize_work
    from metfaces_build.core.errors import UsageError
    from metfaces_build.infra.workdir import Work
    from metfaces_build.stages import report, review
    name, how, value, cuts, where = case
    w = tmp_path_factory.mktemp("d") / "work"
    shutil.copytree(aligned_base, w)
    _damage(w / name, how, value, cuts, where)
    before = _files(w)
    for read in (lambda: review.render_page(review.collect(w, w, w / "report")),
                 lambda: report.filter_section(w, w / "report", None, 4),
                 lambda: report.compare_section(w, w / "report", None, 2),
                 lambda: summarize_work(Work(w), {}),
                 lambda: Work(w).outcomes()):
        try:
            read()
        except UsageError as e:
            assert "\n" not in str(e).strip() or name in str(e)
    for argv in (("export", "--work", w, "--out", w / "x.zip", "--quiet"),
                 ("filter", "--work", w, *FILTER_FLAGS)):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main([str(a) for a in argv])
        assert rc in (0, 1, 2) and "Traceback" not in err.getvalue()
    assert before <= _files(w)
