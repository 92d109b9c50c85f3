"""A person's keep / reject decisions (overrides.json), applied after every test."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from ...core.errors import UsageError
from ...core.records import FaceKey
from ...infra.files import atomic_write_json, duplicate_keys, read_json
from ...infra.workdir import OVERRIDES as OVERRIDES_FILE  # noqa: F401 (the decisions in force)
from .config import FilterOptions
from .results import OVERRIDE_DECISIONS


def face_id(obj_id: str, face_idx: int) -> str:
    """The id a person sees and overrides.json uses: the crop's name (`FaceKey`)."""
    return str(FaceKey(obj_id, face_idx))


def parse_overrides(data: Any, known_ids, where: str = "overrides", absent_ok=()) -> dict:
    """Validate `{"faces": {"436015-00": "keep", ...}}` against the faces of faces.json.

    Returns {face id: decision}. Any problem (wrong shape, a decision other than keep or
    reject, an id that is not a face of faces.json nor in `absent_ok`) raises a UsageError
    naming it, so a bad file changes nothing."""
    if not isinstance(data, dict) or not isinstance(data.get("faces"), dict):
        raise UsageError(f"{where}: expected {{\"faces\": {{\"OBJID-NN\": \"keep\" or \"reject\", ...}}}}")
    faces = data["faces"]
    bad = [f"{k!r}: {v!r}" for k, v in faces.items() if v not in OVERRIDE_DECISIONS]
    if bad:
        raise UsageError(f"{where}: decisions must be \"keep\" or \"reject\"; got "
                         + ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""))
    known = set(faces if known_ids is None else known_ids) | set(absent_ok)
    unknown = sorted(k for k in faces if k not in known)
    if unknown:
        raise UsageError(f"{where}: {len(unknown)} id(s) are not faces of faces.json: "
                         + ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
                         + " (ids are {obj_id}-{face_idx:02d}, e.g. 436015-00); nothing was changed")
    return {str(k): str(v) for k, v in sorted(faces.items())}


def load_overrides(path: Path, known_ids=None, absent_ok=()) -> dict:
    return parse_overrides(read_json(path, "overrides file"), known_ids, str(path), absent_ok)


def face_object(fid: str) -> Optional[str]:
    """The obj_id of a well-formed face id `{obj_id}-{face_idx:02d}`, else None."""
    key = FaceKey.parse(fid)
    return key.obj_id if key else None


def _absent_faces_of_known_objects(work, ids) -> set:
    """The ids among `ids` whose object this work directory fetched (a face an update
    withdrew or re-detected: a decision about it is kept, not a typo)."""
    objs = {f: face_object(f) for f in ids}
    wanted = {int(o) for o in objs.values() if o and o.isdigit() and len(o) < 19}
    if not wanted:
        return set()
    fetched = {str(i) for i in work.objects_of(wanted)}
    return {f for f, o in objs.items() if o in fetched}


def apply_overrides(verdicts: list, overrides: dict) -> int:
    """Set each overridden face's decision (pure: on the verdicts only). Runs after every
    test, overlaps and near-duplicates included, so a person's decision is final. Returns
    how many faces a decision moved (kept <-> rejected)."""
    moved = 0
    for v in verdicts:
        decision = overrides.get(str(v.record.key))
        v.override = decision
        if decision is not None and v.keep != v.passed:
            moved += 1
    return moved


def overrides_in_force(opts: "FilterOptions", work, faces: list) -> tuple:
    """(decisions to apply, stale ids). `opts.overrides` is validated in full (an unknown id
    is a UsageError: nothing changes) and saved as DIR/overrides.json, which later runs
    apply. Decisions saved there for faces that faces.json no longer has (an update
    re-detected or withdrew an image) are stale: kept in the file, not applied, and
    reported, so an update run is not stopped by a decision about a face that is gone;
    they apply again when the face comes back. A person's decision is never dropped by a
    stage: --overrides replaces the decisions about faces in faces.json, while stale ones
    it does not mention stay in force, and an id of --overrides that names a face absent
    now is accepted as stale when it is in force already or its object was fetched here
    (the review page saves them all)."""
    known = {str(f.key) for f in faces}
    stored = work.overrides_json
    saved = load_overrides(stored, None) if stored.exists() else {}  # ids may be stale
    if opts.overrides:
        given = Path(opts.overrides)
        raw = read_json(given, "overrides file")
        ids = raw.get("faces") if isinstance(raw, dict) else None
        absent = [k for k in ids if k not in known and k not in saved] if isinstance(ids, dict) else []
        ok = set(saved) | _absent_faces_of_known_objects(work, absent)
        overrides = {**{k: v for k, v in saved.items() if k not in known},
                     **parse_overrides(raw, known, str(given), ok)}
        overrides = dict(sorted(overrides.items()))
        if not stored.exists() or overrides != saved:
            atomic_write_json(stored, {"faces": overrides})
        saved = overrides
    stale = sorted(k for k in saved if k not in known)
    return {k: v for k, v in saved.items() if k in known}, stale


def overrides_digest(overrides: dict) -> str:
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()


def duplicate_notes(opts, work) -> list:
    """A warning per decision file naming a face twice (JSON keeps the last silently)."""
    paths = [Path(opts.overrides)] if opts.overrides else []
    if work.overrides_json.is_file() and not any(p.resolve() == work.overrides_json.resolve() for p in paths):
        paths.append(work.overrides_json)
    out = []
    for p in paths:
        dups = duplicate_keys(p)
        if dups:
            out.append(f"warning: {p} names {', '.join(repr(d) for d in dups)} more than once: "
                       "the last decision for each was used")
    return out


def stale_notes(stale: list, work) -> list:
    """The warning about decisions kept for faces that faces.json no longer has."""
    if not stale:
        return []
    shown = ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else "")
    return [f"{len(stale)} decision(s) in {work.overrides_json} name faces that faces.json no "
            f"longer has ({shown}): not applied, kept in the file; review the new faces and "
            f"save overrides again, or delete those ids"]
