"""Per-face provenance for the dataset formats (WebDataset .json, Hugging Face and folder
metadata.jsonl): what a face is, where it came from, under which licence.

Text comes from the stored Met record (DIR/api/{id}.json), else fetch's objects.jsonl,
else the face record; it is written as strict JSON (lone surrogates replaced, no NaN), so
readers such as Arrow's JSON reader never choke on a record's text.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..core.errors import UsageError
from ..core.records import as_object_id
from ..infra.files import read_json_or_none

LICENSE_CC0 = "CC0-1.0"


# ---- provenance ------------------------------------------------------------------------

def clean(value: Any) -> Any:
    """`value` as strict JSON can carry it: lone surrogates in text become U+FFFD (Arrow's
    and most JSON readers reject them), non-finite floats become null."""
    if isinstance(value, str):
        # UTF-16 round trip: a surrogate pair becomes its character, a lone one U+FFFD
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace") \
            if any("\ud800" <= ch <= "\udfff" for ch in value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """One compact line of strict JSON (UTF-8 text; keys in the order given, which is
    fixed, so the same inputs give the same bytes)."""
    try:  # the common case, fast: nothing to clean
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode("utf-8")
        return text
    except (ValueError, UnicodeEncodeError):  # NaN / inf, or a lone surrogate
        return json.dumps(clean(value), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))


class ObjectInfo:
    """Title, artist, date, URL, licence and credit line per object, looked up one object
    at a time (faces arrive grouped by object): memory does not grow with the export."""

    def __init__(self, work, obj_ids):
        self.work = work
        ids = {as_object_id(i) for i in obj_ids} - {None}
        self.rows = {str(k): r for k, r in work.objects_of(ids).items()} \
            if work is not None else {}
        self._last: tuple = (None, {})

    def api(self, obj_id: str) -> dict:
        if self._last[0] != obj_id:
            oid = as_object_id(obj_id)  # only an integer id ever becomes a path
            rec = read_json_or_none(self.work.api_dir / f"{oid}.json") \
                if self.work is not None and oid is not None else None
            self._last = (obj_id, rec if isinstance(rec, dict) else {})
        return self._last[1]

    def of(self, crop) -> dict:
        api, row, rec = self.api(crop.obj_id), self.rows.get(crop.obj_id, {}), crop.record

        def first(*values) -> str:
            return next((v for v in values if isinstance(v, str) and v), "")
        public = api.get("isPublicDomain", row.get("is_public_domain"))
        return {"title": first(api.get("title"), row.get("title"), rec.get("title")),
                "artist": first(api.get("artistDisplayName"), row.get("artist"),
                                rec.get("artist_display_name")),
                "date": first(api.get("objectDate"), row.get("date")),
                "object_url": first(api.get("objectURL"), row.get("meta_url"), rec.get("meta_url")),
                "license": LICENSE_CC0 if public is True else "",
                "credit_line": first(api.get("creditLine"))}


def face_spec(crop, where: str) -> dict:
    """The record's face_spec (rect, landmarks, shrink), as align used it."""
    spec = crop.record.get("face_spec")
    if not isinstance(spec, dict) or not {"rect", "landmarks", "shrink"} <= spec.keys():
        raise UsageError(f"{where}: face {crop.key} has no face_spec "
                         "(rect, landmarks, shrink)")
    lm = spec["landmarks"]  # a packed array (export._packed) or the record's lists
    return {"rect": spec["rect"], "landmarks": lm.tolist() if hasattr(lm, "tolist") else lm,
            "shrink": spec["shrink"]}


def face_row(p, info: dict, names: Optional[list], where: str) -> dict:
    """The provenance of one exported face (WebDataset .json, folder metadata.jsonl)."""
    c, rec = p.crop, p.crop.record
    row = {"key": p.name[:-len(".png")], "obj_id": c.obj_id, "face_idx": c.face_idx,
           "department": c.department or None, **info,
           "face_spec": face_spec(c, where),
           "source": {"url": rec.get("source_url") or "", "md5": rec.get("source_md5") or "",
                      "sha256": rec.get("source_sha256") or ""},
           "crop": {"file_md5": c.file_md5, "pixel_md5": c.pixel_md5},
           "versions": {"metfaces-build": __version__, **c.versions}}
    if names is not None:
        row["label"] = p.label
    return row


def label_names(label_map: Optional[dict]) -> Optional[list]:
    """Class names by index (None without labels)."""
    if label_map is None:
        return None
    return [d for d, _ in sorted(label_map.items(), key=lambda kv: kv[1])]


# ---- writing ---------------------------------------------------------------------------

def write_file(path: Path, data: bytes) -> None:
    """A file inside a folder being built (the folder is renamed into place at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


