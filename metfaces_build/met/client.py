"""Met Collection API client: paced, retried, and suspicious of what it is served.

The Met's front end answers bursts with a 403 HTML page to *every* request for 30 s or
more, plus 429/5xx at times (see MET_API notes in the README). So all worker threads share
one `Pacer` (a token bucket): a block pauses everyone together (a shared cool-down), after
which the rate drops and creeps back up. Each request is retried by tenacity with
exponential backoff and jitter, honouring `Retry-After`; a 404 is final. Bodies are
validated before use: an HTML page is never taken for JSON or image data, downloads are
checked (length, magic bytes, full decode, pixel limit) in a temp file and only then
renamed into place. Image URLs must be on an allowed host.

Failures come back as `FetchFailure(status, reason, attempts)`: a value for the record,
not a crash. `ApiOutage` ends a run cleanly when the API has been down too long.
"""
from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import http.client
import os
import random
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import urljoin, urlsplit

from .. import PROJECT_URL, __version__
from ..core.records import MAX_OBJECT_ID, as_object_id, clean_text  # noqa: F401 (re-exported)
from ..core.status import BAD_CONTENT, HTTP_ERROR, NOT_FOUND, REFUSED, TOO_LARGE
from ..infra.files import TMP_PREFIX, default_file_mode, loads
from ..infra.images import DEFAULT_MAX_PIXELS, ImageProblem, open_image, sniff_image_type
from .pacing import PaceEstimate, Pacer, Pacing, host_of  # noqa: F401 (Pacer re-exported)
from .shapes import department_aliases

DEFAULT_API = "https://collectionapi.metmuseum.org/public/collection/v1"
MET_IMAGE_HOST = "images.metmuseum.org"
USER_AGENT = f"metfaces-build/{__version__} (+{PROJECT_URL})"
MAX_REDIRECTS = 5
CHUNK = 1 << 20
# Object ids are stored as int64 (numpy); larger "ids" are not ids.
# A JSON answer larger than this, decoded, is refused: the full /objects listing (~500k
# ids) is ~5 MB, so 64 MiB is generous and still bounds memory against a gzip bomb.
MAX_JSON_BYTES = 64 << 20
# An image's decoded body may be at most this many times its encoded (gzip) size: images
# are compressed already, so a server's gzip gains little; a bomb gains ~1000x.
MAX_IMAGE_EXPANSION = 32
# What parse_retry_after reports at most (~31 years): "wait forever" stays a finite float.
RETRY_AFTER_LIMIT = 1e9
# An error page is only quoted: read at most this much of it.
MAX_ERROR_BODY = 1 << 16


# ---- outcomes ------------------------------------------------------------------------

class FetchFailure(Exception):
    """A request that ended without usable data; `status` goes into objects.jsonl."""

    def __init__(self, status: str, reason: str, attempts: int = 1, http_status: int = 0,
                 width: int = 0, height: int = 0):
        super().__init__(reason)
        self.status, self.reason, self.attempts = status, reason, attempts
        self.http_status, self.width, self.height = http_status, width, height


class Transient(Exception):
    """One failed attempt worth retrying; becomes a FetchFailure(status) when retries run out."""

    def __init__(self, status: str, reason: str, retry_after: Optional[float] = None,
                 http_status: int = 0):
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.retry_after, self.http_status = retry_after, http_status


class ApiOutage(Exception):
    """No successful request for longer than `max_outage`: stop, everything stays resumable."""


@dataclass(frozen=True)
class ApiJson:
    """A JSON answer: parsed data, the bytes exactly as served, and attempts used."""
    data: Any
    raw: bytes
    attempts: int


@dataclass(frozen=True)
class Download:
    """An image checked and renamed into place."""
    path: Path
    ext: str
    bytes: int
    sha256: str
    md5: str
    width: int
    height: int
    attempts: int


@dataclass(frozen=True)
class Department:
    id: int
    name: str


@dataclass
class ClientConfig:
    """Everything that decides how hard and how patiently we talk to the API."""
    api_root: str = DEFAULT_API
    rate: Optional[float] = None   # ceiling in requests/s per host, shared by all threads
    #                                (None: pacing.DEFAULT_CEILING); see met/pacing.py
    start_rate: Optional[float] = None  # first pace of a host nothing was learned about
    remember_pace: bool = True     # start from, and save, the paces learned (pacing.pace_file)
    pace_file: Optional[Path] = None
    retries: int = 8               # extra attempts after the first
    timeout: float = 60.0          # read timeout (s): the longest gap between bytes
    total_timeout: float = 0.0     # bound on one request, headers to last byte (s); 0: 10 x timeout
    connect_timeout: float = 10.0
    backoff_base: float = 1.0      # first backoff (s), doubled each attempt, with jitter
    backoff_max: float = 60.0      # cap on one backoff (s)
    retry_after_max: float = 600.0  # cap on an honoured Retry-After (s)
    cooldown: float = 30.0         # shared pause after a 403 block page without Retry-After
    max_outage: float = 900.0      # give up the run after this long without one success
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = 2 << 30       # cap on one image download, decoded
    max_json_bytes: int = MAX_JSON_BYTES
    allowed_hosts: tuple = ()      # extra image hosts (besides the API's and the Met's)
    pool_size: int = 16


# ---- pure helpers ----------------------------------------------------------------------

def image_url_problem(url: str, api_root: str, extra_hosts: Iterable[str] = ()) -> Optional[str]:
    """Why `url` may not be downloaded (scheme or host not allowed), or None if it may.

    Allowed: http/https on the API's own host:port (so the emulator serves its images),
    the Met image host, or a host named in `extra_hosts`. The decision is made on the URL
    exactly as requests will send it (prepared, then split by urllib3 as the connection
    pool does), and refused whenever urllib.parse reads another host or port from it:
    parsers disagree about backslashes, '@' and stray characters, and an allow-list is
    only as good as the parser it shares with the HTTP library. Credentials in the URL
    (which requests would send as Basic auth) are refused outright.
    """
    if not isinstance(url, str) or not url:
        return "empty URL"
    shown = _short(repr(url))
    if "\\" in url:
        return f"backslash in URL {shown} (parsers disagree on where its host ends)"
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in url):
        return f"control character in URL {shown}"
    try:
        u, api = urlsplit(url), urlsplit(api_root)
        port, api_port = _effective_port(u), _effective_port(api)
    except ValueError as e:
        return f"malformed URL {shown}: {e}"
    if u.scheme not in ("http", "https"):
        return f"scheme {u.scheme or '(none)'!r} not allowed (http/https only): {shown}"
    if "@" in u.netloc or "%40" in u.netloc.lower():
        return f"credentials (user@) in URL {_redact(url)} refused"
    host = (u.hostname or "").lower()
    if not host:
        return f"no host in URL {shown}"
    sent = _as_sent(url)
    if isinstance(sent, str):
        return f"malformed URL {shown}: {sent}"
    s_scheme, s_host, s_port, s_auth = sent
    if s_auth:
        return f"credentials (user@) in URL {_redact(url)} refused"
    if (s_scheme, s_host, s_port) != (u.scheme, host, port):
        return (f"URL {shown} is ambiguous: requests would connect to {s_host}:{s_port}, "
                f"not {host}:{port}")
    if host == (api.hostname or "").lower() and port == api_port:
        return None
    if host == MET_IMAGE_HOST or host in {h.lower() for h in extra_hosts}:
        return None
    return f"host {host!r} is not an allowed image host ({MET_IMAGE_HOST}, the API host, or --allow-host)"


def _as_sent(url: str):
    """(scheme, host, port, auth) of `url` as requests + urllib3 will connect, or why not."""
    try:
        # heavy (~0.2 s): deferred, the CLI starts fast
        from requests.models import PreparedRequest
        from urllib3.util import parse_url
        pr = PreparedRequest()
        pr.prepare_url(url, None)
        p = parse_url(pr.url)
    except Exception as e:  # InvalidURL, LocationParseError, UnicodeError, ...
        return f"{type(e).__name__}: {_short(str(e))}"
    scheme = (p.scheme or "").lower()
    port = p.port or (443 if scheme == "https" else 80)
    return scheme, (p.host or "").lower().strip("[]"), port, p.auth


def _redact(url: str) -> str:
    """The URL with its userinfo replaced: passwords do not go into journals or logs."""
    try:
        u = urlsplit(url)
        return _short(repr(u._replace(netloc="***@" + u.netloc.rpartition("@")[2]).geturl()))
    except ValueError:
        return "(unparseable)"


def _effective_port(u) -> int:
    return u.port or (443 if u.scheme == "https" else 80)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (seconds or HTTP date), or None.

    Always finite and at most RETRY_AFTER_LIMIT: a date in the year 10^19, a timezone
    offset that overflows, or "1e999" is read as "very long" (the caller caps what it
    honours), never raises. NaN and anything unparseable are None.
    """
    if value is None:
        return None
    value = value.strip()[:200]
    try:
        secs = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when is None:
                return None
            now = time.time() if now is None else now
            secs = when.timestamp() - now
        except (OverflowError, OSError):  # a year or offset beyond datetime's range
            return RETRY_AFTER_LIMIT
        except (TypeError, ValueError, IndexError):
            return None
    if secs != secs:
        return None
    return min(max(0.0, secs), RETRY_AFTER_LIMIT)


def parse_object_ids(data: Any) -> list:
    """The `objectIDs` of a list or search answer; `null` means none, non-integers are dropped."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    ids = data.get("objectIDs")
    if ids is None:
        return []
    if not isinstance(ids, list):
        raise ValueError(f"objectIDs: expected a list or null, got {type(ids).__name__}")
    out = []
    for v in ids:
        oid = as_object_id(v)
        if oid is not None:
            out.append(oid)
    return out


def decode_json(body: bytes) -> Any:
    """A JSON answer from the network, parsed; ValueError (with the reason) when unusable.

    Invalid UTF-8 is replaced (a title with one bad byte keeps its record), NaN/Infinity
    become null, nesting too deep for Python is a ValueError, not a RecursionError.
    """
    text = body.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return loads(text)


def looks_like_html(content_type: str, body_head: bytes) -> bool:
    """An HTML page (a block page or an error served as 200), by type or by its first byte:
    no JSON document or image starts with `<`."""
    return "html" in (content_type or "").lower() or body_head.lstrip()[:1] == b"<"


# ---- the client ------------------------------------------------------------------------------

class MetClient:
    """One requests Session (its cookie jar keeps each host's cookies, as a browser does:
    the bot protection's cookies go back to it, so we look like one visitor) and one
    Pacer per host (the API's and the image host's), shared by every worker thread."""

    def __init__(self, config: ClientConfig, pacer: Optional[Pacer] = None):
        import requests  # heavy (~0.2 s): deferred, the CLI starts fast
        from requests.adapters import HTTPAdapter
        self.cfg = config
        self.api_root = config.api_root.rstrip("/")
        if urlsplit(self.api_root).scheme not in ("http", "https"):
            raise ValueError(f"API root must be an http(s) URL, got {config.api_root!r}")
        self.pacing = Pacing(config.rate, config.start_rate, config.pace_file, config.remember_pace)
        self.pacing.api_host = host_of(self.api_root)
        if pacer is not None:
            self.pacing.set(host_of(self.api_root), pacer)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # only what `iter_body` decodes itself, with a bound on the output
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=config.pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._rng = random.Random()

    @property
    def pacer(self) -> Pacer:
        """The API host's pacer."""
        return self.pacing.for_url(self.api_root)

    def pace_estimate(self):
        """The pace this client would start at (pacing.PaceEstimate), for --dry-run: images
        come from the Met's image host when the API is the Met's, else from the API host."""
        api = host_of(self.api_root)
        images = MET_IMAGE_HOST if api == host_of(DEFAULT_API) else api
        return PaceEstimate.of(self.pacing, api, images)

    def close(self) -> None:
        self.pacing.save()
        self.session.close()

    # -- endpoints --
    def departments(self) -> list:
        d = self.get_json("departments").data
        deps = d.get("departments") if isinstance(d, dict) else None
        if not isinstance(deps, list):
            raise FetchFailure(BAD_CONTENT, "departments: no 'departments' list in the answer")
        return [Department(int(x["departmentId"]), clean_text(str(x.get("displayName", "")))[0])
                for x in deps if isinstance(x, dict) and as_object_id(x.get("departmentId"))]

    def object_ids(self, department_ids: Iterable[int] = (), since: Optional[str] = None) -> list:
        params = {}
        deps = list(department_ids)
        if deps:
            params["departmentIds"] = "|".join(str(int(d)) for d in deps)
        if since:
            params["metadataDate"] = since
        return self._id_list("objects", params)

    def search(self, q: str, **filters: Any) -> list:
        params = {k: _param(v) for k, v in filters.items() if v is not None}
        params["q"] = q
        return self._id_list("search", params)

    def get_object(self, object_id: int) -> ApiJson:
        oid = int(object_id)
        answer = self.get_json(f"objects/{oid}")
        data = answer.data
        if not isinstance(data, dict) or as_object_id(data.get("objectID")) != oid:
            got = data.get("objectID") if isinstance(data, dict) else type(data).__name__
            raise FetchFailure(BAD_CONTENT, f"object {oid}: answer is for objectID {got!r}",
                               answer.attempts)
        return answer

    def _id_list(self, path: str, params: dict) -> list:
        answer = self.get_json(path, params)
        try:
            return parse_object_ids(answer.data)
        except ValueError as e:
            raise FetchFailure(BAD_CONTENT, f"{path}: {e}", answer.attempts) from None

    # -- plumbing --
    def get_json(self, path: str, params: Optional[dict] = None) -> ApiJson:
        url = f"{self.api_root}/{path.lstrip('/')}"
        return self._retrying(lambda: self._json_attempt(url, params), url)

    def download(self, url: str, folder: Path, stem: str) -> Download:
        """Fetch an image into `folder/{stem}.{ext}`; nothing lands there unless it is valid."""
        why = image_url_problem(url, self.api_root, self.cfg.allowed_hosts)
        if why:
            raise FetchFailure(REFUSED, why, 0)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return self._retrying(lambda: self._download_attempt(url, folder, stem), url)

    def _retrying(self, attempt_fn: Callable[[], Any], url: str = "") -> Any:
        # heavy (~0.2 s): deferred, the CLI starts fast
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
        attempts = 0
        pacer = self.pacing.for_url(url or self.api_root)

        def one():
            nonlocal attempts
            attempts += 1
            try:
                result = attempt_fn()
            except Transient as e:
                if e.retry_after is not None and e.retry_after > self.cfg.max_outage:
                    # come back after the run would have stopped anyway: this object fails
                    # now (a rerun retries it) and the other objects go on
                    raise FetchFailure(e.status, f"{e.reason}; Retry-After {e.retry_after:.0f} s is beyond "
                                                 f"--max-outage ({self.cfg.max_outage:g} s): not waiting",
                                       attempts, e.http_status) from None
                if pacer.seconds_since_success() > self.cfg.max_outage:
                    raise ApiOutage(f"no successful request for {self.cfg.max_outage:g} s: "
                                    "the API looks down; rerun later to resume") from None
                raise
            pacer.succeeded()
            return result

        retrying = Retrying(stop=stop_after_attempt(self.cfg.retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(Transient), reraise=True)
        try:
            result = retrying(one)
        except Transient as e:
            raise FetchFailure(e.status, f"{e.reason} (gave up after {attempts} attempts)",
                               attempts, e.http_status) from None
        except FetchFailure as e:
            e.attempts = attempts
            raise
        if isinstance(result, (ApiJson, Download)):
            result = _with_attempts(result, attempts)
        return result

    def _wait(self, retry_state) -> float:
        """Retry-After when the server gave one, else exponential backoff with full jitter."""
        exc = retry_state.outcome.exception()
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.cfg.retry_after_max)
        n = retry_state.attempt_number
        cap = min(self.cfg.backoff_max, self.cfg.backoff_base * (2 ** (n - 1)))
        return self._rng.uniform(cap / 2, cap)

    def _get(self, url: str, params=None, stream=True, headers=None):
        import requests  # heavy (~0.2 s): deferred, the CLI starts fast
        self.pacing.for_url(url).acquire()
        try:
            r = self.session.get(url, params=params, stream=stream, allow_redirects=False,
                                 headers=headers,
                                 timeout=(self.cfg.connect_timeout, self.cfg.timeout))
            # iter_body stops reading at this time: --timeout bounds only the gap between bytes
            r.time_allowed = self.cfg.total_timeout or 10 * self.cfg.timeout
            r.deadline = time.monotonic() + r.time_allowed
            return r
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            raise Transient(HTTP_ERROR, f"{type(e).__name__}: {_short(e)}") from None
        except requests.RequestException as e:
            raise FetchFailure(HTTP_ERROR, f"{type(e).__name__}: {_short(e)}") from None

    def _read_all(self, r, limit: int, truncate: bool = False) -> bytes:
        """The decoded body, at most `limit` bytes: longer is a final bad_content failure,
        or (`truncate`, for error pages we only quote) just cut."""
        parts, n = [], 0
        try:
            for chunk in iter_body(r, limit if not truncate else limit + CHUNK):
                parts.append(chunk)
                n += len(chunk)
                if truncate and n >= limit:
                    break
        except FetchFailure as e:
            if e.status != TOO_LARGE:
                raise
            raise FetchFailure(BAD_CONTENT, f"answer exceeds {limit} bytes decoded: refused "
                                              "unread", http_status=r.status_code) from None
        finally:
            r.close()
        return b"".join(parts)[:limit] if truncate else b"".join(parts)

    def _check_status(self, r, body: bytes) -> None:
        """Map an HTTP status to final / transient failures; shared cool-down on blocks."""
        code = r.status_code
        if 200 <= code < 300:
            return
        retry_after = parse_retry_after(r.headers.get("Retry-After"))
        html = looks_like_html(r.headers.get("Content-Type", ""), body[:64])
        what = f"HTTP {code}" + (" (HTML page)" if html else "")
        if code == 404:
            raise FetchFailure(NOT_FOUND, f"{what}: {_message(body)}", http_status=code)
        if code == 403 or code == 429:
            pause = retry_after if retry_after is not None else (
                self.cfg.cooldown if code == 403 else self.cfg.backoff_base)
            # this host's pacer only: a block page from the image host never pauses the API
            self.pacing.for_url(r.url or "").cool_down(min(pause, self.cfg.retry_after_max,
                                                           self.cfg.max_outage))
            raise Transient(HTTP_ERROR, f"{what}: blocked or rate-limited", retry_after, code)
        if code >= 500 or code == 408:
            raise Transient(HTTP_ERROR, what, retry_after, code)
        raise FetchFailure(HTTP_ERROR, f"{what}: {_message(body)}", http_status=code)

    def _json_attempt(self, url: str, params) -> ApiJson:
        r = self._get(url, params)
        ok = 200 <= r.status_code < 300
        body = self._read_all(r, self.cfg.max_json_bytes if ok else MAX_ERROR_BODY, truncate=not ok)
        if 300 <= r.status_code < 400:
            raise FetchFailure(HTTP_ERROR, f"HTTP {r.status_code} redirect from the API",
                               http_status=r.status_code)
        self._check_status(r, body)
        if looks_like_html(r.headers.get("Content-Type", ""), body[:64]):
            raise Transient(BAD_CONTENT, f"HTML page served with HTTP {r.status_code} instead of JSON")
        try:
            data = decode_json(body)
        except ValueError as e:
            if "nested" in str(e):  # the same answer again would be just as deep
                raise FetchFailure(BAD_CONTENT, f"JSON answer ({len(body)} bytes): {e}") from None
            raise Transient(BAD_CONTENT, f"malformed JSON ({len(body)} bytes): {_short(e)}") from None
        return ApiJson(data, body, 1)

    def _download_attempt(self, url: str, folder: Path, stem: str) -> Download:
        # images are compressed already: ask for them as they are
        identity = {"Accept-Encoding": "identity"}
        r = self._get(url, headers=identity)
        for _ in range(MAX_REDIRECTS):  # follow at most 5; a 6th redirect is refused below
            if r.status_code not in (301, 302, 303, 307, 308):
                break
            target = urljoin(url, r.headers.get("Location", ""))
            r.close()
            why = image_url_problem(target, self.api_root, self.cfg.allowed_hosts)
            if why:
                raise FetchFailure(REFUSED, f"redirected to a refused URL: {why}")
            url = target
            r = self._get(url, headers=identity)
        if r.status_code in (301, 302, 303, 307, 308):
            r.close()
            raise FetchFailure(HTTP_ERROR, f"more than {MAX_REDIRECTS} redirects")
        if not 200 <= r.status_code < 300:
            self._check_status(r, self._read_all(r, MAX_ERROR_BODY, truncate=True))
        try:
            return self._save_stream(r, folder, stem)
        finally:
            r.close()

    def _save_stream(self, r, folder: Path, stem: str) -> Download:
        ctype = r.headers.get("Content-Type", "")
        declared = _int_or_none(r.headers.get("Content-Length"))
        if declared is not None and declared > self.cfg.max_bytes:
            raise FetchFailure(TOO_LARGE, f"Content-Length {declared} exceeds {self.cfg.max_bytes} bytes")
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        os.chmod(tmp, default_file_mode())  # mkstemp makes 0600
        sha, md5, n, head = hashlib.sha256(), hashlib.md5(), 0, b""
        body = BodyCount()
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in iter_body(r, self.cfg.max_bytes, MAX_IMAGE_EXPANSION, body):
                    if len(head) < 64:
                        head += chunk[:64 - len(head)]
                        if len(head) >= 12 and sniff_image_type(head) is None:
                            break  # not an image: no need to download the rest
                    n += len(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    f.write(chunk)
            ext = sniff_image_type(head)
            if ext is None:
                kind = "an HTML page" if looks_like_html(ctype, head) else f"not an image (starts {head[:8]!r})"
                raise Transient(BAD_CONTENT, f"body is {kind} (Content-Type {ctype or 'none'!r}, "
                                               f"HTTP {r.status_code})")
            # Content-Length counts the bytes on the wire, i.e. before any Content-Encoding
            if declared is not None and body.raw != declared:
                raise Transient(BAD_CONTENT, f"got {body.raw} bytes but Content-Length said {declared}")
            width, height = check_image_file(tmp, self.cfg.max_pixels)
            final = folder / f"{stem}.{ext}"
            os.replace(tmp, final)
            return Download(final, ext, n, sha.hexdigest(), md5.hexdigest(), width, height, 1)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


@dataclass
class BodyCount:
    """Bytes read so far: `raw` as on the wire, `decoded` after Content-Encoding."""
    raw: int = 0
    decoded: int = 0


def iter_body(r, limit: int, max_expansion: float = 0, count: Optional[BodyCount] = None):
    """The decoded chunks of a streamed response, never more than `limit` bytes in all.

    We decode gzip/deflate ourselves, at most CHUNK bytes of output per step, rather than
    let urllib3 inflate a whole network read at once: a 1 MB gzip bomb then costs 1 MB,
    not 1 GB. `max_expansion` > 0 also caps decoded/encoded (an image gains little from
    gzip; a bomb gains ~1000x). Exceeding a cap is FetchFailure("too_large"); a cut
    connection or corrupt encoding is Transient (retried). Reads return what has arrived
    (read1), so a server trickling bytes meets `r.deadline` (set by MetClient._get): a
    Transient "answer incomplete after N s" failure.
    """
    import urllib3  # heavy (~0.2 s): deferred, the CLI starts fast
    count = count if count is not None else BodyCount()
    enc = (r.headers.get("Content-Encoding") or "identity").strip().lower()
    dec = _decoder(enc)
    cap = _BodyCap(limit, max_expansion if dec is not None else 0, count, enc)
    try:
        for data in _raw_chunks(r, count):
            if dec is None:
                yield cap.check(data)
                continue
            for piece in _inflate(dec, data):
                yield cap.check(piece)
        if dec is not None:
            tail = dec.flush()
            if tail:
                yield cap.check(tail)
            if not dec.eof:
                raise Transient(BAD_CONTENT, f"{enc} body cut short after {count.raw} bytes")
        # read to the end: the connection goes back to the pool (r.close() would drop it)
        r._content_consumed = True
        r.raw.release_conn()
    except zlib.error as e:
        raise Transient(BAD_CONTENT, f"corrupt {enc} body: {e}") from None
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as e:
        raise Transient(HTTP_ERROR, f"body cut short after {count.raw} bytes: "
                                    f"{type(e).__name__}: {_short(e)}") from None


def _decoder(enc: str):
    """A zlib decoder for Content-Encoding `enc` (None: the body is not encoded)."""
    if enc in ("identity", ""):
        return None
    if enc in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, auto-detected
    raise FetchFailure(BAD_CONTENT, f"unsupported Content-Encoding {_short(enc)!r}")


def _raw_chunks(r, count: BodyCount):
    """The body's bytes as they arrive (still encoded), counted in `count.raw`, until
    `r.deadline` (a Transient failure after it)."""
    deadline = getattr(r, "deadline", None)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise Transient(HTTP_ERROR, f"answer incomplete after {getattr(r, 'time_allowed', 0):g} s, "
                                        f"the most one request may take (got {count.raw} bytes)")
        data = r.raw.read1(CHUNK, decode_content=False)
        if not data:
            return
        count.raw += len(data)
        yield data


def _inflate(dec, data: bytes):
    """`data` decoded, at most CHUNK bytes of output per step (a bomb never inflates at once)."""
    while data:
        piece = dec.decompress(data, CHUNK)
        data = dec.unconsumed_tail
        if piece:
            yield piece
        if dec.eof:
            break


@dataclass
class _BodyCap:
    """The caps of iter_body: `limit` bytes decoded, and (`max_expansion` > 0, an encoded
    body) decoded bytes at most max_expansion times the bytes on the wire."""
    limit: int
    max_expansion: float
    count: BodyCount
    enc: str

    def check(self, piece: bytes) -> bytes:
        count = self.count
        count.decoded += len(piece)
        if count.decoded > self.limit:
            raise FetchFailure(TOO_LARGE, f"body exceeds {self.limit} bytes decoded")
        if self.max_expansion and count.decoded > self.max_expansion * count.raw + CHUNK:
            raise FetchFailure(TOO_LARGE, f"{self.enc} body decoded to over {count.decoded} bytes "
                                          f"from {count.raw}: more than {self.max_expansion:g}x "
                                          "(a compression bomb?)")
        return piece


_PIL_OPEN_LOCK = threading.Lock()


def check_image_file(path, max_pixels: int) -> tuple:
    """(width, height) after a full decode; too_large is final, a bad decode is retried.

    Only the header parse is serialised: `open_image` flips Pillow's global bomb limit,
    which is not thread-safe; the slow full decode runs in parallel.
    """
    try:
        with _PIL_OPEN_LOCK:
            im = open_image(path, 0, load=False)
    except ImageProblem as e:
        raise Transient(BAD_CONTENT, e.reason.replace(str(path), "download")) from None
    with im:
        width, height = im.size
        if max_pixels and width * height > max_pixels:
            raise FetchFailure(TOO_LARGE, f"{width}x{height} = {width * height} pixels exceeds the "
                                            f"limit of {max_pixels} (--max-pixels)",
                               width=width, height=height)
        try:
            im.load()
        except Exception as e:  # truncated or corrupt data
            raise Transient(BAD_CONTENT, f"cannot decode the download: {e}") from None
    return width, height


def _with_attempts(result, attempts: int):
    return dataclasses.replace(result, attempts=attempts)


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _int_or_none(v: Optional[str]) -> Optional[int]:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _message(body: bytes) -> str:
    """The `message` of a JSON error body, read with the guarded reader (an error body may be
    as deep or odd as any answer), or "(no message)"."""
    try:
        d = decode_json(body)
    except ValueError:
        return "(no message)"
    if isinstance(d, dict) and isinstance(d.get("message"), (str, int, float)) and d.get("message"):
        return _short(d["message"])
    return "(no message)"


def _short(e) -> str:
    s = str(e)
    return s if len(s) <= 200 else s[:200] + "..."


def resolve_departments(specs: Iterable[str], departments: list) -> list:
    """Department ids from ids or names (case-insensitive): the display names `departments`
    lists, or another name a department goes by in records (shapes.DEPARTMENT_ALIASES:
    "Modern and Contemporary Art" is 21); ValueError lists choices."""
    by_name = {}
    for d in departments:  # a display name wins over another department's old name
        for n in department_aliases(d.id):
            by_name.setdefault(n.casefold(), d.id)
    by_name.update({d.name.casefold(): d.id for d in departments})
    ids = {d.id for d in departments}
    out: list = []
    for s in specs:
        s = s.strip()
        if not s:
            continue
        if s.isdigit():
            if int(s) not in ids:
                raise ValueError(f"unknown department id {s}; known: " + _dept_list(departments))
            dep = int(s)
        else:
            dep = by_name.get(s.casefold())
            if dep is None:
                raise ValueError(f"unknown department {s!r}; known: " + _dept_list(departments))
        if dep not in out:
            out.append(dep)
    return out


def _dept_list(departments: list) -> str:
    return ", ".join(f"{d.id} {d.name}" for d in departments)
