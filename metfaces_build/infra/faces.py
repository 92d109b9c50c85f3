"""Reading face lists (metfaces.json-compatible files) from disk.

Parsing and validation are pure (core.records.parse_faces); this is the file edge."""
from __future__ import annotations

from ..core.errors import RecordError
from ..core.records import LoadedFaces, parse_face_items, parse_faces
from .jsonstream import read_json_items


def load_faces(path, skip_bad: bool = False, what: str = "face list",
               pack: bool = False) -> LoadedFaces:
    """Read a metfaces.json-compatible file. Without `skip_bad`, any bad entry refuses the
    whole file with a RecordError listing (up to 10 of) them. `pack`: landmarks as arrays
    (PackedFaceSpec), for stages holding many faces."""
    data = read_json_items(path, what)  # a list is parsed item by item: records only in memory
    if _is_iterator(data):
        loaded = parse_face_items(data, pack)
    else:
        loaded = parse_faces(data, f"{what} {path}")
        if pack:
            loaded.faces = [f.replace(face_spec=f.face_spec.packed()) for f in loaded.faces]
    if loaded.bad and not skip_bad:
        lines = [b.reason for b in loaded.bad[:10]]
        more = f"\n  ... and {len(loaded.bad) - 10} more" if len(loaded.bad) > 10 else ""
        raise RecordError(f"{path}: {len(loaded.bad)} invalid record(s):\n  " + "\n  ".join(lines)
                          + more + "\n(use --skip-bad to record them as failed and go on)")
    return loaded


def _is_iterator(v) -> bool:
    return hasattr(v, "__next__")
