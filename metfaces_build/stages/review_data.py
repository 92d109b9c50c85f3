"""The review page's data, gathered one face at a time.

A face's entry joins its record (faces.json, or filtered.json for a kept face faces.json
lacks), the filter's decision (filtered.json / rejected.jsonl, overrides included), its
object (the stored API record, else objects.jsonl), compare's stored landmarks and align's
crop. The face lists are streamed: what stays in memory for every face is its decision as
one short JSON string, its key and the object's few text fields, so `review` on 200,000
faces holds under 2 KB a face (peak RSS), not the records (see README "At collection scale").
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import quote

from ..core.errors import UsageError
from ..core.records import FaceRecord, Rejection, clean_text
from ..core.status import MATCHED, OK
from ..infra.files import read_json_or_none, read_jsonl, safe_join
from ..infra.jsonstream import read_json_items
from ..infra.workdir import REVIEW_THUMBS as THUMBS, as_work, manifest_path
from .filter import OVERRIDES_FILE, OVERRIDE_REASON, face_id

MET_OBJECT_URL = "https://www.metmuseum.org/art/collection/search/{}"
# filter values the card shows under another name (qsize, score) or a person cannot read
DUPLICATE_VALUES = ("phash", "resolution", "score")
# what a card shows (loaded for every face) and what opening it needs (loaded on demand)
CARD_FIELDS = ("id", "obj", "idx", "detector", "score", "decision", "override", "failed",
               "qsize", "sharpness", "grayscale", "thumb")
DETAIL_FIELDS = ("values", "src", "width", "height", "rect", "lm", "shrink", "stored")


@dataclass
class ThumbJob:
    """One face's thumbnail: from the aligned crop when there is one, else from the source."""
    face: str              # face id
    out: str               # thumbnail path
    record: Optional[dict]  # face record (JSON form) for an approximate crop
    aligned: Optional[str]  # aligned crop path


@dataclass
class PageSources:
    """Everything but the face records, read once: per face only compact state."""
    decisions: dict        # face key -> JSON text of the decision part of its entry
    objects: "ObjectTable"
    compared: dict         # face key -> (flat stored landmarks, shrink, NME)
    aligned: dict          # face key -> (crop file name, file md5)


# ---- small readers -------------------------------------------------------------------------

def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def _names(v) -> list:
    return [t for t in v if isinstance(t, str)] if isinstance(v, list) else []


def _text(v) -> str:
    """A text field for the page: strings cut at MAX_TEXT, numbers as text, else ""."""
    if isinstance(v, str):
        return clean_text(v)[0]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return ""


def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def face_records(path: Path) -> Iterator:
    """The valid face records of a face list, one at a time (bad ones and repeats left
    out, as load_faces(skip_bad=True) leaves them); nothing when the file is missing."""
    if not path.is_file():
        return
    items = read_json_items(path, "face list")
    if isinstance(items, list) or hasattr(items, "__next__"):
        seen = set()
        for i, d in enumerate(items):
            try:
                rec = FaceRecord.from_json(d, i)
            except ValueError:
                continue
            if rec.key not in seen:
                seen.add(rec.key)
                yield rec


# ---- objects -------------------------------------------------------------------------------

class ObjectTable:
    """Title, artist, department, date, Met URL and size per object: from the stored API
    record (DIR/api/{id}.json, read when first asked), else fetch's objects.jsonl (only
    the rows of the objects asked for are kept)."""

    ROW_FIELDS = ("title", "artist", "department", "date", "width", "height")

    def __init__(self, work: Path, obj_ids):
        self.layout = as_work(work)
        wanted = set(obj_ids)
        self.rows: dict = {}
        for r in read_jsonl(self.layout.objects_jsonl):
            oid = str(r.get("id"))
            if oid in wanted:  # the latest line of an object wins
                self.rows[oid] = tuple(r.get(k) for k in self.ROW_FIELDS)

    def info(self, oid: str) -> dict:
        api = _dict(read_json_or_none(self.layout.api_dir / f"{oid}.json"))
        row = dict(zip(self.ROW_FIELDS, self.rows.get(oid, ())))
        url = api.get("objectURL") or ""
        if not (isinstance(url, str) and url.startswith("https://")):
            url = MET_OBJECT_URL.format(quote(oid))
        return {"title": _text(api.get("title")) or _text(row.get("title")),
                "artist": _text(api.get("artistDisplayName")) or _text(row.get("artist")),
                "department": _text(api.get("department")) or _text(row.get("department")),
                "date": _text(api.get("objectDate")) or _text(row.get("date")),
                "url": _text(url),
                "width": _int(row.get("width")), "height": _int(row.get("height"))}


# ---- decisions, compare, align -------------------------------------------------------------

def _failed_tests(values: dict, reasons: list, limits: dict) -> list:
    """[{test, value, limit}] for each failed test, as the filter recorded it."""
    out = []
    for name in reasons:
        value = values.get(name)
        if name == "resolution":
            value = values.get("qsize", value)
        out.append({"test": name, "value": value, "limit": limits.get(name, "")})
    return out


def _decision_part(decision: str, values: dict, failed: list, ov: dict) -> str:
    grey = values.get("grayscale")
    part = {"decision": decision,
            "override": ov.get("decision") if ov.get("decision") in ("keep", "reject") else None,
            "failed": failed, "qsize": values.get("qsize"), "sharpness": values.get("sharpness"),
            "grayscale": grey.get("grayscale") if isinstance(grey, dict) else None,
            "values": {k: v for k, v in values.items() if k not in DUPLICATE_VALUES}}
    return json.dumps(part, separators=(",", ":"), allow_nan=False)


def read_decisions(work: Path) -> dict:
    """face key -> the decision part of its entry (JSON text): kept faces from filtered.json
    (a face in both wins as kept), rejected ones from rejected.jsonl with their reasons,
    measured values and limits, a person's override first."""
    layout = as_work(work)
    out: dict = {}
    for r in read_jsonl(layout.rejected_jsonl):
        try:  # a damaged line: wrong-typed fields read as empty, no face named: left out
            row = Rejection.from_json(r)
        except ValueError:
            continue
        ov = _dict(row.values.get(OVERRIDE_REASON))
        reasons = [x for x in row.reasons if x != OVERRIDE_REASON]
        reasons += [t for t in _names(ov.get("tests_failed")) if t not in reasons]
        failed = _failed_tests(row.values, reasons, row.limits)
        if OVERRIDE_REASON in row.reasons:
            failed.insert(0, {"test": OVERRIDE_REASON, "value": "rejected by a person",
                              "limit": OVERRIDES_FILE})
        out[(row.obj_id, row.face_idx)] = _decision_part("rejected", row.values, failed, ov)
    for rec in face_records(layout.filtered_json):
        values = _dict(rec.extra.get("filter"))
        ov = _dict(values.get(OVERRIDE_REASON))
        failed = _failed_tests(values, _names(ov.get("tests_failed")), _dict(ov.get("limits")))
        out[tuple(rec.key)] = _decision_part("kept", values, failed, ov)
    return out


def _flat_landmarks(rec) -> list:
    lm = rec.face_spec.landmarks
    return lm.ravel().tolist() if hasattr(lm, "ravel") else [v for p in lm for v in p]


def compare_landmarks(work: Path) -> dict:
    """face key -> (stored landmarks, flat, stored shrink, NME) where compare matched it;
    {} when compare did not run on this work directory's faces.json."""
    layout = as_work(work)
    stats = read_json_or_none(layout.compare_json)
    if not isinstance(stats, dict):
        return {}
    regen_path, stored_path = stats.get("regenerated_path"), stats.get("stored_path")
    if not (isinstance(regen_path, str) and isinstance(stored_path, str)):
        return {}  # a hand-edited or damaged compare.json
    try:
        if not regen_path or Path(regen_path).resolve() != layout.faces_json.resolve():
            return {}
    except OSError:
        return {}
    matched = {}
    for m in read_jsonl(layout.compare_faces_jsonl):
        if m.get("status") != MATCHED:
            continue
        if not all(isinstance(m.get(k), int) for k in ("stored_face_idx", "regen_face_idx")):
            continue  # a damaged line
        matched[(str(m.get("obj_id")), m["stored_face_idx"])] = (m["regen_face_idx"], m.get("nme"))
    out = {}
    for s in face_records(Path(stored_path)) if matched and stored_path else ():
        hit = matched.get(tuple(s.key))
        if hit is not None:
            out[(s.obj_id, hit[0])] = (_flat_landmarks(s), s.face_spec.shrink, hit[1])
    return out


def aligned_crops(work: Path) -> dict:
    """face key -> (crop file name, file md5) of align's ok entries; {} when align has not
    finished here or its manifest is unreadable."""
    path = manifest_path(as_work(work).images_dir)
    if not path.is_file():
        return {}
    out = {}
    try:
        items = read_json_items(path, "align manifest")
        if not (isinstance(items, list) or hasattr(items, "__next__")):
            return {}
        for e in items:
            rec = e.get("record") if isinstance(e, dict) else None
            if isinstance(rec, dict) and e.get("status") == OK and isinstance(e.get("output"), str) \
                    and e["output"] and isinstance(rec.get("face_idx"), int):
                out[(str(rec.get("obj_id")), rec.get("face_idx"))] = (e["output"], e.get("file_md5"))
    except UsageError:
        return {}  # as a manifest that is not there
    return out


def read_sources(work: Path) -> PageSources:
    """The decisions, objects, compare and align results the entries are made from."""
    layout = as_work(work)
    if not layout.filtered_json.is_file() or not layout.rejected_jsonl.is_file():
        raise UsageError(f"{work}: no filter output (filtered.json, rejected.jsonl): "
                         f"run `metfaces-build filter --work {work}` first")
    decisions = read_decisions(work)
    objects = ObjectTable(work, {k[0] for k in decisions})
    return PageSources(decisions, objects, compare_landmarks(work), aligned_crops(work))


# ---- entries -------------------------------------------------------------------------------

def page_faces(work: Path, decisions: dict) -> Iterator:
    """(key, record) of every face the page shows, in faces.json order, then the kept faces
    faces.json lacks; a face of faces.json with no decision yields (key, None)."""
    layout = as_work(work)
    seen = set()
    for rec in face_records(layout.faces_json):
        key = tuple(rec.key)
        seen.add(key)
        yield key, rec
    for rec in face_records(layout.filtered_json):
        if tuple(rec.key) not in seen:
            yield tuple(rec.key), rec


def face_entry(rec, decision: str, src: PageSources, layout, source_root: Path,
               out_dir: Path) -> tuple:
    """(entry, (source path, ThumbJob)) of one face."""
    key = tuple(rec.key)
    fid = face_id(*key)
    try:
        source = safe_join(source_root, rec.source_path)
        src_url = quote(Path(os.path.relpath(source, out_dir)).as_posix())
    except ValueError:
        source, src_url = None, ""
    part = json.loads(decision)
    entry = {"id": fid, "obj": rec.obj_id, "idx": rec.face_idx, "detector": rec.detector,
             "score": rec.score, **part, "src": src_url,
             "width": rec.image_width, "height": rec.image_height,
             "rect": list(rec.face_spec.rect), "lm": _flat_landmarks(rec),
             "shrink": rec.face_spec.shrink}
    stored = src.compared.get(key)
    if stored is not None:
        entry["stored"] = {"lm": stored[0], "shrink": stored[1], "nme": stored[2]}
    al = src.aligned.get(key) if part["decision"] == "kept" else None
    crop = (layout.images_dir / al[0]) if al else None
    if crop is not None and crop.is_file():
        tag = "a" + str(al[1] or "")[:10]
    else:
        crop = None
        tag = "q" + hashlib.sha256(json.dumps(
            [rec.source_path, rec.face_spec.to_json()]).encode()).hexdigest()[:10]
    entry["thumb"] = f"{THUMBS}/{quote(fid)}-{tag}.jpg"
    job = ThumbJob(fid, str(out_dir / THUMBS / f"{fid}-{tag}.jpg"), rec.to_json(),
                   str(crop) if crop else None)
    return entry, (str(source) if source else "", job)


def entries(work: Path, src: PageSources, source_root: Path, out_dir: Path, skipped: list) -> Iterator:
    """(entry, thumbnail job) of every face the page shows, one at a time; faces of
    faces.json the filter has not decided on are counted in skipped[0]."""
    layout = as_work(work)
    for key, rec in page_faces(work, src.decisions):
        decision = src.decisions.get(key)
        if decision is None:
            skipped[0] += 1  # faces.json changed after filter ran
            continue
        yield face_entry(rec, decision, src, layout, source_root, out_dir)


def split_overrides(work: Path, known) -> tuple:
    """(decisions in force about faces the page shows, about faces it does not show):
    the second are carried in the page and saved again with the rest, never dropped."""
    stored = read_json_or_none(as_work(work).overrides_json)
    overrides = _dict(stored.get("faces") if isinstance(stored, dict) else None)
    overrides = {k: v for k, v in overrides.items() if v in ("keep", "reject")}
    return ({k: v for k, v in overrides.items() if k in known},
            {k: v for k, v in overrides.items() if k not in known})


def card_and_detail(entry: dict) -> tuple:
    """An entry as two rows: what its card shows, and what opening it adds."""
    return [entry.get(k) for k in CARD_FIELDS], [entry.get(k) for k in DETAIL_FIELDS]
