"""The real Met's shapes: every recorded record fetched through a loopback server that
answers as the Met does (../shared/data/met-real: records.jsonl, the recorded exchanges
in http/, NOTES.md), plus the error bodies and quirks NOTES.md lists.

The real image bytes are not in the recordings: the image server makes small JPEG bytes
of its own per URL (a function of the path), so every download is checked byte-exact,
URLs with raw spaces and `.JPG` included.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import pytest

from conftest import shared_path

PREFIX = "/public/collection/v1"
MET_IMAGES = "https://images.metmuseum.org"
NOT_VALID = 99999901   # a loan / withdrawn object: 404 {"message":"Not a valid object"}
UNKNOWN = 99999902     # 404 {"message":"ObjectID not found"} (as recorded)


def cassette(name: str) -> dict:
    """The first recorded exchange of http/<name>.yml: status, headers, body bytes."""
    import yaml
    doc = yaml.safe_load(shared_path("data", "met-real", "http", name + ".yml").read_text())
    res = doc["http_interactions"][0]["response"]
    body = res["body"]["string"]
    return {"status": res["status"]["code"], "headers": res["headers"],
            "body": body if isinstance(body, bytes) else body.encode("utf-8")}


def image_bytes(path: str) -> bytes:
    """The JPEG the fake image host serves at `path` (decoded, e.g. with a raw space)."""
    from PIL import Image
    h = hashlib.sha256(path.encode("utf-8")).digest()
    buf = io.BytesIO()
    Image.new("RGB", (16 + h[0] % 32, 16 + h[1] % 32), tuple(h[2:5])).save(buf, "JPEG", quality=80 + h[5] % 15)
    return buf.getvalue()


class RealMet:
    """Two loopback servers: the API (records as recorded, compact JSON + newline, chunked,
    bot-protection cookies) and the image host."""

    def __init__(self, records: dict):
        self.images = self._serve(self._image_handler())
        self.image_base = "http://127.0.0.1:%d" % self.images.server_address[1]
        self.served: dict = {}   # id -> body bytes as served
        for oid, rec in records.items():
            text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
            self.served[oid] = (text.replace(MET_IMAGES, self.image_base) + "\n").encode("utf-8")
        self.errors = {NOT_VALID: (404, b'{"message":"Not a valid object"}\n'),
                       UNKNOWN: (404, cassette("MetMuseum_object_for_a_non-existent_object_id_raises_"
                                               "NotFoundError")["body"])}
        self.departments = cassette("MetMuseum_department_returns_the_list_of_departments")["body"]
        self.requests: dict = {}
        self.lock = threading.Lock()
        self.api = self._serve(self._api_handler())
        self.root = "http://127.0.0.1:%d%s" % (self.api.server_address[1], PREFIX)

    def _serve(self, handler):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    def _api_handler(self):
        met = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path = urlsplit(self.path).path
                with met.lock:
                    met.requests[path] = met.requests.get(path, 0) + 1
                rest = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else ""
                if rest == "departments":
                    return self.chunked(200, met.departments)
                if rest.startswith("objects/") and rest[8:].isdigit():
                    oid = int(rest[8:])
                    if oid in met.served:
                        return self.chunked(200, met.served[oid])
                    return self.chunked(*met.errors.get(oid, (404, b'{"message":"ObjectID not found"}\n')))
                return self.chunked(404, b'{"message":"Not Found"}\n')

            def chunked(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Vary", "Origin")
                self.send_header("Set-Cookie", "incap_ses_442_1662004=REDACTED; path=/")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 700):
                    part = body[i:i + 700]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
        return H

    def _image_handler(self):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                path = unquote(urlsplit(self.path).path)
                if not path.startswith("/CRDImages/"):
                    self.send_error(404)
                    return
                body = image_bytes(path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        return H

    def stop(self):
        for s in (self.api, self.images):
            s.shutdown()
            s.server_close()


@pytest.fixture(scope="module")
def real_records():
    rows = [json.loads(line) for line in
            shared_path("data", "met-real", "records.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return {r["record"]["objectID"]: r["record"] for r in rows}


def expected_status(rec: dict) -> str:
    if rec["isPublicDomain"] is False:
        return "not_public_domain"
    return "ok" if rec["primaryImage"] else "no_image"


def test_every_real_record_gets_its_status_and_byte_exact_image(cli, tmp_path, real_records):
    met = RealMet(real_records)
    try:
        ids = sorted(real_records) + [NOT_VALID, UNKNOWN]
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(map(str, ids)) + "\n")
        work = tmp_path / "w"
        rc, out, err = cli("fetch", "--work", work, "--api", met.root, "--ids-file", ids_file,
                           "--allow-host", "127.0.0.1", "--rate", "400", "--workers", "4", "--quiet",
                           "--retries", "2", "--backoff-base", "0.01", "--backoff-max", "0.02")
        assert "Traceback" not in err
        rows = {json.loads(x)["id"]: json.loads(x) for x in (work / "objects.jsonl").read_text().splitlines()}
        assert set(rows) == set(ids)
        statuses = {oid: rows[oid]["status"] for oid in real_records}
        assert statuses == {oid: expected_status(r) for oid, r in real_records.items()}
        assert sorted(set(statuses.values())) == ["no_image", "not_public_domain", "ok"]
        for oid, rec in real_records.items():
            # the record exactly as served
            assert (work / "api" / f"{oid}.json").read_bytes() == met.served[oid]
            row = rows[oid]
            if row["status"] == "ok":
                url = json.loads(met.served[oid])["primaryImage"]
                want = image_bytes(urlsplit(url).path)
                assert (work / row["path"]).read_bytes() == want, url
                assert row["path"] == f"originals/{oid}.jpg"  # .JPG and .jpg alike: named by content
        spaced = [o for o, r in real_records.items() if " " in r["primaryImage"]]
        upper = [o for o, r in real_records.items() if r["primaryImage"].endswith(".JPG")]
        assert spaced and upper and all(rows[o]["status"] == "ok" for o in spaced + upper)
        # 404s are recorded, not retried: a loan/withdrawn object and an unknown id
        for oid, message in ((NOT_VALID, "Not a valid object"), (UNKNOWN, "ObjectID not found")):
            assert rows[oid]["status"] == "not_found" and rows[oid]["attempts"] == 1
            assert met.requests[f"{PREFIX}/objects/{oid}"] == 1
        assert rc == 1  # the two not_found are recorded failures
        # constituents are HTML-escaped in records, unescaped for display
        escaped = [o for o, r in real_records.items() if not r["artistDisplayName"]
                   and any("&amp;" in c["name"] for c in r.get("constituents") or [])]
        for o in escaped:
            assert "&amp;" not in rows[o]["artist"] and "&" in rows[o]["artist"]
    finally:
        met.stop()


def test_departments_match_by_id_whatever_name_the_record_uses(real_records):
    from metfaces_build.met.client import ClientConfig, MetClient, resolve_departments
    met = RealMet({})
    try:
        c = MetClient(ClientConfig(api_root=met.root, rate=100))
        deps = c.departments()
        c.close()
    finally:
        met.stop()
    names = {d.id: d.name for d in deps}
    assert names[21] == "Modern Art" and names[3] == "Ancient West Asian Art"
    # the names records use resolve to the same ids as the display names
    record_names = {r["department"] for r in real_records.values()}
    assert {"Modern and Contemporary Art", "Ancient Near Eastern Art", "The American Wing"} <= record_names
    assert resolve_departments(["Modern and Contemporary Art", "modern art"], deps) == [21]
    assert resolve_departments(["Ancient Near Eastern Art"], deps) == [3]
    assert resolve_departments(["The American Wing", "Robert Lehman Collection"], deps) == [1, 15]
    for name in record_names:
        assert len(resolve_departments([name], deps)) == 1, name


def test_catalogue_department_filter_keeps_rows_named_the_old_way(tmp_path):
    from metfaces_build.met.catalog import department_names
    names = department_names(["21", "3"])
    assert {"Modern Art", "Modern and Contemporary Art", "Ancient Near Eastern Art",
            "Ancient West Asian Art"} <= set(names)


def test_display_fields_of_real_records(real_records):
    from metfaces_build.met.shapes import artist_of, constituent_names, display_text
    crlf = [r for r in real_records.values() if "\r\n" in r.get("dimensions", "")]
    assert crlf and all("\r" not in display_text(r["dimensions"]) for r in crlf)
    rec = next(r for r in real_records.values() if any("&amp;" in c["name"] for c in r.get("constituents") or []))
    assert all("&amp;" not in n for n in constituent_names(rec))
    assert artist_of({"artistDisplayName": "", "constituents": [{"name": "Strohmeyer &amp; Wyman"}]}) == \
        "Strohmeyer & Wyman"
    assert artist_of({"artistDisplayName": "A & B", "constituents": None}) == "A & B"


# ---- error bodies and listings as NOTES.md describes them ----------------------------------------

class Scripted:
    """A loopback API answering every request with one (status, content type, body)."""

    def __init__(self, status, ctype, body):
        self.count = 0

        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                outer.count += 1
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.root = "http://127.0.0.1:%d%s" % (self.srv.server_address[1], PREFIX)

    def client(self):
        from metfaces_build.met.client import ClientConfig, MetClient
        return MetClient(ClientConfig(api_root=self.root, rate=200, retries=2, backoff_base=0.01,
                                      backoff_max=0.02, remember_pace=False))

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_400_with_a_bare_json_string_is_a_final_failure():
    from metfaces_build.met.client import FetchFailure
    s = Scripted(400, "application/json", b'"The request is invalid."\n')
    try:
        with pytest.raises(FetchFailure) as e:
            s.client().object_ids(since="2024-13-45")
        assert e.value.status == "http_error" and e.value.http_status == 400 and s.count == 1
    finally:
        s.stop()


def test_502_html_page_is_retried_then_an_http_error():
    from metfaces_build.met.client import FetchFailure
    s = Scripted(502, "text/html", b"<html><head><title>502 - Web server received an invalid "
                                   b"response</title></head><body>...</body></html>\n")
    try:
        with pytest.raises(FetchFailure) as e:
            s.client().object_ids()
        assert e.value.status == "http_error" and "HTML" in e.value.reason and s.count == 3
    finally:
        s.stop()


def test_empty_search_answers_null_ids():
    s = Scripted(200, "application/json", b'{"total":0,"objectIDs":null}\n')
    try:
        assert s.client().search("zzz-no-such-thing") == []
    finally:
        s.stop()


def test_emulator_records_look_like_real_ones(real_records):
    """Same keys in the same order, same JSON types, and the quirks: escaped constituents,
    CRLF in dimensions, a department name that differs from /departments, compact JSON with
    a newline, cookies, and the error answers NOTES.md lists."""
    import requests

    from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator
    real = real_records[436535]  # recorded exactly (http/ cassette)

    def kind(v):
        return "null" if v is None else "number" if isinstance(v, (int, float)) and not isinstance(v, bool) \
            else type(v).__name__

    with start_emulator(synthetic=2) as h:
        served = {**h.records(), SYNTHETIC_BASE + 1: None}
        for oid in served:
            r = requests.get(f"{h.api_root}/objects/{oid}", timeout=10)
            assert r.headers["Content-Type"] == "application/json" and r.content.endswith(b"}\n")
            assert b'": ' not in r.content[:200] and "incap_ses_" in r.headers.get("Set-Cookie", "")
            rec = r.json()
            assert list(rec) == list(real), oid
            for k, v in rec.items():
                if v is not None and real[k] is not None:
                    assert kind(v) == kind(real[k]), (oid, k)
        recs = [requests.get(f"{h.api_root}/objects/{o}", timeout=10).json() for o in served]
        assert any("&amp;" in c["name"] for r in recs for c in r["constituents"] or [])
        assert any("\r\n" in r["dimensions"] for r in recs)
        deps = {d["departmentId"]: d["displayName"] for d in
                requests.get(f"{h.api_root}/departments", timeout=10).json()["departments"]}
        assert any(r["department"] not in deps.values() for r in recs)
        assert requests.get(f"{h.api_root}/search?q=zzz-none", timeout=10).json() == {"total": 0, "objectIDs": None}
        bad_date = requests.get(f"{h.api_root}/objects?metadataDate=2024-13-45", timeout=10)
        assert bad_date.status_code == 400 and isinstance(bad_date.json(), str)
        for path in ("objects?departmentIds=abc", "search"):
            r = requests.get(f"{h.api_root}/{path}", timeout=10)
            assert r.status_code == 502 and r.text.startswith("<!DOCTYPE html>")
        assert requests.get(f"{h.api_root}/objects/", timeout=10).json() == {"message": "Not Found"}
        gone = next(o.id for o in h.collection.objects if o.kind == "noface")
        h.withdraw(gone, "removed")
        r = requests.get(f"{h.api_root}/objects/{gone}", timeout=10)
        assert r.status_code == 404 and r.json() == {"message": "Not a valid object"}
