"""Pacing per host that learns the rate a bot protection allows, and keeps below it.

The Met's front end blocks a client that goes too fast (403 HTML to every request for
about a minute) at a threshold that is not published and changes; repeated blocks are
how a client gets itself banned for longer. Halving the rate on a block and creeping back
up (plain AIMD) trips the protection again and again. So each host gets a `Pacer` that
remembers the rate at which it was blocked (`block_rate`, measured from the requests it
actually sent, not the rate it allowed) and:

- before any block, starts at a polite pace (1 request/s, reported safe on the real Met)
  and grows it by 30% every 1.5 s while it holds the workers back (slow start), never
  above the ceiling (`--rate`, default 9/s);
- on a block, pauses every thread together (a shared cool-down), sets `block_rate` and
  resumes at `BACKOFF` x block_rate, then climbs additively to `HOLD` x block_rate and
  stays there: below the rate that was blocked, close enough to lose little; a block soon
  after another means the hold was too high: it resumes `REPEAT` times lower again and
  holds there;
- probes above that only rarely: after `PROBE_AFTER` s without a block it lets
  block_rate rise by `PROBE_STEP` (a limit that rose is found again, slowly);
- a block page before any success after a pause is the same block still going, not a
  new lesson: it pauses again without lowering the rate; nor is a pause under a second
  (a server's Retry-After of 0.1 s is no bot protection), and the pace never falls under
  `MIN_RATE`.

What was learned is kept per host in the user's cache (`pace.json`; see `pace_file`), so
the next run starts at the pace that held, and `fetch --dry-run` estimates with it. The
API host and the image host have separate pacers: a block page from one never pauses the
other. All times come from an injected clock, so tests simulate hours in microseconds.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from ..infra.files import atomic_write_json, read_json_or_none

# req/s per host without --rate: bursts of ~30 requests are reported to trip the Met's
# protection (10/s over 3 s); 9/s stays 10% under that, and MetFaces-scale fetches need no more
DEFAULT_CEILING = 9.0
DEFAULT_START = 1.0      # first pace of a host nothing is known about (reported safe)
GROW, GROW_EVERY = 1.3, 1.5          # slow start: x1.3 every 1.5 s while the pace holds the workers back
BACKOFF = 0.7                        # after a block: resume at this x the blocked rate,
REPEAT = 0.65                        # x this again for each block within SETTLE s of the last
HOLD = 0.85                          # then climb to, and hold, this x the blocked rate (a
                                     # token bucket may still send one extra request per window)
STEP, STEP_EVERY = 0.025, 5.0        # the climb: +2.5% of the blocked rate every 5 s
PROBE_AFTER, PROBE_STEP = 300.0, 1.1  # a rare probe: 5 min without a block lifts block_rate 10%
MEASURE_WINDOW = 10.0                # the rate we send at: requests sent in the last 10 s
BLOCK_WINDOW = 5.0                   # the rate the front end saw: requests in the last 5 s
SETTLE = 60.0                        # a block within 60 s of the last one: back off further
LESSON_PAUSE = 1.0                   # a pause shorter than 1 s is no block of a bot protection
MIN_RATE = 0.2                       # the floor: below it, waiting (the cool-down) is the answer
PACE_FILE = "pace.json"
MAX_HOSTS = 50                       # hosts remembered (emulator ports come and go)


def host_of(url: str) -> str:
    """The pacing key of a URL: host[:port], lower case, without credentials."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    return netloc.rpartition("@")[2].lower()


def pace_file() -> Path:
    """Where learned paces are kept: $METFACES_CACHE_DIR, else $XDG_CACHE_HOME/metfaces-build,
    else ~/.cache/metfaces-build; the file is pace.json."""
    d = os.environ.get("METFACES_CACHE_DIR")
    if not d:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(xdg, "metfaces-build")
    return Path(d) / PACE_FILE


@dataclass(frozen=True)
class HostPace:
    """What is remembered of one host between runs."""
    rate: float                          # the pace that held at the end of the last run
    block_rate: Optional[float] = None   # the lowest rate recently blocked (None: never)
    blocks: int = 0                      # blocks seen over all runs
    updated: float = 0.0                 # time.time() of the last save

    def to_json(self) -> dict:
        return {"rate": round(self.rate, 4), "block_rate": None if self.block_rate is None
                else round(self.block_rate, 4), "blocks": self.blocks, "updated": round(self.updated)}

    @classmethod
    def from_json(cls, d) -> Optional["HostPace"]:
        try:
            rate = float(d["rate"])
            br = d.get("block_rate")
            br = float(br) if br is not None else None
            if not rate > 0 or (br is not None and not br > 0):
                return None
            return cls(rate, br, int(d.get("blocks", 0)), float(d.get("updated", 0)))
        except (TypeError, ValueError, KeyError, AttributeError):
            return None


class Pacer:
    """Token bucket for one host, shared by worker threads, with a shared cool-down and
    a learned ceiling (see the module doc).

    `acquire()` blocks until a request may go. `cool_down(s)` pauses every thread for `s`
    seconds; when `blocked` (a 403 block page or a 429) it is also a lesson: the rate
    drops below the rate at which the block came, once per block however many threads
    report it. `succeeded()` marks a usable answer (growth and outage detection use it).
    """

    def __init__(self, rate: float, burst: Optional[float] = None, min_rate: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 ceiling: Optional[float] = None, block_rate: Optional[float] = None,
                 adaptive: bool = True):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.ceiling = float(ceiling if ceiling is not None else rate)
        self.rate = min(float(rate), self.ceiling)
        self.min_rate = min(self.rate, min_rate if min_rate is not None else MIN_RATE)
        # a burst of at most one request by default: a window limiter counts bursts too
        self.capacity = burst if burst is not None else 1.0
        self.block_rate = block_rate
        self.adaptive = adaptive
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self.tokens = self.capacity
        now = clock()
        self._updated = now
        self.paused_until = 0.0
        self.last_success = now
        self.sent = 0
        self.cooldowns = 0          # pauses (block pages, 429s), one per event
        self.blocks = 0             # of which new blocks (lessons)
        self.lost = 0.0             # seconds from each block to the next success
        self._blocked_at: Optional[float] = None
        self._sent: collections.deque = collections.deque()
        self._resumed = now         # when sending (re)started: start, or the end of a pause
        self._adjusted = now        # last growth step
        self._held_since: Optional[float] = None
        self._successes_since_adjust = 0
        self._waited = False
        self._streak = 0
        self._last_block = -1e18
        self._climb_from: Optional[float] = None

    # -- sending --
    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                if now < self.paused_until:
                    wait = self.paused_until - now
                else:
                    self._grow(now)
                    start = max(self._updated, self.paused_until)
                    self.tokens = min(self.capacity, self.tokens + (now - start) * self.rate)
                    self._updated = now
                    if self.tokens >= 1.0 - 1e-9:  # float slack: 0.1 s * 10/s may be 0.999...
                        self.tokens = max(0.0, self.tokens - 1.0)
                        self._sent.append(now)
                        self.sent += 1
                        while self._sent and self._sent[0] < now - 60.0:
                            self._sent.popleft()
                        return
                    wait = max((1.0 - self.tokens) / self.rate, 1e-4)
                    self._waited = True
            self._sleep(wait)

    def measured_rate(self, now: Optional[float] = None, window: float = 0.0) -> float:
        """Requests/s sent over the last `window` s (default MEASURE_WINDOW), or since
        sending resumed when that is shorter."""
        now = self._clock() if now is None else now
        span = min(window or MEASURE_WINDOW, now - self._resumed)
        if span < 0.5:
            return self.rate
        n = sum(1 for t in self._sent if t > now - span)
        return n / span

    def _grow(self, now: float) -> None:
        """Slow start before any block; after one, an additive climb to HOLD x block_rate,
        then a rare probe. Only while the workers keep up with the pace (else a larger
        rate would only allow a burst later)."""
        if not self.adaptive or now - self._adjusted < (GROW_EVERY if self.block_rate is None
                                                        else STEP_EVERY):
            return
        # the pace held the workers back (someone waited for a token), or they kept up with
        # it (another host's pace may hold them), and answers came
        busy = self._successes_since_adjust > 0 and (
            self._waited or self.measured_rate(now, 2 * GROW_EVERY) >= 0.7 * self.rate)
        self._adjusted, self._successes_since_adjust, self._waited = now, 0, False
        if not busy:
            return
        if self.block_rate is None:
            self.rate = min(self.ceiling, self.rate * GROW)
            return
        hold = self._hold()
        if self.rate < hold:
            self.rate = min(hold, self.rate + STEP * self.block_rate)
            self._held_since = None
            return
        if self._held_since is None:
            self._held_since = now
        elif now - self._held_since >= PROBE_AFTER and hold < self.ceiling:
            if self._streak > 1:  # held where it resumed: try a little higher
                self._climb_from = min(self.ceiling, self._climb_from * PROBE_STEP)
            else:
                self.block_rate *= PROBE_STEP
            self._held_since = None

    # -- what came back --
    def cool_down(self, seconds: float, blocked: bool = True) -> None:
        """Pause every thread for `seconds`; a `blocked` answer (403 block page, 429) that
        starts a new block also lowers the rate below the rate at which it came, unless
        the pause is under LESSON_PAUSE (a server asking for 0.1 s is not blocking a
        client for its pace; the Met's blocks last about a minute)."""
        with self._lock:
            now = self._clock()
            if now >= self.paused_until:  # a new event (the other threads' reports are the same one)
                self.cooldowns += 1
                if blocked and seconds >= LESSON_PAUSE:
                    self._learn_block(now)
                if self._blocked_at is None:
                    self._blocked_at = now
            self.paused_until = max(self.paused_until, now + seconds)
            self.tokens = 0.0
            self._updated = self.paused_until
            self._resumed = self.paused_until
            self._adjusted = self.paused_until

    def _learn_block(self, now: float) -> None:
        if self._blocked_at is not None:
            return  # no success since the last block: it was still on, nothing new learned
        self.blocks += 1
        if not self.adaptive:
            self.rate = max(self.min_rate, self.rate / 2)
            return
        # blocked again before the pace settled: the hold level was too high, back off further
        self._streak = self._streak + 1 if now - self._last_block < SETTLE else 1
        self._last_block = now
        # the rate the front end saw (lower than ours when the workers did not keep up)
        self.block_rate = min(self.rate, self.measured_rate(now, BLOCK_WINDOW))
        self.rate = max(self.min_rate, min(self.ceiling, BACKOFF * REPEAT ** (self._streak - 1) * self.block_rate))
        self._climb_from = self.rate
        self._held_since = None

    def succeeded(self) -> None:
        with self._lock:
            now = self._clock()
            self.last_success = now
            self._successes_since_adjust += 1
            if self._blocked_at is not None:
                self.lost += now - self._blocked_at
                self._blocked_at = None

    def seconds_since_success(self) -> float:
        with self._lock:
            return self._clock() - self.last_success

    def _hold(self) -> float:
        """The level to climb to after a block: HOLD x block_rate, or where we resumed
        when one block followed another (the climb is then left to the rare probe)."""
        if self._streak > 1 and self._climb_from is not None:
            return self._climb_from
        return min(self.ceiling, HOLD * self.block_rate)

    # -- what to remember --
    def learned_block_rate(self) -> Optional[float]:
        """The block rate to remember: after blocks in a row the hold level was lowered to
        where the pace resumed, and the next run must not climb above it either."""
        if self.block_rate is None or self._streak <= 1 or self._climb_from is None:
            return self.block_rate
        return min(self.block_rate, self._climb_from / HOLD)

    def held_rate(self) -> float:
        """The pace to start the next run at: the current one, kept below the hold level."""
        if self.block_rate is None:
            return self.rate
        return max(self.min_rate, min(self.rate, HOLD * self.learned_block_rate(), self.ceiling))

    def expected_seconds(self, requests: int) -> float:
        """How long `requests` requests take from the current state, with the slow start
        (no block learned) or the climb to the hold level, ignoring blocks to come."""
        rate, t, n = self.rate, 0.0, float(requests)
        top = self.ceiling if self.block_rate is None else min(self.ceiling, HOLD * self.block_rate)
        if not self.adaptive or rate >= top:
            return n / rate
        every = GROW_EVERY if self.block_rate is None else STEP_EVERY
        while n > 0:
            if rate >= top:
                return t + n / rate
            step = min(n, rate * every)
            t, n = t + step / rate, n - step
            rate = min(top, rate * GROW if self.block_rate is None else rate + STEP * self.block_rate)
        return t


class Pacing:
    """One Pacer per host for a run, started from what earlier runs learned (`pace.json`)."""

    def __init__(self, ceiling: Optional[float] = None, start: Optional[float] = None,
                 path: Optional[Path] = None, remember: bool = True,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 burst: Optional[float] = None):
        """`ceiling` is --rate (None: DEFAULT_CEILING); `start` the pace of a host with
        nothing learned (None: the ceiling when --rate was given, else DEFAULT_START)."""
        self.ceiling = float(ceiling) if ceiling else DEFAULT_CEILING
        self.start = float(start) if start else (self.ceiling if ceiling else DEFAULT_START)
        self.path = path if path is not None else (pace_file() if remember else None)
        self.remember = remember and self.path is not None
        self.memory = load_paces(self.path) if self.remember else {}
        self._clock, self._sleep, self._burst = clock, sleep, burst
        self._lock = threading.Lock()
        self.pacers: dict = {}
        self.api_host = ""  # labelled "api" in the progress bar (the client sets it)

    def starting_pace(self, host: str) -> tuple:
        """(rate, block_rate, where from) a new pacer for `host` starts with."""
        known = self.memory.get(host)
        if known is None:
            return min(self.start, self.ceiling), None, "--rate" if self.start == self.ceiling else "default start"
        return min(known.rate, self.ceiling), known.block_rate, "learned"

    def for_host(self, host: str) -> Pacer:
        with self._lock:
            p = self.pacers.get(host)
            if p is None:
                rate, block_rate, _ = self.starting_pace(host)
                p = Pacer(rate, self._burst, clock=self._clock, sleep=self._sleep,
                          ceiling=self.ceiling, block_rate=block_rate)
                self.pacers[host] = p
            return p

    def for_url(self, url: str) -> Pacer:
        return self.for_host(host_of(url))

    def set(self, host: str, pacer: Pacer) -> None:
        with self._lock:
            self.pacers[host] = pacer

    # -- reporting --
    @property
    def blocks(self) -> int:
        return sum(p.blocks for p in self.pacers.values())

    @property
    def lost(self) -> float:
        return sum(p.lost for p in self.pacers.values())

    def postfix(self) -> dict:
        """For the progress bar: the pace of each host and the blocks so far."""
        out = {}
        others = [h for h in sorted(self.pacers) if h != self.api_host]
        for host, p in sorted(self.pacers.items()):
            label = ("api" if host == self.api_host else "images" if len(others) == 1 else host)
            out[label] = f"{p.rate:.3g}/s"
        out["blocks"] = self.blocks
        return out

    def report(self) -> dict:
        """{host: {rate, block_rate, blocks, lost}} of this run (the summary's `pace`)."""
        return {h: {"rate": round(p.held_rate(), 3), "block_rate": None if p.block_rate is None
                    else round(p.block_rate, 3), "blocks": p.blocks, "lost": round(p.lost, 1)}
                for h, p in sorted(self.pacers.items())}

    def summary_line(self) -> str:
        parts = []
        for h, p in sorted(self.pacers.items()):
            learned = f", blocked at {p.block_rate:.3g}/s" if p.block_rate is not None else ""
            parts.append(f"{h} {p.held_rate():.3g} req/s{learned}")
        return (f"pace learned: {'; '.join(parts) or 'no request made'}; "
                f"{self.blocks} block{'s' if self.blocks != 1 else ''}, {self.lost:.0f} s lost to them")

    def save(self) -> None:
        """Merge this run's paces into pace.json (atomic; a failure to write is ignored:
        the cache is an optimisation)."""
        if not self.remember or not self.pacers:
            return
        now = time.time()
        current = load_paces(self.path)
        for host, p in self.pacers.items():
            if not p.sent:
                continue
            old = current.get(host)
            current[host] = HostPace(p.held_rate(), p.learned_block_rate(), (old.blocks if old else 0) + p.blocks, now)
        keep = dict(sorted(current.items(), key=lambda kv: -kv[1].updated)[:MAX_HOSTS])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {"version": 1, "hosts": {h: v.to_json() for h, v in sorted(keep.items())}})
        except OSError:
            pass


def load_paces(path: Optional[Path]) -> dict:
    """{host: HostPace} from pace.json; a missing or damaged file is an empty memory."""
    if path is None:
        return {}
    data = read_json_or_none(path)
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, dict):
        return {}
    out = {}
    for h, d in hosts.items():
        hp = HostPace.from_json(d)
        if isinstance(h, str) and hp is not None:
            out[h] = hp
    return out


@dataclass(frozen=True)
class PaceEstimate:
    """How long requests would take at the pace a run would start with (`fetch --dry-run`):
    records on the API host; images on their own host in parallel, or on the same host
    (the emulator) one after the other."""
    api: Pacer
    images: Optional[Pacer]
    source: str

    @classmethod
    def of(cls, pacing: "Pacing", api_host: str, image_host: str) -> "PaceEstimate":
        def fresh(host):
            rate, block_rate, source = pacing.starting_pace(host)
            return Pacer(rate, ceiling=pacing.ceiling, block_rate=block_rate), source
        api, source = fresh(api_host)
        return cls(api, fresh(image_host)[0] if image_host != api_host else None, source)

    @property
    def rate(self) -> float:
        return self.api.rate

    def seconds(self, objects: int) -> tuple:
        """(fewest, most) seconds for `objects` records, without or with an image each."""
        lo = self.api.expected_seconds(objects)
        if self.images is None:
            return lo, self.api.expected_seconds(2 * objects)
        return lo, max(lo, self.images.expected_seconds(objects))

    def describe(self) -> str:
        return f"{self.api.rate:.3g} req/s ({self.source}; at most {self.api.ceiling:g}/s)"


class PaceProgress:
    """A progress bar whose updates also show the current pace and the blocks so far."""

    def __init__(self, progress, pacing: Pacing):
        self.progress, self.pacing = progress, pacing

    def update(self, n: int = 1, **postfix) -> None:
        self.progress.update(n, **postfix, **self.pacing.postfix())

    def __getattr__(self, name):
        return getattr(self.progress, name)
