"""Typed records for everything in the data, with JSON in/out and validation.

`FaceRecord` reads NVIDIA's `metfaces.json` entries unchanged and writes them back with the
same keys (unknown keys are kept in `extra` and written back too), plus our own optional
keys (detector, score, ...), which NVIDIA's script ignores.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Optional

from .errors import RecordError
from .paths import check_relative_path

# The keys of one metfaces.json entry, in NVIDIA's order.
METFACES_KEYS = ("obj_id", "meta_url", "source_url", "source_path", "source_md5", "image_path",
                 "image_md5", "title", "artist_display_name", "face_spec", "face_idx")
# Keys without which a face cannot be aligned; the others default to "".
REQUIRED_KEYS = ("obj_id", "source_path", "face_spec", "face_idx")
# Our optional extras, written after NVIDIA's keys when set.
EXTRA_KEYS = ("detector", "score", "subdetector", "image_width", "image_height", "shrink_method",
              "exif_orientation", "department")

# what each extra must be (the FaceRecord field's type)
_EXTRA_TYPES = {"detector": str, "score": float, "subdetector": int, "image_width": int,
                "image_height": int, "shrink_method": str, "exif_orientation": int,
                "department": str}
_TYPE_WORDS = {str: "a string", int: "a whole number", float: "a finite number"}

N_LANDMARKS = 68
# Coordinates and shrink beyond 32 bits are not pixels of any image; they would overflow
# numpy and float conversions before the face could be recorded as failed.
MAX_COORD = 2 ** 31 - 1
MAX_FACE_IDX = 99_999
NAME_MAX = 255  # bytes in one file name (ext4, APFS, NTFS)
# Met object ids are positive and fit numpy's int64 (journal indexes, id arrays).
MAX_OBJECT_ID = 2 ** 63 - 1


# A text field of a record (title, artist, department, date, URL) longer than this is cut
# where it enters (the full answer stays once in DIR/api/{id}.json): a 20 MiB title would
# otherwise be copied into every later file and page.
MAX_TEXT = 4096
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(s: str, limit: int = MAX_TEXT) -> tuple:
    """(text that can be written anywhere, note or ""): lone surrogates (JSON's "\\ud800",
    which UTF-8 cannot encode) become U+FFFD; beyond `limit` characters the text is cut and
    the note says how much was kept."""
    if _SURROGATES.search(s):
        s = _SURROGATES.sub("\ufffd", s)
    if len(s) > limit:
        return s[:limit], f"first {limit} of {len(s)} characters kept"
    return s, ""


def scrub(obj: Any) -> Any:
    """`obj` (parsed JSON) with lone surrogates replaced in every string and key; the
    structure is otherwise unchanged. Iterative: depth is bounded by the parser already."""
    if isinstance(obj, str):
        return clean_text(obj, len(obj))[0]
    if not isinstance(obj, (dict, list)):
        return obj
    root = [obj]
    stack = [(root, 0)]
    while stack:
        parent, key = stack.pop()
        v = parent[key]
        if isinstance(v, str):
            parent[key] = clean_text(v, len(v))[0]
        elif isinstance(v, list):
            stack.extend((v, i) for i in range(len(v)))
        elif isinstance(v, dict):
            if any(_SURROGATES.search(k) for k in v):
                items = [(clean_text(k, len(k))[0], x) for k, x in v.items()]
                v.clear()
                v.update(items)
            stack.extend((v, k) for k in v)
    return root[0]


def as_object_id(v: Any) -> Optional[int]:
    """A positive integer id, or None: ids are integers before they touch a path."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 < v <= MAX_OBJECT_ID else None
    if isinstance(v, str) and v.strip().isdigit() and v.strip().isascii() and len(v.strip()) <= 19:
        n = int(v.strip())
        return n if 0 < n <= MAX_OBJECT_ID else None
    return None


@dataclass(frozen=True)
class FaceSpec:
    """dlib rect `[l, t, r, b]`, 68 (x, y) landmarks and the integer shrink, all in the
    shrunk frame detection ran on: full-resolution pixel = `(p + 0.5) * shrink`."""
    rect: tuple
    landmarks: tuple  # 68 tuples (x, y) of ints
    shrink: int = 1

    @classmethod
    def from_json(cls, d: Any, where: str = "face_spec") -> "FaceSpec":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        for k in ("rect", "landmarks", "shrink"):
            if k not in d:
                raise ValueError(f"{where}.{k}: missing")
        lm = d["landmarks"]
        if (not isinstance(lm, list) or len(lm) != N_LANDMARKS
                or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in lm)):
            raise ValueError(f"{where}.landmarks: expected {N_LANDMARKS}x2 integers")
        if not all(_is_int(v) for p in lm for v in p):
            raise ValueError(f"{where}.landmarks: expected {N_LANDMARKS}x2 integers, found a non-integer")
        if not all(-MAX_COORD <= v <= MAX_COORD for p in lm for v in p):
            raise ValueError(f"{where}.landmarks: a coordinate is beyond +-{MAX_COORD}")
        rect = d["rect"]
        if not isinstance(rect, (list, tuple)) or len(rect) != 4 or not all(_is_int(v) for v in rect):
            raise ValueError(f"{where}.rect: expected 4 integers [l, t, r, b]")
        if not all(-MAX_COORD <= v <= MAX_COORD for v in rect):
            raise ValueError(f"{where}.rect: a coordinate is beyond +-{MAX_COORD}")
        shrink = d["shrink"]
        if not _is_int(shrink) or not 1 <= shrink <= MAX_COORD:
            raise ValueError(f"{where}.shrink: expected an integer from 1 to {MAX_COORD}, "
                             f"got {_short_repr(shrink)}")
        return cls(rect=tuple(int(v) for v in rect),
                   landmarks=tuple((int(x), int(y)) for x, y in lm), shrink=int(shrink))

    def to_json(self) -> dict:
        return {"rect": list(self.rect), "landmarks": [list(p) for p in self.landmarks],
                "shrink": self.shrink}

    def box_full(self) -> tuple:
        """The detection box in the full-resolution image as edges (x0, y0, x1, y1),
        floats, as torchvision's boxes (face_recognition's (top, right, bottom, left) is
        (y0, x1, y1, x0)): shrunk pixel l spans [l, l + 1), i.e. [l * shrink, (l + 1) *
        shrink) at full resolution. The same mapping as geometry.rect_full."""
        l, t, r, b = self.rect
        s = self.shrink
        return (float(l * s), float(t * s), float((r + 1) * s), float((b + 1) * s))

    def landmarks_full(self) -> tuple:
        """The 68 landmarks in full-resolution continuous coordinates, ((p + 0.5) *
        shrink) per axis: the points align crops around (geometry.landmarks_full). The
        full-resolution pixel index is this minus 0.5."""
        s = self.shrink
        return tuple(((x + 0.5) * s, (y + 0.5) * s) for x, y in self.landmarks)


    def packed(self) -> "PackedFaceSpec":
        """The same face_spec with its landmarks in one int64 array: about 1 KB instead of
        8 KB of tuples, for a stage that holds hundreds of thousands of faces."""
        import numpy as np  # deferred: every stage loads records; only packing needs numpy
        return PackedFaceSpec(self.rect, np.array(self.landmarks, dtype=np.int64).reshape(-1, 2),
                              self.shrink)


@dataclass(frozen=True, eq=False)
class PackedFaceSpec(FaceSpec):
    """A FaceSpec whose `landmarks` is a (68, 2) int64 array; the same JSON, and equal to
    the FaceSpec it packs."""

    def to_json(self) -> dict:
        return {"rect": list(self.rect), "landmarks": self.landmarks.tolist(), "shrink": self.shrink}

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, FaceSpec) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.rect, self.shrink))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short_repr(v: Any, limit: int = 60) -> str:
    """repr() for messages, cut short (a hostile value may be megabytes or 400 digits)."""
    try:
        r = repr(v) if not (_is_int(v) and abs(v) > 10 ** 30) else f"an integer of {len(str(abs(v)))} digits"
    except (ValueError, RecursionError):
        r = f"a {type(v).__name__}"
    return r if len(r) <= limit else r[:limit] + "..."


class FaceKey(NamedTuple):
    """One face's identity, (obj_id, face_idx), and the one spelling of its name.

    A tuple, so it equals and hashes like the plain `(obj_id, face_idx)` keys it replaces;
    `str(key)` is the id people see, overrides.json and the review page use and the crop
    file is named after: `{obj_id}-{face_idx:02d}` (`crop_name` adds `.png`)."""
    obj_id: str
    face_idx: int

    def __str__(self) -> str:
        return f"{self.obj_id}-{self.face_idx:02d}"

    @property
    def crop_name(self) -> str:
        return f"{self}.png"

    @classmethod
    def parse(cls, text: str) -> Optional["FaceKey"]:
        """The key named by `text` (`436015-00`, or the crop file name `436015-00.png`),
        or None when it is not a well-formed face id (its index written with at least two
        digits, exactly as `str()` writes it)."""
        if not isinstance(text, str):
            return None
        m = _FACE_ID.fullmatch(text[:-4] if text.endswith(".png") else text)
        if not m or f"{int(m.group(2)):02d}" != m.group(2):
            return None
        return cls(m.group(1), int(m.group(2)))


_FACE_ID = re.compile(r"(.+)-(\d{2,})", re.S)


def crop_name_problem(obj_id: str, face_idx: int) -> Optional[str]:
    """Why `{obj_id}-{face_idx:02d}.png` cannot be a crop's file name, or None."""
    if check_relative_path(obj_id) or "/" in obj_id or "\\" in obj_id:
        return "has a path separator or is empty"
    if obj_id.startswith("."):
        return "starts with '.' (a hidden file)"
    if any(ord(c) < 32 or ord(c) == 127 for c in obj_id):
        return "contains control characters"
    if len(FaceKey(obj_id, face_idx).crop_name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return f"makes a crop file name longer than {NAME_MAX} bytes"
    return None


@dataclass
class FaceRecord:
    """One face: NVIDIA's metfaces.json keys + our optional detection extras."""
    obj_id: str
    source_path: str
    face_spec: FaceSpec
    face_idx: int
    meta_url: str = ""
    source_url: str = ""
    source_md5: str = ""
    image_path: str = ""
    image_md5: str = ""
    title: str = ""
    artist_display_name: str = ""
    detector: Optional[str] = None
    score: Optional[float] = None
    subdetector: Optional[int] = None
    image_width: Optional[int] = None
    image_height: Optional[int] = None
    shrink_method: Optional[str] = None
    exif_orientation: Optional[int] = None
    department: Optional[str] = None
    extra: dict = field(default_factory=dict)  # unknown keys, kept verbatim

    @property
    def key(self) -> FaceKey:
        return FaceKey(self.obj_id, self.face_idx)

    @property
    def crop_name(self) -> str:
        """The MetFaces crop file name, `{obj_id}-{face_idx:02d}.png`."""
        return self.key.crop_name

    @classmethod
    def from_json(cls, d: Any, index: int = 0) -> "FaceRecord":
        """Validate one entry; a ValueError names the record index and the field."""
        where = f"record {index}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        for k in REQUIRED_KEYS:
            if k not in d:
                raise ValueError(f"{where}: missing key {k!r}")
        obj_id = d["obj_id"]
        if _is_int(obj_id):
            obj_id = str(obj_id)
        if not isinstance(obj_id, str) or not obj_id:
            raise ValueError(f"{where}: field 'obj_id' must be a non-empty string")
        face_idx = d["face_idx"]
        if not _is_int(face_idx) or not 0 <= face_idx <= MAX_FACE_IDX:
            raise ValueError(f"{where}: field 'face_idx' must be an integer from 0 to {MAX_FACE_IDX}, "
                             f"got {_short_repr(face_idx)}")
        why = crop_name_problem(obj_id, face_idx)
        if why:
            raise ValueError(f"{where}: field 'obj_id' {_short_repr(obj_id)} is not usable as a "
                             f"file name: it {why}")
        sp = d["source_path"]
        why = check_relative_path(sp) if isinstance(sp, str) else "not a string"
        if why:
            raise ValueError(f"{where}: field 'source_path': {why}")
        try:
            spec = FaceSpec.from_json(d["face_spec"])
        except ValueError as e:
            raise ValueError(f"{where}: field {e}") from None
        kw: dict[str, Any] = {}
        clipped: dict[str, str] = {}
        for k in ("meta_url", "source_url", "source_md5", "image_path", "image_md5", "title",
                  "artist_display_name"):
            v = d.get(k, "")
            if v is not None and not isinstance(v, (str, int, float)):
                raise ValueError(f"{where}: field {k!r} must be a string, got {type(v).__name__}")
            kw[k], note = clean_text("" if v is None else str(v))
            if note:
                clipped[k] = note
        for k in EXTRA_KEYS:
            v = d.get(k)
            if v is None:
                continue
            want = _EXTRA_TYPES[k]
            ok = isinstance(v, str) if want is str else (
                _is_int(v) if want is int else
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            if not ok:  # a damaged or hand-edited record: named, never a crash later
                raise ValueError(f"{where}: field {k!r} must be {_TYPE_WORDS[want]}, got "
                                 f"{_short_repr(v)}")
            kw[k] = clean_text(v)[0] if want is str else v
        known = set(METFACES_KEYS) | set(EXTRA_KEYS)
        extra = {k: v for k, v in d.items() if k not in known}
        if clipped:
            extra["clipped"] = clipped
        return cls(obj_id=obj_id, source_path=sp, face_spec=spec, face_idx=face_idx, extra=extra, **kw)

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        for k in METFACES_KEYS:
            v = getattr(self, k)
            out[k] = v.to_json() if isinstance(v, FaceSpec) else v
        for k in EXTRA_KEYS:
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        out.update(self.extra)
        return out

    def replace(self, **changes) -> "FaceRecord":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BadRecord:
    """An input entry that failed validation (kept so `--skip-bad` can record it)."""
    index: int
    reason: str
    obj_id: Optional[str] = None
    face_idx: Optional[int] = None
    raw: Any = None


@dataclass
class LoadedFaces:
    faces: list
    bad: list  # list[BadRecord]


def parse_faces(data: Any, what: str = "face list") -> LoadedFaces:
    """Validate a metfaces.json-style list; collect every bad entry instead of stopping."""
    if isinstance(data, dict) and isinstance(data.get("faces"), list):
        data = data["faces"]
    if not isinstance(data, list):
        raise RecordError(f"{what}: expected a JSON list of face records, got {type(data).__name__}")
    return parse_face_items(data)


def parse_face_items(data: Iterable, pack: bool = False) -> LoadedFaces:
    """parse_faces over the entries of a list as they come (a file read item by item:
    only the records are kept, never the whole parsed list); `pack` keeps each face_spec
    as a PackedFaceSpec."""
    faces: list[FaceRecord] = []
    bad: list[BadRecord] = []
    seen: dict[tuple, int] = {}
    for i, d in enumerate(data):
        try:
            rec = FaceRecord.from_json(d, i)
        except ValueError as e:
            oid = d.get("obj_id") if isinstance(d, dict) else None
            fidx = d.get("face_idx") if isinstance(d, dict) else None
            bad.append(BadRecord(i, str(e), None if oid is None else str(oid),
                                 fidx if _is_int(fidx) else None, d))
            continue
        if rec.key in seen:
            bad.append(BadRecord(i, f"record {i}: duplicate (obj_id, face_idx) = ({rec.obj_id!r}, "
                                    f"{rec.face_idx}), first seen at record {seen[rec.key]}",
                                 rec.obj_id, rec.face_idx, d))
            continue
        seen[rec.key] = i
        faces.append(rec.replace(face_spec=rec.face_spec.packed()) if pack else rec)
    return LoadedFaces(faces, bad)


def obj_id_sort_key(obj_id: str) -> tuple:
    """Numeric ids in numeric order, then any other ids by name (deterministic outputs)."""
    return (0, int(obj_id), "") if obj_id.isdigit() else (1, 0, obj_id)


@dataclass
class MetObject:
    """One Met object as the fetch stage saw it, with the outcome of fetching its image.

    status: ok | no_image | not_public_domain | not_found | http_error | bad_content |
    too_large | changed | refused.
    """
    id: int
    status: str
    reason: str = ""
    department: str = ""
    title: str = ""
    artist: str = ""
    date: str = ""
    is_public_domain: Optional[bool] = None
    image_url: str = ""
    path: str = ""  # relative to the work dir, e.g. originals/123.jpg
    attempts: int = 0
    bytes: int = 0
    sha256: str = ""
    md5: str = ""
    width: int = 0
    height: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "MetObject":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {k: d[k] for k in names if k in d}
        kw["extra"] = {k: v for k, v in d.items() if k not in names}
        return cls(**kw)


@dataclass
class Rejection:
    """A face the filter stage dropped: every failed test and the values behind them."""
    obj_id: str
    face_idx: int
    reasons: list
    values: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)  # failed test -> the limit it was held to

    def to_json(self) -> dict:
        out = {"obj_id": self.obj_id, "face_idx": self.face_idx, "reasons": list(self.reasons),
               "values": self.values}
        if self.limits:
            out["limits"] = self.limits
        return out

    @classmethod
    def from_json(cls, d: Any) -> "Rejection":
        """A rejected.jsonl line; ValueError when it names no face. Fields of the wrong
        shape (a hand-edited file) read as empty."""
        if not isinstance(d, dict) or not isinstance(d.get("obj_id"), (str, int)) \
                or not _is_int(d.get("face_idx")):
            raise ValueError("not a rejection: needs obj_id and an integer face_idx")
        reasons = d.get("reasons")
        reasons = [r for r in reasons if isinstance(r, str)] if isinstance(reasons, list) else []
        values, limits = d.get("values"), d.get("limits")
        return cls(str(d["obj_id"]), d["face_idx"], reasons,
                   values if isinstance(values, dict) else {}, limits if isinstance(limits, dict) else {})


@dataclass(frozen=True)
class AlignEntry:
    """One entry of align's manifest (aligned.json), typed for its readers (export,
    status, verify, align's own rerun). Fields of the wrong shape (a hand-edited or
    damaged manifest) read as empty; `raw` is the entry exactly as written, which align
    carries into the next manifest, so keys this class does not name survive a rerun."""
    status: str = ""
    record: Optional[dict] = None   # the face record it was made from (None: not an object)
    output: Any = ""                # the crop's file name in the output folder, as written
    reason: str = ""
    file_md5: str = ""
    pixel_md5: str = ""
    params: Optional[dict] = None   # None: not recorded (or not an object)
    versions: Optional[dict] = None
    inputs: Optional[list] = None   # None: made before align recorded its inputs
    raw: Any = None

    @property
    def key(self) -> Optional[FaceKey]:
        """The face the entry is about, or None when its record names none."""
        rec = self.record
        if rec is None or not isinstance(rec.get("obj_id"), (str, int)) \
                or not isinstance(rec.get("face_idx"), int):
            return None
        return FaceKey(str(rec["obj_id"]), rec["face_idx"])

    @classmethod
    def from_json(cls, d: Any) -> "AlignEntry":
        """Any parsed item of the manifest; one that is not an object reads as an entry
        with no status and no record (a reader counts or skips it, never crashes)."""
        if not isinstance(d, dict):
            return cls(raw=d)
        def of(k, kind, empty):
            v = d.get(k)
            return v if isinstance(v, kind) else empty
        return cls(status=of("status", str, ""), record=of("record", dict, None),
                   output=d.get("output", ""), reason=of("reason", str, ""),
                   file_md5=of("file_md5", str, ""), pixel_md5=of("pixel_md5", str, ""),
                   params=of("params", dict, None), versions=of("versions", dict, None),
                   inputs=of("inputs", list, None), raw=d)

    def to_json(self) -> Any:
        return self.raw


def shared_dict(cache: dict, d: Any) -> Any:
    """One stored object per distinct flat dict (every crop names the same few params and
    versions dicts), in its own key order: `cache` maps its items to the first copy. A
    value that is not a dict, or a dict with unhashable values, is returned as it is."""
    if not isinstance(d, dict):
        return d
    try:
        return cache.setdefault(tuple(d.items()), d)
    except TypeError:
        return d


def shared_keys(obj: Any) -> Any:
    """`obj` with every dict key interned (nested dicts and lists too): a list parsed item
    by item (infra/jsonstream.py) gives each item its own copy of every key, ~50 strings
    per face record; a stage holding 200,000 records keeps one of each. Values, and the
    order of keys, are unchanged."""
    if isinstance(obj, dict):
        return {(sys.intern(k) if type(k) is str else k): shared_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shared_keys(v) for v in obj]
    return obj
