"""A model of the Met's bot protection, for the emulator and for tests in virtual time.

The real front end answers 403 with an HTML page to every API request for a while once a
client has gone too fast; the threshold is hidden and changes. `Protection` describes such
a limit (a sliding window: more than `rate * window` requests within `window` s blocks the
client for `duration` s), optionally changing during the run (`changes`), or drawn at
random (`Protection.draw`). `FrontEnd` applies it to a stream of request times: pure, the
clock is an argument, so the emulator (wall time) and the pacing tests (virtual time)
share the same judge.
"""
from __future__ import annotations

import collections
import math
import random
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Protection:
    """A hidden limit: `rate` req/s sustained over a sliding `window` s; above it, every
    request is refused for `duration` s. `changes`: ((seconds after the first request,
    new rate), ...), a limit that moves during the run."""
    rate: float
    window: float = 5.0
    duration: float = 25.0
    changes: tuple = ()

    def __post_init__(self):
        if not self.rate > 0 or not self.window > 0 or self.duration < 0:
            raise ValueError(f"protection needs rate > 0, window > 0, duration >= 0; got {self}")
        for c in self.changes:
            if len(c) != 2 or c[0] < 0 or not c[1] > 0:
                raise ValueError(f"protection change must be (seconds >= 0, rate > 0), got {c!r}")

    def rate_at(self, elapsed: float) -> float:
        rate = self.rate
        for at, r in sorted(self.changes):
            if elapsed >= at:
                rate = r
        return rate

    def allowed(self, elapsed: float) -> int:
        """Requests allowed within one window at `elapsed` s (at least 1)."""
        return max(1, math.floor(self.rate_at(elapsed) * self.window + 1e-9))

    @classmethod
    def draw(cls, seed: Optional[int] = None) -> "Protection":
        """A limit like the reports of the real one: 0.5 to 10 req/s (log-uniform) over
        2 to 20 s windows, blocks of 20 to 60 s."""
        rng = random.Random(seed)
        return cls(round(math.exp(rng.uniform(math.log(0.5), math.log(10))), 2),
                   round(rng.uniform(2, 20), 1), round(rng.uniform(20, 60)))

    @classmethod
    def parse(cls, text: str) -> "Protection":
        """'RATE[,WINDOW[,DURATION]][;AT=RATE...]' (e.g. '2,5,25' or '2,5,25;60=1'), or
        'random[:SEED]'."""
        text = text.strip()
        if text.startswith("random"):
            seed = text.partition(":")[2]
            return cls.draw(int(seed) if seed else None)
        head, *moves = text.split(";")
        nums = [float(x) for x in head.split(",")]
        if not 1 <= len(nums) <= 3:
            raise ValueError(f"expected RATE[,WINDOW[,DURATION]], got {head!r}")
        changes = []
        for m in moves:
            at, _, r = m.partition("=")
            changes.append((float(at), float(r)))
        return cls(*nums, changes=tuple(changes))


class FrontEnd:
    """Judges each request of one client under a `Protection` (not thread-safe: the caller
    holds a lock). `admit(now)` is False while blocked; a request over the limit starts a
    block (and is refused). Requests refused during a block do not count."""

    def __init__(self, protection: Protection):
        self.protection = protection
        self.recent: collections.deque = collections.deque()
        self.blocked_until = -math.inf
        self.first: Optional[float] = None
        self.blocks = 0
        self.refused = 0
        self.admitted = 0

    def admit(self, now: float) -> bool:
        if self.first is None:
            self.first = now
        if now < self.blocked_until:
            self.refused += 1
            return False
        p = self.protection
        q = self.recent
        q.append(now)
        while q and q[0] <= now - p.window:
            q.popleft()
        if len(q) > p.allowed(now - self.first):
            self.blocked_until = now + p.duration
            self.blocks += 1
            self.refused += 1
            q.clear()
            return False
        self.admitted += 1
        return True
