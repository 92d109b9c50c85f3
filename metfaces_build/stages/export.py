"""Export aligned crops as a StyleGAN2-ADA / StyleGAN3 training set (zip or folder), or
with --format as WebDataset shards, a Hugging Face dataset or plain files (see below).

The result is what those repositories' `training/dataset.py` (ImageFolderDataset) read
as is, and what their `dataset_tool.py` writes: PNG images named
`00000/img00000000.png, 00000/img00000001.png, ...` (1000 per folder) and a `dataset.json`
{"labels": [["00000/img00000000.png", 3], ...]} with one integer class label per image,
or {"labels": null} with --no-labels. Train with labels via `--cond=1`.

Labels: the face's Met department. The classes are the departments present in the export,
sorted by name and numbered 0, 1, 2, ... (a face without a known department gets the class
"(unknown)"). The mapping, and per image its obj_id, face_idx, department, label, file md5
and pixel md5, are written beside the images in `metfaces-export.json`, so every label and
every file can be audited. StyleGAN ignores that file (it is not an image).

Sources: DIR/images/aligned.json (the align manifest; --images to read another align
output folder) entries with status ok, and their crops (superseded and withdrawn entries,
whose crops align deleted after an update, are left out); the department comes from the
face record, else from DIR/objects.jsonl. Before packing, every crop's file md5 is checked
against the manifest and every crop must be a square PNG of one power-of-two size
(StyleGAN's requirement; --resolution N also demands that size). The PNG bytes are copied
unchanged, so each file in the export still has the manifest's md5.

Exports are reproducible: images in (obj_id, face_idx) order, zip entries stored (PNG is
already compressed) with fixed timestamps, so the same inputs give the same bytes. The
output is written atomically: a zip under a temporary name then renamed; a folder built
beside the target then swapped in (an existing folder is replaced only if it is an earlier
export).

exit status: 0 exported; 1 some crops missing or not matching the manifest (nothing
written unless --skip-bad, which exports the rest and lists the skipped in the sidecar);
2 usage error (no manifest, mixed or non-power-of-two sizes, bad flag).

examples:
  metfaces-build export --work ./metfaces-work --out metfaces.zip
  metfaces-build export --work ./metfaces-work --out metfaces-1024/ --layout folder
  # then, in a StyleGAN3 checkout:
  python train.py --outdir=runs --data=metfaces.zip --cond=1 --cfg=stylegan3-t --gpus=8 \\
      --batch=32 --gamma=6.6 --mirror=1
"""
from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core.errors import UsageError
from ..core.paths import check_relative_path
from ..core.records import FaceKey, obj_id_sort_key, shared_dict, shared_keys
from ..core.status import ALIGN_RETIRED, BAD, OK
from ..infra.executors import Progress
from ..infra.files import atomic_dir, atomic_open, atomic_write_bytes
from ..infra.readers import aligned_entries
from ..infra.stage import StageSummary, opt, quiet_opt, skip_bad_opt
from ..infra.workdir import Work, latest_records, manifest_path
from .export_formats import check_options, write_format
from .recipe import recipe_of
from .status import crop_drift

SIDECAR = "metfaces-export.json"
LABELS_FILE = "dataset.json"
UNKNOWN_DEPARTMENT = "(unknown)"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no clock in the bytes
FORMAT_VERSION = 1
# stylegan: this module; the others: export_formats (WebDataset shards, Hugging Face, folder)
FORMATS = ("stylegan", "webdataset", "hf", "folder")


@dataclass
class Crop:
    """One ok manifest entry joined to its department."""
    obj_id: str
    face_idx: int
    path: Path          # the crop file
    file_md5: str       # from the manifest
    pixel_md5: str
    department: str     # "" when unknown
    record: dict        # the face record's RECORD_KEYS (provenance: face_spec, md5s, text)
    versions: dict      # the libraries align made it with
    params: dict = field(default_factory=dict)  # align's parameters for it

    @property
    def key(self) -> FaceKey:
        return FaceKey(self.obj_id, self.face_idx)


@dataclass
class Packed:
    """One image as it goes into the export (bytes are read again while writing)."""
    crop: Crop
    name: str           # archive name, e.g. 00000/img00000000.png
    label: Optional[int]

    def read(self) -> bytes:
        data, why = read_checked(self.crop)
        if why is not None:
            raise UsageError(f"{self.crop.path}: changed during the export ({why}); nothing written")
        return data


# ---- inputs ---------------------------------------------------------------------------

def archive_name(index: int) -> str:
    """dataset_tool.py's naming: 1000 images per folder."""
    s = f"{index:08d}"
    return f"{s[:5]}/img{s}.png"


def face_key(crop: Crop) -> str:
    """The face's name in every non-StyleGAN format (file stem, WebDataset key): stable
    across runs; no dot, since WebDataset splits a key from its extension at the first dot."""
    return str(crop.key).replace(".", "_")


def object_departments(objects_jsonl: Path) -> dict:
    """obj_id -> department from fetch's objects.jsonl (latest line per id)."""
    return {str(oid): str(d["department"]) for oid, d in latest_records(objects_jsonl, "id").items()
            if d.get("department")}




def load_crops(images_dir: Path, objects_jsonl: Optional[Path]) -> tuple:
    """(crops in export order, number of manifest entries not ok)."""
    manifest = manifest_path(images_dir)
    entries = aligned_entries(images_dir)  # entry by entry: a list is not held
    depts = object_departments(objects_jsonl) if objects_jsonl else {}
    crops: dict = {}
    not_ok = 0
    shared: dict = {}  # one copy of each distinct params / versions dict
    for i, e in enumerate(entries):
        if e.status != OK:
            # superseded / withdrawn: crops align deleted on purpose, neither exported nor "not ok"
            not_ok += e.status not in ALIGN_RETIRED
            continue
        key, out = e.key, e.output
        if (key is None or not isinstance(out, str) or check_relative_path(out) or "/" in out
                or not e.file_md5):
            raise UsageError(f"{manifest}: entry {i} is not an align result "
                             "(record, output, file_md5)")
        if key in crops:
            raise UsageError(f"{manifest}: entry {i}: face {key} appears twice")
        dept = e.record.get("department") or depts.get(key.obj_id, "")
        crops[key] = Crop(key.obj_id, key.face_idx, images_dir / out, e.file_md5, e.pixel_md5,
                          str(dept), _packed(_held(e.record)),
                          shared_dict(shared, e.versions or {}),
                          shared_dict(shared, e.params or {}))
    ordered = [crops[k] for k in sorted(crops, key=lambda k: (obj_id_sort_key(k.obj_id), k.face_idx))]
    return ordered, not_ok


# the record fields any export format reads (text, source, face_spec); an export holds
# only these of each face's record (not its filter values: ~1.5 KB a face)
RECORD_KEYS = ("department", "face_spec", "source_url", "source_md5", "source_sha256",
               "meta_url", "title", "artist_display_name")


def _held(rec: dict) -> dict:
    """What of a record an export keeps: RECORD_KEYS, with keys shared (shared_keys)."""
    return shared_keys({k: rec[k] for k in RECORD_KEYS if k in rec})


def _packed(rec: dict) -> dict:
    """The record with its 68 landmarks as one integer array (~1 KB, not ~8 KB of lists):
    an export holds every face's record, so this is what keeps memory small per face.
    Landmarks that are not all whole numbers are left as they are."""
    spec = rec.get("face_spec")
    lm = spec.get("landmarks") if isinstance(spec, dict) else None
    if not isinstance(lm, list) or not all(isinstance(p, list) and len(p) == 2 and
                                           all(type(v) is int and abs(v) < 2 ** 62 for v in p)
                                           for p in lm):
        return rec
    # int32 when every coordinate fits (always, for a real image): half of int64's 1 KB
    small = all(abs(v) < 2 ** 31 for p in lm for v in p)
    return {**rec, "face_spec": {**spec, "landmarks": np.asarray(
        lm, dtype=np.int32 if small else np.int64)}}


def department_labels(crops: list) -> dict:
    """department -> class index: present departments sorted by name, from 0."""
    names = sorted({c.department or UNKNOWN_DEPARTMENT for c in crops})
    return {name: i for i, name in enumerate(names)}


# ---- checks ---------------------------------------------------------------------------

def read_checked(crop: Crop) -> tuple:
    """(bytes, None) when the file has the manifest's md5, else (None, why)."""
    try:
        data = crop.path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"unreadable: {e}"
    md5 = hashlib.md5(data).hexdigest()
    if md5 != crop.file_md5:
        return None, f"file md5 {md5} differs from the manifest's {crop.file_md5}"
    return data, None


def png_shape(data: bytes) -> tuple:
    """(format, width, height, mode) from the header, without decoding the pixels."""
    from PIL import Image  # Pillow only when crops are checked, not on `import`
    with Image.open(io.BytesIO(data)) as im:
        return im.format, im.width, im.height, im.mode


def check_shapes(shapes: dict, resolution: Optional[int], stylegan: bool = True) -> int:
    """The common side of all crops; UsageError if they are not what StyleGAN needs (one
    size, RGB or L; square power-of-two sides only for StyleGAN itself)."""
    kinds: dict = {}
    for name, (fmt, w, h, mode) in shapes.items():
        if fmt != "PNG":
            raise UsageError(f"{name}: is {fmt}, not PNG")
        kinds.setdefault((w, h, mode), []).append(name)
    if len(kinds) > 1:
        listing = "; ".join(f"{w}x{h} {m}: {len(v)} (e.g. {v[0]})"
                            for (w, h, m), v in sorted(kinds.items(), key=lambda kv: -len(kv[1])))
        raise UsageError(f"crops differ in size or mode ({listing}); a dataset needs one "
                         "size: re-run align with one --size")
    (w, h, mode), names = next(iter(kinds.items()))
    if stylegan and (w != h or w & (w - 1)):
        raise UsageError(f"crops are {w}x{h}; StyleGAN needs square power-of-two images "
                         "(e.g. 256, 512, 1024): re-run align with such a --size")
    if mode not in ("RGB", "L"):
        raise UsageError(f"crops are mode {mode}; trainers read RGB or greyscale")
    if resolution is not None and w != resolution:
        raise UsageError(f"crops are {w}x{h}, not the --resolution {resolution}")
    return w


# ---- outputs --------------------------------------------------------------------------

def labels_json(packed: list, use_labels: bool) -> bytes:
    labels = [[p.name, p.label] for p in packed] if use_labels else None
    return (json.dumps({"labels": labels}) + "\n").encode("utf-8")


def sidecar_json(packed: list, label_map: Optional[dict], resolution: int, skipped: list) -> bytes:
    """The audit trail: label classes, and per image its face, crop and checksums (no
    paths or times, so the same inputs anywhere give the same bytes)."""
    versions = []
    for p in packed:
        if p.crop.versions and p.crop.versions not in versions:
            versions.append(p.crop.versions)
    doc = {
        "format": FORMAT_VERSION,
        "tool": f"metfaces-build {__version__}",
        "count": len(packed),
        "resolution": resolution,
        "aligned_with": versions,
        "labels": None if label_map is None else {
            "field": "department",
            "rule": "departments present in this export, sorted by name, numbered from 0; "
                    f"{UNKNOWN_DEPARTMENT!r} for faces without a department",
            "classes": [{"label": i, "department": d} for d, i in label_map.items()],
        },
        "images": _IMAGES,
        "skipped": skipped,
    }
    # the bytes of json.dumps(doc, indent=1) with the images in place, encoded image by
    # image (a list of 200,000 dicts and its whole text are never built); a lone surrogate
    # in a record's text becomes JSON's own \udXXX escape, not a crash
    head, tail = json.dumps(doc, indent=1, ensure_ascii=False).split(json.dumps(_IMAGES), 1)
    parts = [head.encode("utf-8", "backslashreplace")]
    for i, p in enumerate(packed):
        item = json.dumps(_image_row(p), indent=1, ensure_ascii=False).replace("\n", "\n  ")
        parts.append((("[\n  " if i == 0 else ",\n  ") + item).encode("utf-8", "backslashreplace"))
    parts.append(b"\n ]" if packed else b"[]")
    parts.append((tail + "\n").encode("utf-8", "backslashreplace"))
    return b"".join(parts)


# where the images go in the sidecar's skeleton (a string JSON escapes, so no text
# of a record can spell it)
_IMAGES = "\x00images\x00"


def _image_row(p: Packed) -> dict:
    """One image's line in the sidecar."""
    return {"file": p.name, "obj_id": p.crop.obj_id, "face_idx": p.crop.face_idx,
            "crop": p.crop.path.name, "department": p.crop.department or None,
            "label": p.label, "file_md5": p.crop.file_md5, "pixel_md5": p.crop.pixel_md5,
            "source_url": p.crop.record.get("source_url") or "",
            "meta_url": p.crop.record.get("meta_url") or "",
            "title": p.crop.record.get("title") or ""}


def write_zip(path: Path, files: list) -> None:
    """`files` = [(name, bytes or a function giving them)] into a stored zip with fixed
    metadata, atomically."""
    with atomic_open(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the host
            info.external_attr = 0o644 << 16
            zf.writestr(info, data() if callable(data) else data)


def write_folder(path: Path, files: list) -> None:
    """Build the folder beside `path`, then swap it in (replacing an earlier export only)."""
    with atomic_dir(path, SIDECAR) as tmp:
        for name, data in files:
            atomic_write_bytes(tmp / name, data() if callable(data) else data)


# ---- the command ----------------------------------------------------------------------

def check_current(work: Work) -> Optional[set]:
    """Refuse (UsageError, exit 2) when the crops are not exactly the kept faces of
    filtered.json: an export is always the current decisions, never yesterday's crops.
    Faces align failed on (recorded with a reason) do not stop it: the export reports them
    as manifest entries not ok."""
    if not work.filtered_json.exists():
        return None  # crops made from another face list: the manifest is all there is
    drift = crop_drift(work, recipe_of(work))
    if not drift.current:
        raise UsageError("the crops are not the current decisions of filtered.json: "
                         + "; ".join(drift.reasons(failed=False)) + f". Run `metfaces-build run "
                         f"--work {work.path}` (it brings the crops current), then export again")
    return drift.kept


@dataclass(frozen=True)
class ExportOptions:
    """Options of the export stage (names and defaults of its CLI flags)."""
    out: str = opt(help="dataset.zip, or a folder", metavar="PATH")
    images: Optional[str] = opt(None, "align output folder to export", metavar="DIR",
                                shown="DIR/images")
    layout: Optional[str] = opt(None, "stylegan: zip or folder", choices=("zip", "folder"),
                                shown="by --out's suffix")
    format: str = opt("stylegan", "stylegan, webdataset, hf or folder", choices=FORMATS,
                      metavar="FORMAT")
    shard_size: Optional[str] = opt(None, "webdataset: samples (N) or bytes (500MB)",
                                    metavar="N|SIZE", shown="1000")
    no_labels: bool = opt(False, "unconditional: dataset.json labels null")
    resolution: Optional[int] = opt(None, "require NxN crops", metavar="N", limits=">= 1",
                                    shown="any one power of two")
    skip_bad: bool = skip_bad_opt("export the good crops, list the others")
    quiet: bool = quiet_opt()


@dataclass
class ExportSummary(StageSummary):
    """export's outcome: images written, their resolution, layout, department labels and
    the crops skipped (or that stopped it)."""
    images: int = 0
    resolution: int = 0
    layout: str = ""
    labels: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)


@dataclass
class Selection:
    """The faces an export writes: every format (StyleGAN, WebDataset, Hugging Face, folder)
    takes them from `select_crops`, so all formats export exactly the same faces."""
    work: Optional[Work]      # None with --images and no --work
    images_dir: Path
    good: list                # Crop, checked, in export order (obj_id, face_idx)
    bad: list                 # {obj_id, face_idx, crop, reason} of the crops that failed
    shapes: dict              # crop file name -> (format, width, height, mode) of the good
    not_ok: int               # manifest entries not ok (failed in align; never exported)


def select_crops(work: Optional[Work], opts: ExportOptions) -> Selection:
    """The crops to export: ok entries of the align manifest whose file still has the
    manifest's md5 and is a readable image. UsageError when there is nothing to export."""
    if opts.images:
        images_dir = Path(opts.images)
    else:
        work = work or Work()
        images_dir = work.images_dir
    if not images_dir.is_dir():
        raise UsageError(f"align output folder not found: {images_dir} (run `metfaces-build "
                         "align` first, or give --images DIR)")
    objects = work.objects_jsonl if work is not None else None
    if work is not None and not work.path.is_dir():
        raise UsageError(f"work directory not found: {work.path}")
    kept = None
    if not opts.images:
        kept = check_current(work)
    crops, not_ok = load_crops(images_dir, objects)
    if kept is not None:  # crops another face list left in images/ are not this dataset's
        crops = [c for c in crops if c.key in kept]
    if not crops:
        raise UsageError(f"{manifest_path(images_dir)} has no ok crops to export")

    good, bad, shapes = [], [], {}
    with Progress(len(crops), "check", opts.quiet, unit="crop") as prog:
        for c in crops:
            data, why = read_checked(c)
            if why is None:
                try:
                    shapes[c.path.name] = png_shape(data)
                except Exception as e:  # noqa: BLE001 - a corrupt file whose md5 was recorded
                    why = f"not a readable image: {e}"
            del data  # ~1.5 MB each: read again while writing, not held
            if why is None:
                good.append(c)
            else:
                bad.append({"obj_id": c.obj_id, "face_idx": c.face_idx, "crop": c.path.name,
                            "reason": why})
                prog.write(f"{c.path.name}: {why}")
            prog.update(1)
    return Selection(work, images_dir, good, bad, shapes, not_ok)


def export(work: Optional[Work], opts: ExportOptions) -> ExportSummary:
    """Pack the ok crops of `work`/images (or `opts.images`) into a dataset at `opts.out`:
    a StyleGAN zip or folder with dataset.json labels by department (default), or WebDataset
    shards, a Hugging Face dataset folder or a plain folder (`opts.format`). Crops that are
    missing or do not match the manifest stop it (nothing written) unless `opts.skip_bad`."""
    t0 = time.monotonic()
    layout = check_layout(opts)
    sel = select_crops(work, opts)
    if sel.bad and not opts.skip_bad:
        return refused(sel, elapsed=time.monotonic() - t0)
    if not sel.good:
        raise UsageError("no crop passed the checks; nothing to export")
    resolution = check_shapes(sel.shapes, opts.resolution, stylegan=opts.format == "stylegan")
    label_map = None if opts.no_labels else department_labels(sel.good)
    packed = pack(sel.good, label_map, stylegan=opts.format == "stylegan")
    extra = write_dataset(sel, packed, label_map, resolution, layout, opts)
    lines = summary_lines(sel, packed, label_map, resolution, layout, opts) + extra
    if label_map is not None:
        lines += label_lines(packed, label_map)
    return ExportSummary(stage="export", counts={OK: len(packed), BAD: len(sel.bad)},
                         outputs={"dataset": Path(opts.out)}, elapsed=time.monotonic() - t0,
                         failed=len(sel.bad), lines=lines, images=len(packed),
                         resolution=resolution, layout=layout, labels=dict(label_map or {}),
                         skipped=sel.bad)


def check_layout(opts: ExportOptions) -> str:
    """The layout written (zip / folder for StyleGAN, else the format's name), after the
    flag checks that need no input (UsageError)."""
    fmt, out = opts.format, Path(opts.out)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt != "stylegan":
        check_options(opts)
        return fmt
    layout = opts.layout or ("zip" if out.suffix.lower() == ".zip" else "folder")
    if layout == "zip" and out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a .zip path or --layout folder")
    if opts.shard_size is not None:
        raise UsageError("--shard-size applies to --format webdataset only")
    return layout


def refused(sel: Selection, *, elapsed: float) -> ExportSummary:
    """The outcome when crops are bad and --skip-bad was not given: nothing written."""
    good, bad = sel.good, sel.bad
    line = (f"export: {len(bad)} of {len(good) + len(bad)} crops missing or not matching "
            f"{manifest_path(sel.images_dir)}; nothing written. Re-run align (it redoes them) "
            "or pass --skip-bad to export the rest.")
    return ExportSummary(stage="export", counts={OK: len(good), BAD: len(bad)}, outputs={},
                         elapsed=elapsed, failed=len(bad), lines=[line], skipped=bad)


def pack(good: list, label_map: Optional[dict], *, stylegan: bool) -> list:
    """Each crop with its name in the dataset and its label (None without labels)."""
    return [Packed(c, archive_name(i) if stylegan else face_key(c) + ".png",
                   None if label_map is None else label_map[c.department or UNKNOWN_DEPARTMENT])
            for i, c in enumerate(good)]


def write_dataset(sel: Selection, packed: list, label_map: Optional[dict], resolution: int,
                  layout: str, opts: ExportOptions) -> list:
    """Write the dataset at opts.out (atomically); returns the format's extra lines."""
    sidecar = sidecar_json(packed, label_map, resolution, sel.bad)
    if opts.format != "stylegan":
        return write_format(opts.format, sel, packed, label_map, resolution, (SIDECAR, sidecar),
                            opts)
    files = [(p.name, p.read) for p in packed]
    files.append((LABELS_FILE, labels_json(packed, label_map is not None)))
    files.append((SIDECAR, sidecar))
    (write_zip if layout == "zip" else write_folder)(Path(opts.out), files)
    return []


def summary_lines(sel: Selection, packed: list, label_map: Optional[dict], resolution: int,
                  layout: str, opts: ExportOptions) -> list:
    """The one-line summary: images, size, where, labels, what was skipped."""
    bad = sel.bad
    return [f"export: {len(packed)} images {resolution}x{resolution} -> {Path(opts.out)} ({layout})"
            + (f"; {len(label_map)} department labels" if label_map is not None else "; no labels")
            + (f"; {len(bad)} skipped (listed in {SIDECAR})" if bad else "")
            + (f"; {sel.not_ok} manifest entries not ok (not exported)" if sel.not_ok else "")]


def label_lines(packed: list, label_map: dict) -> list:
    """A line per label with its count, and a warning for faces without a department."""
    counts = Counter(p.label for p in packed)  # one pass, not one per label
    lines = [f"  label {i}: {dept} ({counts[i]})" for dept, i in label_map.items()]
    unknown = sum(1 for p in packed if not p.crop.department)
    if unknown:
        lines.append(f"warning: {unknown} faces have no department (label "
                     f"{label_map[UNKNOWN_DEPARTMENT]}, {UNKNOWN_DEPARTMENT!r}); they come "
                     "from records without `department` and no objects.jsonl entry")
    return lines
