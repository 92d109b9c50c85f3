"""Hostile and careless inputs (issue 13): fake APIs on loopback and hand-made files.

Each test states the exact outcome: the status and reason recorded, the exit code, no
traceback, nothing written outside the work directory, journals complete.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO
from synthfaces import face_json, place, save_image, texture

from metfaces_build.infra.files import read_jsonl

FAST = ["--rate", "500", "--workers", "2", "--quiet", "--timeout", "5", "--retries", "2",
        "--backoff-base", "0.01", "--backoff-max", "0.02", "--cooldown", "0.05"]


# ---- a loopback server that answers from a table -----------------------------------------

class FakeServer:
    """Loopback HTTP server: `routes[path] = (status, headers, body)` or a callable
    `(handler) -> (status, headers, body)`; every request is logged as (path, headers)."""

    def __init__(self):
        self.routes: dict = {}
        self.log: list = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                server.log.append((self.path, dict(self.headers)))
                path = self.path.split("?", 1)[0]
                route = server.routes.get(path)
                if route is None:
                    status, headers, body = 404, {"Content-Type": "application/json"}, b'{"message":"Not a valid object"}'
                else:
                    answer = route(self) if callable(route) else route
                    if answer is None:  # the route wrote its answer itself (a trickle)
                        return
                    status, headers, body = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients hanging up on a refused body are expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.base}/api"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def paths(self) -> list:
        return [p for p, _ in self.log]

    def json(self, path: str, obj, raw: bytes = None, **headers):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.routes[path] = (200, {"Content-Type": "application/json", **headers}, body)

    def obj(self, oid: int, image_url: str, **extra):
        rec = {"objectID": oid, "isPublicDomain": True, "primaryImage": image_url,
               "primaryImageSmall": image_url, "title": f"object {oid}", "department": "Test",
               **extra}
        self.json(f"/api/objects/{oid}", rec)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def srv():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def srv2():
    s = FakeServer()
    yield s
    s.close()


def jpeg_bytes(w=64, h=48, seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture(seed, w, h)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(w=64, h=48, seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture(seed, w, h)).save(buf, "PNG")
    return buf.getvalue()


def serve_image(srv, path="/img/ok.jpg", data=None):
    data = data if data is not None else jpeg_bytes()
    srv.routes[path] = (200, {"Content-Type": "image/jpeg"}, data)
    return data


def journal(work: Path) -> dict:
    return {r["id"]: r for r in read_jsonl(work / "objects.jsonl")}


def fetch(cli, work, srv, *argv):
    rc, out, err = cli("fetch", "--work", work, "--api", srv.api, *argv, *FAST)
    assert "Traceback" not in err
    return rc, out, err


def fetch_object(cli, tmp_path, srv, url):
    """Object 15 with image `url`, fetched alone: (exit code, its journal row, work dir)."""
    srv.obj(15, url)
    work = tmp_path / "w"
    rc, _, _ = fetch(cli, work, srv, "--ids", "15")
    return rc, journal(work)[15], work


def files_under(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---- 1. the allow-list is checked on the URL the HTTP library sends ----------------------

def test_backslash_authority_never_reaches_the_other_port(cli, tmp_path, srv, srv2):
    serve_image(srv)
    serve_image(srv2)
    rc, row, work = fetch_object(cli, tmp_path, srv, f"http://127.0.0.1:{srv2.port}\\@127.0.0.1:{srv.port}/img/ok.jpg")
    assert rc == 1 and row["status"] == "refused" and "\\" in row["reason"]
    assert srv2.log == [] and "/img/ok.jpg" not in srv.paths()
    assert list((work / "originals").iterdir()) == []


def test_backslash_authority_in_a_redirect_is_refused(cli, tmp_path, srv, srv2):
    serve_image(srv2)
    srv.routes["/img/r.jpg"] = (302, {"Location": f"http://127.0.0.1:{srv2.port}\\@127.0.0.1:{srv.port}/img/ok.jpg"}, b"")
    rc, row, work = fetch_object(cli, tmp_path, srv, f"{srv.base}/img/r.jpg")
    assert rc == 1 and row["status"] == "refused" and row["reason"].startswith("redirected to a refused URL")
    assert srv2.log == []


@pytest.mark.parametrize("url", [
    "https://attacker.example\\@images.metmuseum.org/x.jpg",
    "https://attacker.example%5C@images.metmuseum.org/x.jpg",
    "https://user:pw@images.metmuseum.org/x.jpg",
    "https://images.metmuseum.org@attacker.example/x.jpg",
    "https://images.metmuseum.org\t.attacker.example/x.jpg",
    "https://images.metmuseum.org:443@attacker.example/x.jpg",
    "http://images.metmuseum.org:99999/x.jpg",
    " https://attacker.example/x.jpg",
])
def test_url_check_agrees_with_requests(url):
    import requests
    from urllib3.util import parse_url

    from metfaces_build.met.client import image_url_problem
    why = image_url_problem(url, "http://127.0.0.1:8000/api")
    try:
        sent = parse_url(requests.Request("GET", url).prepare().url)
        goes_to = (sent.host, sent.port, sent.auth)
    except Exception:  # requests cannot send it at all
        goes_to = None
    assert why is not None, f"{url!r} passes the check but requests sends it to {goes_to}"


def test_userinfo_is_refused_and_never_sent_as_basic_auth(cli, tmp_path, srv):
    serve_image(srv)
    rc, row, work = fetch_object(cli, tmp_path, srv, f"http://alice:secret@127.0.0.1:{srv.port}/img/ok.jpg")
    assert rc == 1 and row["status"] == "refused" and "credentials" in row["reason"]
    assert "secret" not in row["reason"]  # the reason does not repeat the password
    assert not any("Authorization" in h for _, h in srv.log)


@pytest.mark.parametrize("hops,status", [(5, "ok"), (6, "http_error")])
def test_redirect_chain_limit_is_exactly_five(cli, tmp_path, srv, hops, status):
    serve_image(srv)
    for i in range(hops):
        nxt = f"/img/r{i + 1}.jpg" if i + 1 < hops else "/img/ok.jpg"
        srv.routes[f"/img/r{i}.jpg"] = (302, {"Location": nxt}, b"")
    rc, row, work = fetch_object(cli, tmp_path, srv, f"{srv.base}/img/r0.jpg")
    assert row["status"] == status, row
    if status != "ok":
        assert row["reason"].startswith("more than 5 redirects")


# ---- 2. --from-json writes only the layout's image locations -----------------------------

def _source_face(obj_id, url, source_path):
    d = face_json(obj_id, 0, place(40, 100, 100), source_path=source_path)
    d["source_url"] = url
    return d


@pytest.mark.parametrize("source_path", [
    "objects.jsonl", "faces.json", "api/15.json", "originals/15.jpg", ".", "unprocessed",
    "unprocessed/" + "a" * 300 + ".png", "unprocessed/.hidden.png", "unprocessed/x.jpg",
])
def test_from_json_refuses_paths_outside_the_source_layout(cli, tmp_path, srv, source_path):
    serve_image(srv, "/img/16.jpg", jpeg_bytes(seed=1))
    serve_image(srv, "/img/15.jpg")
    work = tmp_path / "parent" / "w"
    (work / "unprocessed").mkdir(parents=True)
    (work / "faces.json").write_text("[]\n")
    (work / "objects.jsonl").write_text('{"id": 99, "status": "not_found"}\n')
    (work / "api").mkdir()
    (work / "api" / "15.json").write_text("{}")
    mf = tmp_path / "metfaces.json"
    mf.write_text(json.dumps([_source_face(15, f"{srv.base}/img/15.jpg", source_path),
                              _source_face(16, f"{srv.base}/img/16.jpg", "unprocessed/image-16.png")]))
    before = files_under(tmp_path / "parent")
    rc, out, err = cli("fetch", "--work", work, "--api", srv.api, "--from-json", mf, *FAST)
    assert "Traceback" not in err
    rows = journal(work)
    assert rc == 1 and rows[15]["status"] == "refused" and "source_path" in rows[15]["reason"]
    assert rows[16]["status"] == "ok" and rows[99]["status"] == "not_found"
    assert (work / "faces.json").read_text() == "[]\n" and (work / "api" / "15.json").read_text() == "{}"
    assert (work / "unprocessed").is_dir()
    after = files_under(tmp_path / "parent")
    assert after - before <= {"w/originals", "w/originals/16.jpg", "w/unprocessed/image-16.png",
                              "w/recipe.toml", "w/.stamps.json"}  # how the directory is built


# ---- 3. one writer per work directory ------------------------------------------------------

def _subprocess_fetch(work, srv, ids):
    return subprocess.Popen([sys.executable, "-m", "metfaces_build", "fetch", "--work", str(work),
                             "--api", srv.api, "--ids", ids, *FAST],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_writer_fails_at_once_naming_the_holder(tmp_path, srv):
    gate = threading.Event()
    data = jpeg_bytes()

    def slow(_h):
        gate.wait(30)
        return 200, {"Content-Type": "image/jpeg"}, data
    srv.routes["/img/slow.jpg"] = slow
    serve_image(srv)
    for oid in range(1, 6):
        srv.obj(oid, f"{srv.base}/img/{'slow' if oid == 1 else 'ok'}.jpg")
    work = tmp_path / "w"
    a = _subprocess_fetch(work, srv, "1,2")
    try:
        deadline = time.monotonic() + 30
        while "/img/slow.jpg" not in srv.paths() and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        b = subprocess.run([sys.executable, "-m", "metfaces_build", "fetch", "--work", str(work),
                            "--api", srv.api, "--ids", "3,4,5", *FAST], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert b.returncode == 2 and "Traceback" not in b.stderr
        assert f"pid {a.pid}" in b.stderr and "fetch" in b.stderr and "in use" in b.stderr
        assert time.monotonic() - t0 < 20
    finally:
        gate.set()
        out, err = a.communicate(timeout=60)
    assert a.returncode == 0, err
    assert sorted(journal(work)) == [1, 2]
    assert not (work / ".metfaces-build.lock").exists()


def test_two_runs_in_sequence_keep_every_record(cli, tmp_path, srv):
    serve_image(srv)
    for oid in range(1, 9):
        srv.obj(oid, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    assert fetch(cli, work, srv, "--ids", "1,2,3,4")[0] == 0
    assert fetch(cli, work, srv, "--ids", "5,6,7,8")[0] == 0
    assert sorted(journal(work)) == list(range(1, 9))


def test_stale_lock_of_a_killed_run_is_taken_over(cli, tmp_path, srv):
    serve_image(srv)
    srv.obj(1, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    work.mkdir()
    (work / ".metfaces-build.lock").write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "command": "fetch", "started": "2026-01-01T00:00:00Z"}))
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    assert rc == 0 and journal(work)[1]["status"] == "ok"
    assert not (work / ".metfaces-build.lock").exists()


def test_live_lock_refuses_detect_filter_and_align(cli, tmp_path):
    from metfaces_build.infra.lock import work_lock
    work = tmp_path / "w"
    out = tmp_path / "crops"
    save_image(work / "originals" / "1.png", texture(0, 64, 64))
    (work / "faces.json").write_text("[]")
    with work_lock(work, command="fetch"), work_lock(out, command="align"):
        for argv in (["detect", "--work", work], ["filter", "--work", work],
                     ["align", "--json", work / "faces.json", "--source-images", work, "--output-dir", out]):
            rc, _, err = cli(*argv, "--quiet")
            assert rc == 2 and "in use by" in err and f"pid {os.getpid()}" in err, (argv, err)


# ---- 4. deep JSON is a recorded failure, never a crash -----------------------------------

DEEP = b'{"objectID":15,"x":' + b"[" * 200_000 + b"]" * 200_000 + b"}"


def test_deep_json_record_is_a_recorded_failure(cli, tmp_path, srv):
    serve_image(srv)
    srv.json("/api/objects/15", None, raw=DEEP)
    for oid in (14, 16):
        srv.obj(oid, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "14,15,16")
    rows = journal(work)
    assert rc == 1 and rows[15]["status"] == "bad_content" and "nested" in rows[15]["reason"]
    assert rows[14]["status"] == rows[16]["status"] == "ok"
    # only one request: a too-deep answer is not retried
    assert srv.paths().count("/api/objects/15") == 1


def test_deep_json_listing_and_journal_line(cli, tmp_path, srv):
    srv.json("/api/objects", None, raw=b'{"total":1,"objectIDs":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--since", "2020-01-01")
    assert rc == 1 and "could not list objects" in err and "nested" in err
    # a deep line in objects.jsonl is skipped (the object is refetched), the others kept
    serve_image(srv)
    srv.obj(1, f"{srv.base}/img/ok.jpg")
    (work / "objects.jsonl").write_bytes(b'{"id":2,"status":"not_found"}\n{"id":1,"status":"ok","x":'
                                         + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    rc, out, err = fetch(cli, work, srv, "--ids", "1,2")
    rows = journal(work)
    assert rows[1]["status"] == "ok" and rows[2]["status"] == "not_found" and "1 ok" in out


# ---- 5. huge integers -------------------------------------------------------------------

def test_huge_ids_are_usage_errors(cli, tmp_path, srv):
    big = "99999999999999999999999"
    rc, out, err = fetch(cli, tmp_path / "w", srv, "--ids", big)
    assert rc == 2 and "not an object id" in err
    f = tmp_path / "ids.txt"
    f.write_text(f"1\n{big}\n")
    rc, out, err = fetch(cli, tmp_path / "w", srv, "--ids-file", f)
    assert rc == 2 and "line 2" in err


def test_huge_ids_in_a_listing_and_the_journal_are_dropped(cli, tmp_path, srv):
    serve_image(srv)
    srv.obj(7, f"{srv.base}/img/ok.jpg")
    srv.json("/api/objects", None, raw=b'{"total":2,"objectIDs":[7,' + b"1" + b"0" * 29 + b"]}")
    work = tmp_path / "w"
    work.mkdir()
    (work / "objects.jsonl").write_text('{"id": 99999999999999999999999, "status": "ok"}\n')
    rc, out, err = fetch(cli, work, srv, "--since", "2020-01-01")
    assert rc == 0 and list(journal(work)) == [7]


def test_huge_landmark_is_a_bad_record(cli, tmp_path):
    src = tmp_path / "src"
    save_image(src / "a.png", texture(0, 200, 200))
    good = face_json("1", 0, place(40, 100, 100), source_path="a.png")
    bad = face_json("2", 0, place(40, 100, 100), source_path="a.png")
    bad["face_spec"]["landmarks"][3][0] = 10 ** 400
    (tmp_path / "f.json").write_text(json.dumps([good, bad]))
    out = tmp_path / "out"
    argv = ["align", "--json", tmp_path / "f.json", "--source-images", src, "--output-dir", out,
            "--size", "64", "--supersampling", "1", "--workers", "1", "--quiet"]
    rc, _, err = cli(*argv)
    assert rc == 2 and "landmarks" in err and "Traceback" not in err
    rc, _, err = cli(*argv, "--skip-bad")
    entries = json.loads((out / "aligned.json").read_text())
    assert rc == 1 and [e["status"] for e in entries] == ["ok", "bad_record"]


# ---- 6. bounded decompression ------------------------------------------------------------

def test_gzip_listing_bomb_is_refused_without_expanding_it(cli, tmp_path, srv):
    body = gzip.compress(b'{"total":1,"objectIDs":[1' + b" " * (100 << 20) + b"]}", compresslevel=1)
    srv.json("/api/objects", None, raw=body, **{"Content-Encoding": "gzip"})
    rc, out, err = fetch(cli, tmp_path / "w", srv, "--since", "2020-01-01")
    assert rc == 1 and "could not list objects" in err and "exceeds" in err


def test_json_cap_is_a_client_setting(srv):
    from metfaces_build.met.client import ClientConfig, FetchFailure, MetClient
    srv.json("/api/objects/3", {"objectID": 3, "title": "x" * 5000})
    c = MetClient(ClientConfig(api_root=srv.api, max_json_bytes=4096, retries=0))
    try:
        with pytest.raises(FetchFailure) as e:
            c.get_object(3)
        assert e.value.status == "bad_content" and "4096" in e.value.reason
    finally:
        c.close()


def test_gzip_image_bomb_is_refused_once_and_a_gzip_image_is_fine(cli, tmp_path, srv):
    bomb = gzip.compress(b"\x89PNG\r\n\x1a\n" + b"\0" * (64 << 20), compresslevel=1)
    srv.routes["/img/bomb.png"] = (200, {"Content-Type": "image/png", "Content-Encoding": "gzip"}, bomb)
    good = png_bytes(80, 60)
    srv.routes["/img/good.png"] = (200, {"Content-Type": "image/png", "Content-Encoding": "gzip"},
                                   gzip.compress(good))
    srv.obj(1, f"{srv.base}/img/bomb.png")
    srv.obj(2, f"{srv.base}/img/good.png")
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1,2")
    rows = journal(work)
    assert rows[1]["status"] == "too_large" and "decoded" in rows[1]["reason"]
    assert srv.paths().count("/img/bomb.png") == 1
    assert rows[2]["status"] == "ok" and (work / rows[2]["path"]).read_bytes() == good
    assert rows[2]["md5"] == hashlib.md5(good).hexdigest()
    img_requests = [h for p, h in srv.log if p.startswith("/img/")]
    assert all(h.get("Accept-Encoding") == "identity" for h in img_requests)


# ---- 7. align on odd sources ------------------------------------------------------------

def _align(cli, faces, src, out, *extra):
    (out.parent / "faces.json").write_text(json.dumps(faces))
    rc, stdout, err = cli("align", "--json", out.parent / "faces.json", "--source-images", src,
                          "--output-dir", out, "--size", "64", "--supersampling", "1",
                          "--workers", "1", "--quiet", *extra)
    assert "Traceback" not in err
    entries = json.loads((out / "aligned.json").read_text())
    return rc, stdout, err, entries


@pytest.mark.parametrize("obj_id", ["7" * 300, ".", ".hidden"])
def test_unusable_obj_id_is_a_bad_record(cli, tmp_path, obj_id):
    src = tmp_path / "src"
    save_image(src / "a.png", texture(0, 200, 200))
    faces = [face_json("1", 0, place(40, 100, 100), source_path="a.png"),
             face_json(obj_id, 0, place(40, 100, 100), source_path="a.png")]
    out = tmp_path / "out"
    rc, _, err, entries = _align(cli, faces, src, out, "--skip-bad")
    assert rc == 1 and [e["status"] for e in entries] == ["ok", "bad_record"]
    assert "file name" in entries[1]["reason"]
    assert sorted(p.name for p in out.iterdir()) == ["1-00.png", "aligned.json"]


def test_fifo_source_is_refused_not_read(tmp_path):
    src = tmp_path / "src"
    save_image(src / "a.png", texture(0, 200, 200))
    os.mkfifo(src / "fifo.png")
    faces = [face_json("1", 0, place(40, 100, 100), source_path="a.png"),
             face_json("2", 0, place(40, 100, 100), source_path="fifo.png")]
    (tmp_path / "faces.json").write_text(json.dumps(faces))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "metfaces_build", "align", "--json", str(tmp_path / "faces.json"),
                        "--source-images", str(src), "--output-dir", str(out), "--size", "64",
                        "--supersampling", "1", "--workers", "1", "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=30)
    entries = json.loads((out / "aligned.json").read_text())
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert entries[0]["status"] == "ok"
    assert entries[1]["status"] == "missing_source" and "not a regular file" in entries[1]["reason"]


def test_degenerate_geometry_says_what_is_wrong_with_the_face(cli, tmp_path):
    src = tmp_path / "src"
    save_image(src / "tiny.png", texture(0, 1, 1))
    save_image(src / "a.png", texture(0, 200, 200))
    far = face_json("2", 0, place(40, 100, 100), source_path="a.png")
    far["face_spec"]["shrink"] = 1_000_000
    faces = [face_json("1", 0, place(40, 100, 100), source_path="tiny.png"), far]
    rc, _, err, entries = _align(cli, faces, src, tmp_path / "out")
    assert rc == 1 and [e["status"] for e in entries] == ["error", "error"]
    for e in entries:
        assert "face" in e["reason"] and "outside the image" in e["reason"], e["reason"]
        assert "Coordinate" not in e["reason"] and "must be > 0" not in e["reason"]


# ---- 8. resume trusts only crops inside the output folder ----------------------------------

def test_manifest_pointing_outside_is_not_trusted(cli, tmp_path):
    src = tmp_path / "src"
    save_image(src / "a.png", texture(0, 200, 200))
    faces = [face_json("1", 0, place(40, 100, 100), source_path="a.png")]
    out = tmp_path / "out"
    rc, _, _, entries = _align(cli, faces, src, out)
    assert rc == 0
    crop = out / "1-00.png"
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(crop.read_bytes())
    entries[0]["output"] = "../elsewhere.png"
    (out / "aligned.json").write_text(json.dumps(entries))
    crop.unlink()
    rc, stdout, _, entries = _align(cli, faces, src, out)
    assert rc == 0 and "already done" not in stdout and crop.is_file()
    assert entries[0]["output"] == "1-00.png"


# ---- also ------------------------------------------------------------------------------

def test_originals_get_the_umask_mode(cli, tmp_path, srv):
    serve_image(srv)
    srv.obj(1, f"{srv.base}/img/ok.jpg")
    work = tmp_path / "w"
    old = os.umask(0o022)
    try:
        assert fetch(cli, work, srv, "--ids", "1")[0] == 0
    finally:
        os.umask(old)
    assert (work / "originals" / "1.jpg").stat().st_mode & 0o777 == 0o644


def test_non_utf8_title_keeps_the_record_and_nan_is_not_a_string(cli, tmp_path, srv):
    serve_image(srv)
    raw = (b'{"objectID":1,"isPublicDomain":true,"primaryImage":"' + srv.base.encode()
           + b'/img/ok.jpg","title":"Portr\xe4t","department":NaN,"artistDisplayName":Infinity}')
    srv.json("/api/objects/1", None, raw=raw)
    work = tmp_path / "w"
    rc, out, err = fetch(cli, work, srv, "--ids", "1")
    row = journal(work)[1]
    assert rc == 0 and row["status"] == "ok"
    assert row["title"] == "Portr\ufffdt" and row["department"] == "" and row["artist"] == ""
    assert b"NaN" not in (work / "objects.jsonl").read_bytes()


def test_from_json_does_not_write_through_a_symlink(cli, tmp_path, srv):
    serve_image(srv, "/img/15.jpg")
    work = tmp_path / "w"
    (work / "unprocessed").mkdir(parents=True)
    (work / "objects.jsonl").write_text('{"id": 99, "status": "not_found"}\n')
    os.symlink("../objects.jsonl", work / "unprocessed" / "image-15.png")
    mf = tmp_path / "metfaces.json"
    mf.write_text(json.dumps([_source_face(15, f"{srv.base}/img/15.jpg", "unprocessed/image-15.png")]))
    rc, out, err = cli("fetch", "--work", work, "--api", srv.api, "--from-json", mf, *FAST)
    rows = journal(work)
    assert rc == 1 and rows[15]["status"] == "refused" and "objects.jsonl" in rows[15]["reason"]
    assert rows[99]["status"] == "not_found"


def test_a_crashing_job_does_not_lose_the_others_in_flight(tmp_path):
    from metfaces_build.core.records import MetObject
    from metfaces_build.infra.files import JsonlAppender
    from metfaces_build.stages.fetch import run_pool as _run_pool

    class Bug(Exception):
        pass

    def worker(oid):
        if oid == 3:
            raise Bug("a programming error")
        time.sleep(0.05)
        return MetObject(oid, "ok")

    class NoProgress:
        def update(self, *a, **k):
            pass
    from collections import Counter
    counts: Counter = Counter()
    with JsonlAppender(tmp_path / "objects.jsonl") as j:
        assert _run_pool([[1, 2, 3, 4, 5, 6]], worker, 3, j, NoProgress(), counts) is None
    rows = journal(tmp_path)
    # the crash is object 3's recorded failure (issue 18); every other object is fetched
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert rows[3]["status"] == "bad_content" and "Bug: a programming error" in rows[3]["reason"]
    assert counts == {"ok": 5, "bad_content": 1}


# ---- the lock itself --------------------------------------------------------------------

def test_lock_rules(tmp_path):
    import socket

    from metfaces_build.core.errors import UsageError
    from metfaces_build.infra.lock import LOCK_NAME, work_lock
    lock = tmp_path / LOCK_NAME
    with work_lock(tmp_path, command="fetch") as me:
        assert json.loads(lock.read_text())["pid"] == os.getpid() == me.pid
        with pytest.raises(UsageError, match="in use by fetch"):
            with work_lock(tmp_path, command="detect"):
                pass
    assert not lock.exists()
    # another host: cannot be checked, so it holds, and the message says what to delete
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "command": "align",
                                "started": "2026-01-01T00:00:00Z"}))
    with pytest.raises(UsageError, match="delete"):
        with work_lock(tmp_path):
            pass
    # a live pid that was reused by another process (start time differs): stale
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "fetch",
                                "started": "2026-01-01T00:00:00Z", "proc_start": "1"}))
    with work_lock(tmp_path, command="fetch"):
        pass
    # garbage left by a crash mid-write, older than a moment: taken over
    lock.write_text("{not json")
    old = time.time() - 60
    os.utime(lock, (old, old))
    with work_lock(tmp_path, command="fetch"):
        assert json.loads(lock.read_text())["command"] == "fetch"
    assert not lock.exists()
