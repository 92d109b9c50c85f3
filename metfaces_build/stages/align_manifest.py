"""align's manifest across runs: which earlier crops a rerun may keep, why a crop is
re-made (`supersedes`), which input files claim a crop, and the entries of faces that
left the input (`superseded` / `withdrawn`, their crop deleted).

Earlier entries arrive as `AlignEntry` (infra/readers.py); what this module writes back
starts from the entry as it was written (`raw`), so keys it does not name survive.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..core.records import AlignEntry, FaceKey
from ..core.status import ALIGN_RETIRED, OK, SUPERSEDED, WITHDRAWN
from ..infra.files import file_digest, safe_join
from .align_crop import OLD_PNG_LEVEL

# what decides a crop's pixels; other record fields (title, artist, filter values...) do not
PIXEL_KEYS = ("obj_id", "face_idx", "source_path", "face_spec", "source_sha256", "source_md5")


def pixel_record(rec: dict) -> dict:
    """The part of a face record a crop depends on."""
    return {k: rec.get(k) for k in PIXEL_KEYS}


def _recorded_params(prev: AlignEntry) -> dict:
    """The parameters a manifest entry was made with (entries older than --png-level
    were written at level 6)."""
    if prev.params is None:
        return {}
    return {"png_level": OLD_PNG_LEVEL, **prev.params}


def _superseded_because(prev: Optional[AlignEntry], rec: dict, params: dict) -> str:
    """Why an earlier ok crop of this face is being replaced ("" when there was none)."""
    if not prev or prev.status != OK or prev.record is None:
        return ""
    old = pixel_record(prev.record)
    new = pixel_record(rec)
    if (old["source_sha256"], old["source_md5"]) != (new["source_sha256"], new["source_md5"]) \
            or old["source_path"] != new["source_path"]:
        return "source image changed"
    if old["face_spec"] != new["face_spec"]:
        return "face_spec changed (detected again)"
    recorded = _recorded_params(prev)
    if recorded != params:
        if {**recorded, "png_level": params.get("png_level")} == params:
            return "PNG level changed (same pixels)"
        return "align parameters changed"
    return ""  # the same crop made again (it was missing or altered): nothing superseded


def input_reference(json_path, out_dir: Path) -> str:
    """How the manifest names an input file: its path relative to the output folder (so a
    work directory moved as a whole keeps its meaning), absolute when on another drive."""
    src = os.path.realpath(json_path)
    try:
        return Path(os.path.relpath(src, os.path.realpath(out_dir))).as_posix()
    except ValueError:
        return Path(src).as_posix()


def claimed_by(prev: Optional[AlignEntry], input_ref: str) -> list:
    """The inputs a face's crop belongs to after this run: this one, plus those its earlier
    entry named (a crop another --json made or reused stays theirs too)."""
    before = prev.inputs if prev is not None else None
    names = {i for i in before if isinstance(i, str)} if before is not None else set()
    return sorted(names | {input_ref})


def _other_claims(prev: AlignEntry, input_ref: str, out_dir: Path) -> Optional[list]:
    """Inputs other than this run's that still claim an entry's crop (those whose file is
    gone lapse), or None for an entry from before inputs were recorded (treated as made
    from this input, as align always did)."""
    if prev.inputs is None:
        return None
    return [i for i in prev.inputs if isinstance(i, str) and i != input_ref
            and (out_dir / i).is_file()]


def retire_missing(previous: dict, faces: list, out_dir: Path, src_root: Path,
                   input_ref: str = "") -> tuple:
    """(manifest entries, crops deleted) for faces of earlier runs no longer in the input:
    their crop is deleted (only the file the record names, in out_dir itself) and the
    entry kept with status `withdrawn` (the object has no face in the input and its source
    image is gone: fetch removes the original of an object withdrawn at the Met) or
    `superseded` (re-detected, or now rejected by the filter or a person). A crop another
    input (another --json into this folder) still claims is not ours to delete: its entry
    is kept as it was, minus this input."""
    wanted = {f.key for f in faces}
    objects = {f.obj_id for f in faces}
    entries, removed = [], 0
    for key, prev in previous.items():
        if key in wanted:
            continue
        others = _other_claims(prev, input_ref, out_dir)
        if others:
            entries.append({**prev.raw, "inputs": others})  # another input's face: left alone
        elif prev.status in ALIGN_RETIRED:
            entries.append(prev.raw)  # retired earlier: the manifest keeps saying so
        else:
            removed += _delete_crop(prev, key.crop_name, out_dir)
            entries.append(_retired_entry(prev, key, objects, src_root))
    return entries, removed


def _delete_crop(prev: AlignEntry, name: str, out_dir: Path) -> int:
    """1 when the crop `name` of a retired entry was deleted: only a plain file directly
    in out_dir (a hand-edited record names no other), else 0."""
    path = out_dir / name
    try:
        if prev.output == name and path.parent == out_dir and "/" not in name \
                and "\\" not in name and path.is_file() and not path.is_symlink():
            path.unlink()
            return 1
    except OSError:
        pass
    return 0


def _retired_entry(prev: AlignEntry, key, objects: set, src_root: Path) -> dict:
    """The manifest entry of a face that left the input: `withdrawn` when its object has
    no face left and its source image is gone, else `superseded`."""
    source = str(prev.record.get("source_path") or "")
    try:
        source_gone = not safe_join(src_root, source).is_file()
    except (ValueError, OSError):
        source_gone = True
    if key.obj_id not in objects and source_gone:
        status, why = WITHDRAWN, (f"object {key.obj_id} has no face in the input any more and "
                                  f"its source image {source[:200]} is gone (withdrawn at "
                                  "the Met, or lost its image)")
    else:
        status, why = SUPERSEDED, (f"face {key.face_idx} of object {key.obj_id} is no longer "
                                   "in the input (its image was detected again, or the filter "
                                   "or a person now rejects it)")
    was = prev.raw.get("status")
    return {**prev.raw, "status": status, "reason": why, "was": was,
            "output": "" if was == OK else prev.raw.get("output", "")}


def still_valid(prev: AlignEntry, rec: dict, params: dict, out_dir: Path) -> bool:
    """A previous result is reused only for the same record and parameters, and an ok
    crop only if the file is still there with the recorded md5."""
    try:
        if prev.record is None or pixel_record(prev.record) != pixel_record(rec) \
                or _recorded_params(prev) != params:
            return False
    except RecursionError:  # a hand-edited manifest nested absurdly deep
        return False
    if prev.status != OK:
        return False  # failures are retried (and retired faces come back when re-detected)
    # only the crop this record names, in the output folder itself: an edited manifest
    # pointing elsewhere (../x.png, a symlink) proves nothing about our crop
    name = FaceKey(rec["obj_id"], int(rec["face_idx"])).crop_name
    if prev.output != name:
        return False
    path = out_dir / name
    try:
        return not path.is_symlink() and path.is_file() and file_digest(path) == prev.file_md5
    except OSError:
        return False
