"""Serve a sample Met Collection API on loopback, with switchable faults.

The same paths as the real API under `http://127.0.0.1:PORT/public/collection/v1`
(departments, objects, objects/{id}, search) and images under `/CRDImages/...` on the same
server, so `fetch --api URL` runs every network path offline. The sample collection (35
objects over 5 departments: faces at several scales and tilts, painting-like filters, no
image, not public domain, duplicate ids in lists, one 300-Mpx image) is built at the first
start and cached. The collection can change while it runs, as the Met's does (re-shot
images, corrected records, new and withdrawn objects, each with a new `metadataDate`): see
`EmulatorHandle.reshoot`, `.correct`, `.add_object`, `.withdraw`; `/objects?metadataDate=D`
then lists exactly the objects changed on or after D. `.break_image(id, how)` makes one
object's image fail while its record is fine (404 as from a CDN that has not got a
re-shot file yet, a corrupt file, a host outside the allow-list, a reset connection)
until `.mend_image(id)`. `/_emulator/truth.json` (`?md5=1` adds source_md5, slow once) is the ground truth (metfaces.json-compatible:
the known 68 landmarks of every placed face); `/_emulator/stats` counts requests, and
`EmulatorHandle.requested()` / `.object_requests()` say which paths were asked (tests).

Faults (deterministic for a given --seed and request sequence per path):
  403html    403 with an HTML block page       429       429 with Retry-After
  5xx        500/502/503                        reset     connection reset, no answer
  truncate   body cut short                     badlength wrong Content-Length
  html200    an HTML page served with 200       slow      answer after --slow seconds
plus --rate-limit N (429 above N req/s) and --block N,WINDOW,SECONDS (after N requests in
WINDOW seconds, 403 HTML to every request for SECONDS, like the Met's front end).

Protection mode (--protect RATE[,WINDOW[,SECONDS]][;AT=RATE...] or --protect random[:SEED]):
a hidden sliding-window limit on the *API* requests (met/protection.py: more than
RATE x WINDOW requests within WINDOW s blocks every API request with 403 HTML for SECONDS;
`;AT=RATE` changes the limit AT seconds after the first request). Images are then served
by a second server on its own port (another host to the client, paced and blocked
separately, and never limited); fetch needs `--allow-host 127.0.0.1` to download from it.
API answers set bot-protection cookies (`visid_incap_*`, `incap_ses_*`) as the real front
end does; `/_emulator/stats` counts requests that sent them back.

example:
  metfaces-build emulator --faults 429,5xx,reset --fault-rate 0.2
  metfaces-build fetch --api http://127.0.0.1:PORT/public/collection/v1 --departments 11
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import io
import json
import shutil
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from .protection import FrontEnd, Protection
from .sample_collection import (DEPARTMENTS, DEPT_NAME, DEPT_STYLE, SampleObject,
                                load_collection, reshoot_files, truth)

API_PREFIX = "/public/collection/v1"
FAULT_KINDS = ("403html", "429", "5xx", "reset", "truncate", "badlength", "html200", "slow")
SYNTHETIC_BASE = 900000
SYNTHETIC_DATE = "2023-01-01T00:00:00Z"  # metadataDate of the filler objects
WITHDRAWALS = ("rights", "image", "removed")
# what can go wrong with one object's image while its record is fine (EmulatorHandle.break_image)
IMAGE_BREAKS = ("404", "corrupt", "elsewhere", "reset")
ELSEWHERE = "http://images.example.invalid"  # a host outside fetch's allow-list
CORRECTABLE = ("title", "artist", "begin", "end", "medium", "classification", "is_highlight")
BAD_GATEWAY_PAGE = (b"<!DOCTYPE html>\n<html><head><title>502 - Web server received an invalid response "
                    b"while acting as a gateway or proxy server.</title></head><body><h1>Server Error</h1>"
                    b"</body></html>\n")
BLOCK_PAGE = (b"<html><head><META NAME=\"robots\" CONTENT=\"noindex,nofollow\"></head><body>"
              b"Request unsuccessful. Incapsula incident ID: 0-1234567890</body></html>")


@dataclass(frozen=True)
class BlockRule:
    """After `requests` requests within `window` s, answer 403 HTML to all for `duration` s."""
    requests: int
    window: float
    duration: float


@dataclass
class FaultConfig:
    faults: tuple = ()
    fault_rate: float = 0.0
    seed: int = 0
    rate_limit: float = 0.0     # req/s per client; 0 = off
    block: Optional[BlockRule] = None
    retry_after: float = 1.0    # seconds sent with 429 / 503
    slow_delay: float = 2.0
    protection: Optional[Protection] = None  # hidden limit on API requests (protection mode)

    def __post_init__(self):
        bad = [f for f in self.faults if f not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault(s) {', '.join(bad)}; choose from {', '.join(FAULT_KINDS)}")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError(f"fault rate must be within 0..1, got {self.fault_rate}")


@dataclass
class Stats:
    requests: int = 0
    by_status: dict = field(default_factory=collections.Counter)
    faults: dict = field(default_factory=collections.Counter)
    blocked: int = 0
    rate_limited: int = 0
    protection_blocks: list = field(default_factory=list)  # seconds after the first API request
    api_requests: int = 0
    image_requests: int = 0
    with_cookie: int = 0        # API requests that sent the front end's cookie back

    def to_json(self) -> dict:
        return {"requests": self.requests, "by_status": dict(self.by_status),
                "faults": dict(self.faults), "blocked": self.blocked, "rate_limited": self.rate_limited,
                "protection_blocks": list(self.protection_blocks), "api_requests": self.api_requests,
                "image_requests": self.image_requests, "with_cookie": self.with_cookie}


class _State:
    """Everything the handler threads share: collection, faults, counters, limits."""

    def __init__(self, collection, faults: FaultConfig, synthetic: int):
        self.collection = collection
        self.objects = collection.by_id()
        self.changes: list = []  # list[Change], in the order they were made
        self.cfg = faults
        self.synthetic = synthetic
        self.lock = threading.Lock()
        self.stats = Stats()
        self.per_path = collections.Counter()
        self.paths = collections.Counter()  # every API/image path requested (tests: what was asked)
        self.tokens: dict = {}
        self.recent: dict = collections.defaultdict(collections.deque)
        self.blocked_until: dict = {}
        self.image_breaks: dict = {}  # obj id -> one of IMAGE_BREAKS
        self.front_ends: dict = {}  # client -> FrontEnd (protection mode)
        self.image_base: Optional[str] = None  # the image server's URL (protection mode)

    def protected(self, client: str) -> bool:
        """False when protection mode blocks this API request (and counts it)."""
        p = self.cfg.protection
        if p is None:
            return True
        now = time.monotonic()
        with self.lock:
            fe = self.front_ends.get(client)
            if fe is None or fe.protection != p:
                fe = self.front_ends[client] = FrontEnd(p)
            before = fe.blocks
            ok = fe.admit(now)
            if fe.blocks > before:
                self.stats.protection_blocks.append(round(now - fe.first, 2))
            if not ok:
                self.stats.blocked += 1
        return ok

    def snapshot(self) -> tuple:
        """(collection, {id: object}) as of now: a change replaces both together, so a
        request reads one consistent version."""
        with self.lock:
            return self.collection, self.objects

    def replace_objects(self, objects: list, overlay=None) -> None:
        with self.lock:
            self.collection = dataclasses.replace(self.collection, objects=objects,
                                                  overlay=overlay or self.collection.overlay)
            self.objects = self.collection.by_id()

    def decide_fault(self, key: str) -> Optional[str]:
        """Deterministic per path: the n-th request for a path always gets the same fate."""
        if not self.cfg.faults or self.cfg.fault_rate <= 0:
            return None
        with self.lock:
            self.per_path[key] += 1
            n = self.per_path[key]
        h = hashlib.sha256(f"{self.cfg.seed}:{key}:{n}".encode()).digest()
        if int.from_bytes(h[:4], "big") / 2 ** 32 >= self.cfg.fault_rate:
            return None
        return self.cfg.faults[h[4] % len(self.cfg.faults)]

    def admission(self, client: str) -> Optional[str]:
        """'blocked' or 'rate' when the front end would refuse this request, else None."""
        now = time.monotonic()
        with self.lock:
            rule = self.cfg.block
            if rule is not None:
                if now < self.blocked_until.get(client, 0):
                    self.stats.blocked += 1
                    return "blocked"
                q = self.recent[client]
                q.append(now)
                while q and q[0] < now - rule.window:
                    q.popleft()
                if len(q) > rule.requests:
                    self.blocked_until[client] = now + rule.duration
                    q.clear()
                    self.stats.blocked += 1
                    return "blocked"
            if self.cfg.rate_limit > 0:
                cap = max(1.0, self.cfg.rate_limit)
                tokens, last = self.tokens.get(client, (cap, now))
                tokens = min(cap, tokens + (now - last) * self.cfg.rate_limit)
                if tokens < 1:
                    self.tokens[client] = (tokens, now)
                    self.stats.rate_limited += 1
                    return "rate"
                self.tokens[client] = (tokens - 1, now)
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MetEmulator/1"
    state: _State  # set on a subclass per server
    images_only = False  # the image server of protection mode

    def log_message(self, fmt, *args):  # quiet: tests and demo read stats instead
        pass

    def do_GET(self):  # noqa: N802
        st = self.state
        with st.lock:
            st.stats.requests += 1
        u = urlsplit(self.path)
        if u.path.startswith("/_emulator/"):
            return self._emulator_path(u)
        with st.lock:
            st.paths[u.path] += 1
        is_api = u.path.startswith(API_PREFIX + "/")
        if is_api == self.images_only and (is_api or st.image_base):  # each server its own kind
            return self._send(404, b"<html><body>Not Found</body></html>", "text/html")
        if is_api:
            with st.lock:
                st.stats.api_requests += 1
                st.stats.with_cookie += "incap_ses_" in (self.headers.get("Cookie") or "")
            if not st.protected(self.client_address[0]):
                return self._send(403, BLOCK_PAGE, "text/html; charset=utf-8")
        else:
            with st.lock:
                st.stats.image_requests += 1
        refusal = st.admission(self.client_address[0])
        if refusal == "blocked":
            return self._send(403, BLOCK_PAGE, "text/html; charset=utf-8")
        if refusal == "rate":
            return self._send(429, b'{"message": "Too Many Requests"}', "application/json",
                              {"Retry-After": _num(st.cfg.retry_after)})
        fault = st.decide_fault(self.path)
        if fault:
            with st.lock:
                st.stats.faults[fault] += 1
        if fault == "slow":
            time.sleep(st.cfg.slow_delay)
        elif fault == "reset":
            return self._reset()
        elif fault == "403html":
            return self._send(403, BLOCK_PAGE, "text/html; charset=utf-8")
        elif fault == "429":
            return self._send(429, b'{"message": "Too Many Requests"}', "application/json",
                              {"Retry-After": _num(st.cfg.retry_after)})
        elif fault == "5xx":
            code = (500, 502, 503)[len(self.path) % 3]
            extra = {"Retry-After": _num(st.cfg.retry_after)} if code == 503 else None
            return self._send(code, b"<html><body>Service Unavailable</body></html>", "text/html", extra)
        if u.path.startswith("/CRDImages/") and self._image_break(u.path.split("/")) == "reset":
            return self._reset()
        status, body, ctype = self._route(u)
        self._send(status, body, ctype, fault=fault)

    # -- routing --
    def _route(self, u):
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        path = u.path
        if path == API_PREFIX + "/objects/":
            return _json(404, {"message": "Not Found"})
        if path.startswith(API_PREFIX + "/"):
            return self._api(path[len(API_PREFIX) + 1:].rstrip("/"), q)
        if path.startswith("/CRDImages/"):
            parts = path.split("/")
            broken = self._image_break(parts)
            if broken == "404":
                return 404, b"<html><body>Not Found</body></html>", "text/html"
            if broken == "corrupt":  # a JPEG's first bytes, then noise
                return 200, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + hashlib.sha256(path.encode()).digest() * 64, \
                    "image/jpeg"
            if len(parts) == 5 and parts[2] == "syn" and self.state.image_base:
                return 200, _filler_jpeg(), "image/jpeg"
            if len(parts) == 5:
                p = self.state.snapshot()[0].image_path(parts[2], parts[3], parts[4])
                if p is not None:
                    ctype = "image/png" if p.suffix == ".png" else "image/jpeg"
                    return 200, p.read_bytes(), ctype
        return 404, b"<html><body>Not Found</body></html>", "text/html"

    def _image_break(self, parts: list) -> Optional[str]:
        """How the image at /CRDImages/{code}/{size}/{name} is broken now, if it is."""
        st = self.state
        with st.lock:
            breaks = dict(st.image_breaks)
        if not breaks or len(parts) != 5:
            return None
        objects = st.snapshot()[1]
        for oid, how in breaks.items():
            obj = objects.get(oid)
            if obj is not None and obj.image_file == f"{parts[2]}/{parts[4]}":
                return how
        return None

    def _api(self, rest: str, q: dict):
        st = self.state
        collection, objects = st.snapshot()
        base = st.image_base or f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"
        if rest == "departments":
            return _json(200, {"departments": [{"departmentId": i, "displayName": n} for i, n in DEPARTMENTS]})
        if rest == "objects":
            ids = [o.id for o in collection.objects]
            deps = q.get("departmentIds")
            if deps:
                try:
                    wanted = {int(d) for d in deps.split("|")}
                except ValueError:  # the real front end answers an HTML error page
                    return 502, BAD_GATEWAY_PAGE, "text/html"
                ids = [o.id for o in collection.objects if o.department_id in wanted]
                synth = 21 in wanted
            else:
                synth = True
            since = q.get("metadataDate")
            if since:
                if not _is_date(since):  # a bare JSON string, not an object, as the real API
                    return _json(400, "The request is invalid.")
                ids = [i for i in ids if objects[i].metadata_date[:10] >= since]
                synth = synth and SYNTHETIC_DATE[:10] >= since
            ids = _with_duplicates(ids)
            if synth:
                ids += list(range(SYNTHETIC_BASE + 1, SYNTHETIC_BASE + st.synthetic + 1))
            return _json(200, {"total": len(ids), "objectIDs": ids})
        if rest.startswith("objects/"):
            sid = rest[len("objects/"):]
            if not sid.isdigit():
                return _json(400, {"message": "could not parse objectID"})
            oid = int(sid)
            if oid in objects:
                with st.lock:
                    elsewhere = st.image_breaks.get(oid) == "elsewhere"
                return _json(200, objects[oid].record(ELSEWHERE if elsewhere else base))
            if SYNTHETIC_BASE < oid <= SYNTHETIC_BASE + st.synthetic:
                return _json(200, _synthetic_record(oid, st.image_base))
            if any(c.obj_id == oid and c.kind == "withdraw:removed" for c in st.changes):
                return _json(404, {"message": "Not a valid object"})  # as loans and withdrawn objects
            return _json(404, {"message": "ObjectID not found"})
        if rest == "search":
            if not q.get("q"):
                return 502, BAD_GATEWAY_PAGE, "text/html"
            ids = search(collection.objects, q)
            return _json(200, {"total": len(ids or []), "objectIDs": ids})
        return _json(404, {"message": "Not Found"})

    def _emulator_path(self, u):
        st = self.state
        base = st.image_base or f"http://{self.headers.get('Host')}"
        if u.path == "/_emulator/truth.json":
            md5 = parse_qs(u.query).get("md5", ["0"])[-1] == "1"
            return self._send(200, json.dumps(truth(st.snapshot()[0], base, with_md5=md5)).encode(),
                              "application/json")
        if u.path == "/_emulator/stats":
            with st.lock:
                data = st.stats.to_json()
            return self._send(200, json.dumps(data).encode(), "application/json")
        if u.path == "/_emulator/health":
            return self._send(200, b'{"ok": true}', "application/json")
        self._send(404, b'{"message": "Not Found"}', "application/json")

    # -- sending, with body-level faults --
    def _send(self, status: int, body: bytes, ctype: str, headers: Optional[dict] = None,
              fault: Optional[str] = None):
        with self.state.lock:
            self.state.stats.by_status[str(status)] += 1
        declared, cut, close = len(body), len(body), False
        if fault == "html200":
            status, body = 200, b"<!DOCTYPE html><html><body>Please enable JavaScript</body></html>"
            declared = cut = len(body)
            if len(self.path) % 2:  # half the time it even lies about the type
                ctype = "text/html; charset=utf-8"
        elif fault == "truncate":
            cut, close = len(body) // 2, True
        elif fault == "badlength":
            delta = max(1, len(body) // 10)
            declared = len(body) + delta if len(self.path) % 2 else len(body) - delta
            cut, close = min(len(body), declared), True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(declared))
        if not self.images_only and self.path.startswith(API_PREFIX + "/"):
            for cookie in _incapsula_cookies(self.headers.get("Cookie") or ""):
                self.send_header("Set-Cookie", cookie)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(body[:cut])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _reset(self):
        """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


_FILLER = []


def _filler_jpeg() -> bytes:
    """The small image every filler object has in protection mode (made once)."""
    if not _FILLER:
        buf = io.BytesIO()
        Image.new("RGB", (48, 32), (120, 90, 60)).save(buf, "JPEG")
        _FILLER.append(buf.getvalue())
    return _FILLER[0]


def _incapsula_cookies(sent: str) -> list:
    """The bot-protection cookies the real front end sets (values redacted in the
    recordings): a visitor id once, and a session cookie until the client sends it back."""
    out = []
    if "visid_incap_" not in sent:
        out.append("visid_incap_2871153=emulator0visitor; expires=Sat, 01 Jan 2028 00:00:00 GMT; "
                   "HttpOnly; path=/")
    if "incap_ses_" not in sent:
        out.append("incap_ses_1234_2871153=emulator0session; path=/")
    return out


def _json(status: int, data) -> tuple:
    """A JSON answer as the real API writes it: compact, UTF-8, ending with a newline."""
    return status, (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode(), \
        "application/json"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _is_date(s: str) -> bool:
    try:
        datetime.date.fromisoformat(s)
        return True
    except ValueError:
        return False


def _with_duplicates(ids: list) -> list:
    """The real lists repeat some ids: every 5th id appears twice, the repeat a bit later."""
    out = list(ids)
    for k, i in enumerate(ids):
        if k % 5 == 1:
            out.insert(min(len(out), k + 3), i)
    return out


def _synthetic_record(oid: int, image_base: Optional[str] = None) -> dict:
    """Filler objects for benchmarks and long listings: no image, or with a separate image
    server (protection mode) a small one there. Every key of a real record, in its order,
    with its types and quirks (an HTML-escaped constituent, CRLF in dimensions)."""
    url = f"{image_base}/CRDImages/syn/original/{oid}.jpg" if image_base else ""
    rec = SampleObject(oid, 21, f"Untitled {oid}", "", 0, 0, "noface", metadata_date=SYNTHETIC_DATE).record("")
    rec.update({"primaryImage": url, "primaryImageSmall": url, "objectName": "Print",
                "accessionNumber": f"1987.{oid % 1000}", "objectURL": "", "artistRole": "",
                "objectDate": "", "creditLine": "", "repository": "Metropolitan Museum of Art, New York, NY",
                "dimensions": "Image: 10 x 8 in. (25.4 x 20.3 cm)\r\nSheet: 12 x 10 in.",
                "constituents": [{"constituentID": 4321, "role": "Publisher", "name": "Underwood &amp; Underwood",
                                  "constituentULAN_URL": "", "constituentWikidata_URL": "", "gender": ""}]})
    return rec


def search(objects: list, q: dict) -> Optional[list]:
    """The /search filters over the sample objects; None (JSON null) when nothing matches."""
    term = (q.get("q") or "").strip().lower()

    def truthy(k):
        return q.get(k, "").lower() == "true"
    out = []
    for o in objects:
        fields = [o.title] if truthy("title") else [o.title, o.artist, o.medium, o.classification, o.department]
        if truthy("artistOrCulture"):
            fields = [o.artist]
        if truthy("tags"):
            fields = ["portraits"] if o.faces else []
        if term and term != "*" and not any(term in f.lower() for f in fields):
            continue
        # like the real API, hasImages=true still returns objects whose record has no image
        if truthy("hasImages") and not o.image_file and o.kind != "no_image":
            continue
        if q.get("departmentId") and str(o.department_id) != q["departmentId"]:
            continue
        if truthy("isHighlight") and not o.is_highlight:
            continue
        if q.get("medium") and not any(m.lower() in (o.classification + " " + o.medium).lower()
                                       for m in q["medium"].split("|")):
            continue
        if q.get("dateBegin") and q.get("dateEnd"):
            try:
                b, e = int(q["dateBegin"]), int(q["dateEnd"])
            except ValueError:
                continue
            if o.end < b or o.begin > e:
                continue
        out.append(o.id)
    if not out:
        return None
    return out + out[1:2]  # a duplicate, as the real search sometimes returns


# ---- a collection that changes ------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One change made to the served collection (what, to which object, its new metadataDate)."""
    obj_id: int
    kind: str          # reshoot | correct | add | withdraw:rights | withdraw:image | withdraw:removed
    metadata_date: str
    detail: str = ""


def metadata_date(when: Optional[str] = None) -> str:
    """A metadataDate as the API writes it ("2023-02-07T04:46:50.463Z"): now, or `when`
    given as YYYY-MM-DD or a full ISO timestamp."""
    if when is None:
        now = datetime.datetime.now(datetime.timezone.utc)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    try:
        if len(when) == 10:
            datetime.date.fromisoformat(when)
            return when + "T00:00:00Z"
        datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
        return when
    except ValueError:
        raise ValueError(f"expected a date YYYY-MM-DD or an ISO timestamp, got {when!r}") from None


# ---- running it -----------------------------------------------------------------------

class EmulatorHandle:
    """A running emulator: `.api_root` for `fetch --api`, `.stop()` when done."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, state: _State):
        self.server, self.thread, self.state = server, thread, state
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.api_root = self.url + API_PREFIX
        self.port = port
        self._change_lock = threading.Lock()  # one change at a time (they read-modify-write)
        self._overlay_dir = None              # images written by changes; removed by stop()
        self.image_server: Optional[ThreadingHTTPServer] = None  # protection mode's image host

    @property
    def image_url(self) -> str:
        """Where images are served: this server, or the image server of protection mode."""
        return self.state.image_base or self.url

    @property
    def collection(self):
        """The collection as served now (a new object after each change)."""
        return self.state.snapshot()[0]

    def truth(self, with_md5: bool = False) -> list:
        """Ground truth, metfaces.json-compatible (see sample_collection.truth); `with_md5`
        fills source_md5 (a PNG encode per original: ~2 s each the first time, then cached)."""
        return truth(self.collection, self.image_url, with_md5=with_md5)

    def records(self) -> dict:
        """{id: API record} of every sample object, as served."""
        return {o.id: o.record(self.image_url) for o in self.collection.objects}

    def stats(self) -> dict:
        with self.state.lock:
            return self.state.stats.to_json()

    def requested(self, prefix: str = "") -> collections.Counter:
        """{path: times requested} of API and image paths starting with `prefix` (e.g.
        API_PREFIX + "/objects/" for object records, "/CRDImages/" for images)."""
        with self.state.lock:
            return collections.Counter({p: n for p, n in self.state.paths.items() if p.startswith(prefix)})

    def object_requests(self) -> collections.Counter:
        """{object id: record requests}."""
        pre = API_PREFIX + "/objects/"
        return collections.Counter({int(p[len(pre):]): n for p, n in self.requested(pre).items()
                                    if p[len(pre):].isdigit()})

    def reset_requests(self) -> None:
        """Forget the paths requested so far (a test measures one step)."""
        with self.state.lock:
            self.state.paths.clear()

    # -- changing the collection (each change gives the object a new metadataDate: now, or `date`) --
    def reshoot(self, oid: int, rename: bool = False, date: Optional[str] = None):
        """Photograph object `oid` again: new image bytes (same composition, so its faces
        stay true), served at the same URL, or at a new file name with `rename`."""
        with self._change_lock:
            obj = self._object(oid)
            code, name = obj.image_file.split("/") if obj.image_file else ("", "")
            if rename:
                name = f"DT{oid}-{sum(c.obj_id == oid and c.kind == 'reshoot' for c in self.changes) + 2}.jpg"
            reshoot_files(self.state.collection, obj, self._overlay(), f"{code}/{name}")
            new = dataclasses.replace(obj, image_file=f"{code}/{name}", metadata_date=metadata_date(date))
            self._put(new, Change(oid, "reshoot", new.metadata_date, new.image_file))
            return new

    def correct(self, oid: int, date: Optional[str] = None, **fields):
        """Correct the record of `oid` (any of CORRECTABLE, e.g. title=..., artist=...)."""
        bad = sorted(set(fields) - set(CORRECTABLE))
        if bad or not fields:
            raise ValueError(f"correct: give some of {', '.join(CORRECTABLE)}; "
                             f"got {', '.join(bad) or 'none'}")
        with self._change_lock:
            new = dataclasses.replace(self._object(oid), **fields, metadata_date=metadata_date(date))
            detail = ", ".join(f"{k}={v!r}" for k, v in sorted(fields.items()))
            self._put(new, Change(oid, "correct", new.metadata_date, detail))
            return new

    def add_object(self, department_id: int = 11, title: Optional[str] = None, like: Optional[int] = None,
                   date: Optional[str] = None):
        """A new object in `department_id` (a new id after the highest), photographed like
        object `like` (default: the first object with faces), so its faces are known."""
        if department_id not in DEPT_NAME:
            raise ValueError(f"unknown department id {department_id}")
        with self._change_lock:
            objs = self.state.collection.objects
            template = (self._object(like) if like is not None else
                        next(o for o in objs if o.kind == "faces"))
            oid = max(o.id for o in objs) + 7
            code, _, medium, cls = DEPT_STYLE.get(department_id, (template.image_file.split("/")[0], (),
                                                                  template.medium, template.classification))
            image_file = f"{code}/DT{oid}.jpg"
            reshoot_files(self.state.collection, template, self._overlay(), image_file)
            new = dataclasses.replace(template, id=oid, department_id=department_id, medium=medium,
                                      classification=cls, title=title or template.title,
                                      image_file=image_file, is_highlight=False,
                                      metadata_date=metadata_date(date))
            self._put(new, Change(oid, "add", new.metadata_date, f"like {template.id}"))
            return new

    def withdraw(self, oid: int, how: str = "rights", date: Optional[str] = None):
        """Withdraw `oid`: "rights" (no longer public domain: isPublicDomain false, no image
        URLs), "image" (the record loses its image) or "removed" (404, in no listing)."""
        if how not in WITHDRAWALS:
            raise ValueError(f"withdraw: how must be one of {', '.join(WITHDRAWALS)}, got {how!r}")
        with self._change_lock:
            obj = self._object(oid)
            kind = {"rights": "not_pd", "image": "no_image"}.get(how, obj.kind)
            new = dataclasses.replace(obj, kind=kind, image_file="", faces=[], width=0, height=0,
                                      metadata_date=metadata_date(date))
            self._put(None if how == "removed" else new, Change(oid, f"withdraw:{how}", new.metadata_date),
                      oid)
            return new

    def break_image(self, oid: int, how: str = "404") -> None:
        """Make object `oid`'s image fail while its record stays fine: "404" (a CDN that
        has not got a re-shot file yet), "corrupt" (JPEG magic, then noise), "elsewhere"
        (the record names its images on a host outside fetch's allow-list) or "reset"
        (the connection is reset). Lasts until `mend_image`."""
        if how not in IMAGE_BREAKS:
            raise ValueError(f"break_image: how must be one of {', '.join(IMAGE_BREAKS)}, got {how!r}")
        self._object(oid)
        with self.state.lock:
            self.state.image_breaks[int(oid)] = how

    def mend_image(self, oid: int) -> None:
        """Serve object `oid`'s image normally again."""
        with self.state.lock:
            self.state.image_breaks.pop(int(oid), None)

    @property
    def changes(self) -> list:
        """Every change made so far, oldest first."""
        with self.state.lock:
            return list(self.state.changes)

    def _object(self, oid: int):
        obj = self.state.objects.get(int(oid))
        if obj is None:
            raise KeyError(f"object {oid} is not in the emulator's collection")
        return obj

    def _overlay(self):
        if self._overlay_dir is None:
            self._overlay_dir = Path(tempfile.mkdtemp(prefix="metfaces-emulator-changes-"))
        return self._overlay_dir

    def _put(self, new, change: Change, drop: Optional[int] = None) -> None:
        """Replace (or with `new` None, remove) one object; the collection swaps atomically."""
        gone = drop if new is None else new.id
        objs = [o for o in self.state.collection.objects if o.id != gone]
        if new is not None:
            objs.append(new)
        objs.sort(key=lambda o: o.id)
        self.state.replace_objects(objs, self._overlay_dir)
        with self.state.lock:
            self.state.changes.append(change)

    def set_faults(self, **changes) -> None:
        """Change faults while running (tests: a rerun after the outage ends)."""
        with self.state.lock:
            self.state.cfg = dataclasses.replace(self.state.cfg, **changes)

    def stop(self) -> None:
        for server in (self.server, self.image_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        self.thread.join(timeout=5)
        if self._overlay_dir is not None:
            shutil.rmtree(self._overlay_dir, ignore_errors=True)

    def __enter__(self) -> "EmulatorHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):  # resets and cut bodies are on purpose
        pass


def start_emulator(faults=(), fault_rate: float = 0.0, rate_limit: float = 0.0,
                   block: Optional[BlockRule] = None, seed: int = 0, retry_after: float = 1.0,
                   slow_delay: float = 2.0, host: str = "127.0.0.1", port: int = 0,
                   synthetic: int = 0, cache_dir=None, log=None, protection=None,
                   separate_images: Optional[bool] = None) -> EmulatorHandle:
    """Start the emulator in a background thread and return its handle.

    `faults` is a list or a comma-separated string of FAULT_KINDS; `block` a BlockRule or a
    (requests, window, duration) tuple; `synthetic` adds that many filler objects (ids
    900001...) to the /objects listing, for benchmarks. `protection` (a Protection or its
    text, see Protection.parse) hides a limit on API requests; with it (or
    `separate_images`) images come from a second server (`handle.image_url`), and the
    fillers get a small image each there.
    """
    if isinstance(faults, str):
        faults = [f.strip() for f in faults.split(",") if f.strip()]
    if isinstance(block, (tuple, list)):
        block = BlockRule(*block)
    if isinstance(protection, str):
        protection = Protection.parse(protection)
    cfg = FaultConfig(tuple(faults), fault_rate, seed, rate_limit, block, retry_after, slow_delay,
                      protection)
    collection = load_collection(cache_dir, log=log)
    state = _State(collection, cfg, synthetic)
    server = _Server((host, port), type("Handler", (_Handler,), {"state": state}))
    thread = threading.Thread(target=server.serve_forever, name="met-emulator", daemon=True)
    images = None
    if separate_images or (separate_images is None and protection is not None):
        images = _Server((host, 0), type("ImageHandler", (_Handler,), {"state": state, "images_only": True}))
        state.image_base = "http://%s:%d" % images.server_address[:2]
        threading.Thread(target=images.serve_forever, name="met-emulator-images", daemon=True).start()
    thread.start()
    handle = EmulatorHandle(server, thread, state)
    handle.image_server = images
    return handle
