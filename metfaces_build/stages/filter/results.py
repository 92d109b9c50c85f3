"""filter's result types: one test's outcome (Check), a face's verdict, one image's
result and the whole run's outcome. Plain data: the checks fill them, the stage writes
them."""
from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from ...core.records import FaceRecord, Rejection
from ...core.status import BAD_RECORD, KEEP, OVERRIDE, REJECT
from .config import FilterConfig

OVERRIDE_REASON = OVERRIDE
OVERRIDE_DECISIONS = (KEEP, REJECT)


@dataclass
class Check:
    """One test on one face: passed or not, the measured value, and the limit applied."""
    name: str
    passed: bool
    value: Any = None
    limit: str = ""

    def __post_init__(self) -> None:
        if type(self.limit) is str:  # one copy of each limit text, not one per face
            self.limit = sys.intern(self.limit)

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark} {self.name:<18} {_fmt(self.value):<30} {self.limit}"


@dataclass
class CropMeasures:
    """What the measurement crop tells: focus, colour and a perceptual hash."""
    sharpness: float
    chroma: float
    phash: str  # 16 hex digits


@dataclass
class FaceVerdict:
    """Every check on one face; kept when all of them passed, unless a person decided
    (`override`: "keep" or "reject", from overrides.json), which wins over the tests."""
    record: FaceRecord
    index: int  # position in faces.json: the tie-breaker that keeps output deterministic
    qsize: float
    checks: list = field(default_factory=list)
    measures: Optional[CropMeasures] = None
    override: Optional[str] = None

    @property
    def passed(self) -> bool:
        """What the tests alone decided."""
        return all(c.passed for c in self.checks)

    @property
    def keep(self) -> bool:
        return self.passed if self.override is None else self.override == KEEP

    @property
    def failed(self) -> list:
        """The tests this face failed (whatever a person decided)."""
        return [c.name for c in self.checks if not c.passed]

    @property
    def reasons(self) -> list:
        if self.override is not None:
            return [] if self.override == KEEP else [OVERRIDE_REASON]
        return self.failed

    def values(self) -> dict:
        out: dict[str, Any] = {"qsize": round(self.qsize, 2)}
        for c in self.checks:
            out[c.name] = json_safe(c.value)
        if self.measures is not None:
            out["phash"] = self.measures.phash
        if self.override is not None:
            out[OVERRIDE_REASON] = {"decision": self.override, "tests_failed": self.failed,
                                    "limits": {c.name: c.limit for c in self.checks if not c.passed}}
        return out

    def rejection(self) -> Rejection:
        limits = {c.name: c.limit for c in self.checks if not c.passed}
        return Rejection(self.record.obj_id, self.record.face_idx, self.reasons, self.values(),
                         limits)


def json_safe(v: Any) -> Any:
    """Non-finite floats (degenerate landmarks) become None: JSON has no infinity."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return "-" if v is None else str(v)


@dataclass(frozen=True)
class FilterTask:
    source_path: str
    path: str        # resolved file, "" when the source path is unsafe
    faces: tuple     # ((input index, FaceRecord), ...)
    config: FilterConfig


@dataclass
class FilterResult:
    source_path: str
    verdicts: list
    size: Optional[tuple] = None
    problem: Optional[str] = None  # image status when it could not be used


@dataclass
class FilterOutcome:
    """Everything the stage decided, in faces.json order."""
    verdicts: list
    bad_records: list
    image_problems: dict  # source_path -> status
    measured: int = 0     # images measured now (the rest came from the cache)
    cache: dict = field(default_factory=dict)  # the per-image cache entries of this input (dicts, or their JSON text)
    overrides: dict = field(default_factory=dict)  # face id -> decision, as applied
    stale_overrides: list = field(default_factory=list)  # saved decisions for faces gone

    @property
    def kept(self) -> list:
        return [v for v in self.verdicts if v.keep]

    @property
    def rejected(self) -> list:
        return [v for v in self.verdicts if not v.keep]

    def reason_counts(self) -> Counter:
        c: Counter = Counter()
        for v in self.rejected:
            c.update(v.reasons)
        if self.bad_records:
            c[BAD_RECORD] += len(self.bad_records)
        return c
