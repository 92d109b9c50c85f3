"""Met API client: pacing, retries, Retry-After, validation, host allow-list.

HTTP behaviour is tested against a real loopback server that plays a script of answers,
not a mocked requests library.
"""
from __future__ import annotations

import email.utils
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from metfaces_build.met.client import (USER_AGENT, ClientConfig, FetchFailure, MetClient, Pacer,
                                   image_url_problem, parse_object_ids, parse_retry_after,
                                   resolve_departments, Department)


# ---- a scripted loopback server ---------------------------------------------------------

class Script:
    """Answers requests in order from a list of (status, headers, body); the last repeats."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []  # (path, headers, time)
        self.lock = threading.Lock()

    def next(self, path, headers):
        with self.lock:
            self.seen.append((path, dict(headers), time.monotonic()))
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def scripted():
    servers = []

    def start(answers):
        script = Script(answers)

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                status, headers, body = script.next(self.path, self.headers)
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        script.root = f"http://127.0.0.1:{srv.server_address[1]}/public/collection/v1"
        script.base = f"http://127.0.0.1:{srv.server_address[1]}"
        return script
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def fast_client(root, **kw) -> MetClient:
    cfg = dict(api_root=root, rate=1000, retries=3, timeout=2, backoff_base=0.01, backoff_max=0.02,
               cooldown=0.05)
    cfg.update(kw)
    return MetClient(ClientConfig(**cfg))


JSON = {"Content-Type": "application/json"}
HTML = {"Content-Type": "text/html"}
OBJ = b'{"objectID": 5, "isPublicDomain": true, "primaryImage": ""}'


def png_bytes(size=(40, 30)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


# ---- pacing ------------------------------------------------------------------------------

class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.slept = 0.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s
        self.slept += s


def test_token_bucket_paces_to_rate_after_burst():
    t = FakeTime()
    p = Pacer(10, burst=2, clock=t.clock, sleep=t.sleep)
    for _ in range(12):
        p.acquire()
    assert t.now == pytest.approx(1.0, abs=1e-6)  # 2 from the burst, 10 at 0.1 s each


def test_shared_cooldown_pauses_everyone_and_slows_down_once():
    t = FakeTime()
    p = Pacer(10, burst=1, clock=t.clock, sleep=t.sleep)
    p.acquire()
    for _ in range(3):  # three workers see the same block page
        p.cool_down(5.0)
    assert p.rate == pytest.approx(7.0) and p.cooldowns == p.blocks == 1 and p.block_rate == 10
    p.acquire()
    assert t.now >= 5.0
    for _ in range(600):  # a minute at 7-9/s
        p.acquire()
        p.succeeded()
    assert p.rate == pytest.approx(8.5)  # climbed back to 85% of the blocked rate, not above


def test_pacer_is_shared_by_threads():
    p = Pacer(50, burst=1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [p.acquire() for _ in range(10)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert time.monotonic() - t0 >= 39 / 50 * 0.95


# ---- pure helpers -----------------------------------------------------------------------

def test_retry_after_seconds_and_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-2") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == pytest.approx(10, abs=1)


@pytest.mark.parametrize("url,ok", [
    ("https://images.metmuseum.org/CRDImages/ep/original/DT1.jpg", True),
    ("http://images.metmuseum.org/x.jpg", True),
    ("https://collectionapi.metmuseum.org/img.jpg", True),
    ("ftp://images.metmuseum.org/x.jpg", False),
    ("file:///etc/passwd", False),
    ("https://evil.example/x.jpg", False),
    ("https://images.metmuseum.org@evil.example/x.jpg", False),
    ("https://images.metmuseum.org.evil.example/x.jpg", False),
    ("https://collectionapi.metmuseum.org:8443/img.jpg", False),
    ("", False),
])
def test_image_host_allow_list(url, ok):
    root = "https://collectionapi.metmuseum.org/public/collection/v1"
    assert (image_url_problem(url, root) is None) == ok


def test_emulator_host_allowed_only_on_its_port():
    root = "http://127.0.0.1:5000/public/collection/v1"
    assert image_url_problem("http://127.0.0.1:5000/CRDImages/ep/original/a.jpg", root) is None
    assert image_url_problem("http://127.0.0.1:5001/a.jpg", root) is not None
    assert image_url_problem("https://cdn.example/a.jpg", root, ["cdn.example"]) is None


def test_object_ids_null_duplicates_and_junk():
    assert parse_object_ids({"total": 0, "objectIDs": None}) == []
    assert parse_object_ids({"objectIDs": [3, 3, "4", True, -1, 0, "x", 2.5]}) == [3, 3, 4]
    with pytest.raises(ValueError):
        parse_object_ids({"objectIDs": "1,2"})


def test_departments_by_id_or_name():
    deps = [Department(11, "European Paintings"), Department(9, "Drawings and Prints")]
    assert resolve_departments(["european paintings", "9", "11"], deps) == [11, 9]
    with pytest.raises(ValueError, match="known: 11 European Paintings"):
        resolve_departments(["Armour"], deps)
    with pytest.raises(ValueError):
        resolve_departments(["12"], deps)


# ---- HTTP behaviour ---------------------------------------------------------------------------

def test_retry_after_is_honoured_and_user_agent_sent(scripted):
    s = scripted([(429, {"Retry-After": "0.4", **JSON}, b"{}"), (200, JSON, OBJ)])
    c = fast_client(s.root)
    ans = c.get_object(5)
    assert ans.attempts == 2 and ans.data["objectID"] == 5
    (_, h1, t1), (_, _, t2) = s.seen
    assert t2 - t1 >= 0.38
    assert h1["User-Agent"] == USER_AGENT and USER_AGENT.startswith("metfaces-build/")


def test_403_html_block_is_a_shared_cooldown(scripted):
    s = scripted([(403, HTML, b"<html>Request unsuccessful. Incapsula</html>"), (200, JSON, OBJ)])
    c = fast_client(s.root, cooldown=0.3)
    c.get_object(5)
    assert c.pacer.cooldowns == 1
    assert s.seen[1][2] - s.seen[0][2] >= 0.28


def test_5xx_backs_off_then_gives_up_as_http_error(scripted):
    s = scripted([(503, HTML, b"<html>down</html>")])
    c = fast_client(s.root, retries=2)
    with pytest.raises(FetchFailure) as e:
        c.get_object(5)
    assert e.value.status == "http_error" and e.value.attempts == 3 and len(s.seen) == 3


def test_404_is_final(scripted):
    s = scripted([(404, JSON, b'{"message": "ObjectID not found"}')])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root).get_object(5)
    assert e.value.status == "not_found" and e.value.attempts == 1 and len(s.seen) == 1
    assert "ObjectID not found" in e.value.reason


def test_html_served_as_200_is_never_json(scripted):
    s = scripted([(200, HTML, b"<!DOCTYPE html><html>captcha</html>")] * 2 + [(200, JSON, OBJ)])
    assert fast_client(s.root).get_object(5).attempts == 3
    s = scripted([(200, JSON, b"<html>lying content type</html>")])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root, retries=1).get_object(5)
    assert e.value.status == "bad_content" and "HTML" in e.value.reason


def test_answer_for_another_object_is_bad_content(scripted):
    s = scripted([(200, JSON, b'{"objectID": 6}')])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root).get_object(5)
    assert e.value.status == "bad_content"


def test_search_null_is_empty(scripted):
    s = scripted([(200, JSON, b'{"total": 0, "objectIDs": null}')])
    assert fast_client(s.root).search("nothing", hasImages=True) == []
    assert "hasImages=true" in s.seen[0][0] and "q=nothing" in s.seen[0][0]


def test_download_checks_then_renames(scripted, tmp_path):
    good = png_bytes()
    s = scripted([(200, {"Content-Type": "image/jpeg"}, b"<html>not an image</html>"),
                  (200, {"Content-Type": "image/png"}, good[: len(good) // 2]),  # truncated, honest length
                  (200, {"Content-Type": "image/png"}, good)])
    d = fast_client(s.root).download(s.base + "/CRDImages/x/original/a.png", tmp_path, "7")
    assert d.attempts == 3 and d.ext == "png" and (d.width, d.height) == (40, 30)
    assert d.path == tmp_path / "7.png" and d.path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.png"]  # no temp files left


def test_download_refused_host_makes_no_request(scripted, tmp_path):
    s = scripted([(200, {}, png_bytes())])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root).download("https://evil.example/a.png", tmp_path, "7")
    assert e.value.status == "refused" and not s.seen and not list(tmp_path.iterdir())


def test_download_redirect_off_allowed_hosts_is_refused(scripted, tmp_path):
    s = scripted([(302, {"Location": "http://evil.example/a.png"}, b"")])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root).download(s.base + "/a.png", tmp_path, "7")
    assert e.value.status == "refused"


def test_download_pixel_limit_is_final(scripted, tmp_path):
    s = scripted([(200, {"Content-Type": "image/png"}, png_bytes((400, 300)))])
    with pytest.raises(FetchFailure) as e:
        fast_client(s.root, max_pixels=1000).download(s.base + "/a.png", tmp_path, "7")
    assert e.value.status == "too_large" and (e.value.width, e.value.height) == (400, 300)
    assert len(s.seen) == 1 and not list(tmp_path.iterdir())
