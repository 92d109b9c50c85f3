"""align: crop aligned faces from face_spec landmarks, reproducing NVIDIA's MetFaces pixels.

Given stored landmarks (NVIDIA's metfaces.json) and the original images, the crops are
identical, pixel for pixel, to those of NVIDIA's metfaces.py (with the same numpy, scipy and
Pillow). The arithmetic is the reference's; the speed comes from filtering only the band
of the padded image whose pixels change (the rest stays uint8; the median comes from a
histogram), the QUAD warp and the Lanczos downscale in numba with Pillow's arithmetic,
fused so the 4096-pixel warp is never stored (core/exactwarp.py, core/exactresize.py),
decoding each source once for all its faces, and a process pool. Random shifts are
pre-drawn in JSON order, so any --workers gives the same output.

Output: OUTPUT_DIR/{obj_id}-{face_idx:02d}.png and OUTPUT_DIR/aligned.json, a manifest
with, per face, the input record, output file, file md5, pixel md5, status and reason, and
the numpy/scipy/Pillow versions. A rerun skips crops that exist and match the manifest.

Updates: a crop is re-made only when what decides its pixels changed (obj_id, face_idx,
source_path, face_spec, the source's content key source_sha256/source_md5, or the
parameters); a record whose other fields changed (a corrected title) gets its manifest
entry updated without rewriting the crop. A re-made entry says what it `supersedes` and
why. Crops of faces no longer in --json are deleted and stay in the manifest with status
`superseded` (re-detected, or now rejected by the filter or a person) or `withdrawn` (the
object has no face left and its source image is gone, as fetch leaves an object withdrawn
at the Met) and a reason; neither counts as a failure, and export skips them. Each entry
records the `inputs` (--json files, relative to OUTPUT_DIR) whose face it is: align deletes
only crops it made for faces that left every such input, so `align --json subset.json`
into the same folder leaves the crops of the other faces alone.

examples:
  # NVIDIA's MetFaces (1024x1024, rotated) from metfaces.json and unprocessed/ images
  metfaces-build align --json metfaces.json --source-images . --output-dir images
  # MetFaces-U (unaligned): random shifts, retried until inside the image, no rotation
  metfaces-build align --json metfaces.json --source-images . --output-dir images-u \\
      --random-shift 0.2 --retry-crops --no-rotation
  # our own detections, in a work directory: its filtered.json -> its images/
  metfaces-build align --work metfaces-work
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.exactblur import pad_and_blur
from ..core.exactresize import resize_lanczos
from ..core.exactwarp import quad_warp, warp_and_downscale
from ..core.geometry import crop_box, face_square, landmarks_full
from ..core.records import FaceKey, FaceSpec
from ..infra.images import DEFAULT_MAX_PIXELS
from ..infra.stage import (StageSummary, convert, executor_opt, force_opt, opt, quiet_opt,
                           scheduler_opt, skip_bad_opt, workers_opt)
from ..infra.workdir import ALIGN_JOURNAL as JOURNAL, ALIGN_RETIRED, MANIFEST, previous_align_results
SEED = 12345
MAX_SHIFT_TRIES = 1000
# zlib level of the crops: with Pillow 13's zlib-ng, 4 writes a 1024 px crop 2.5-3x faster
# than Pillow's default 6 for files 3-6% larger (the pixels never depend on it); manifests
# older than the option were written at 6
PNG_LEVEL = 4
OLD_PNG_LEVEL = 6


@dataclass(frozen=True)
class AlignParams:
    """Everything that decides a crop's file (recorded in the manifest): its pixels, and
    the PNG's zlib level (bytes only)."""
    size: int = 1024
    supersampling: int = 4
    rotate: bool = True
    padding: bool = True
    random_shift: float = 0.0
    retry_crops: bool = False
    png_level: int = PNG_LEVEL

    @property
    def transform_size(self) -> int:
        return self.size * self.supersampling


# ---- the exact pipeline (ALIGN.md steps 5-8), one face ------------------------------

def shift_center(sq, normal: np.ndarray, random_shift: float) -> np.ndarray:
    """Step 4: the centre moved by one pre-drawn N(0,1) pair (reference's expression order)."""
    return sq.c0 + np.hypot(*sq.x) * 2 * random_shift * normal


def shift_accepted(quad: np.ndarray, width: int, height: int, retry_crops: bool) -> bool:
    if not retry_crops:
        return True
    x0, y0, x1, y1 = crop_box(quad)
    return not (x0 < 0 or y0 < 0 or x1 >= width or y1 >= height)


def align_face(image, face_spec, params: AlignParams = AlignParams(),
               normal: Optional[np.ndarray] = None, _shrunk_cache: Optional[dict] = None):
    """One aligned crop (PIL RGB image) from a full-resolution RGB PIL image and a FaceSpec.

    `normal` is the accepted random-shift draw for this face (see `draw_shifts`); None
    means no shift. `_shrunk_cache` lets faces of one image share its downscaled copies.
    The crop carries what the reference's does of `image.info` (`carried_info`).
    """
    from PIL import Image
    info = carried_info(image)
    lm = landmarks_full(face_spec.landmarks, face_spec.shrink)
    sq = face_square(lm, rotate=params.rotate)
    qsize = sq.qsize
    quad = sq.quad()
    if params.random_shift != 0 and normal is not None:
        quad = sq.quad(shift_center(sq, normal, params.random_shift))
    img = image

    # Step 5: shrink
    shrink = int(np.floor(qsize / params.size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        cache = _shrunk_cache if _shrunk_cache is not None else {}
        if rsize not in cache:  # Pillow's LANCZOS, bit for bit (core/exactresize.py)
            cache[rsize] = Image.fromarray(resize_lanczos(np.asarray(img), rsize), "RGB")
        img = cache[rsize]
        quad /= shrink
        qsize /= shrink

    # Step 6: crop
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0, x1, y1 = crop_box(quad)
    crop = (max(x0 - border, 0), max(y0 - border, 0), min(x1 + border, img.size[0]),
            min(y1 + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    # Step 7: pad
    x0, y0, x1, y1 = crop_box(quad)
    pad = (max(-x0 + border, 0), max(-y0 + border, 0), max(x1 - img.size[0] + border, 0),
           max(y1 - img.size[1] + border, 0))
    pixels = np.asarray(img)
    if params.padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        pixels = pad_and_blur(pixels, pad, qsize)
        quad += pad[:2]
        info = {}  # the reference's Image.fromarray after the blur starts afresh

    # Step 8: warp, Lanczos downscale (Pillow's arithmetic, fused: core/exactwarp.py)
    t = params.transform_size
    data = (quad + 0.5).flatten()
    if params.size < t:
        out = Image.fromarray(warp_and_downscale(pixels, data, t, params.size), "RGB")
    else:
        out = Image.fromarray(quad_warp(pixels, data, t), "RGB")
    out.info.update(info)
    return out


# what of the source's `info` reaches the reference's PNG: Pillow copies `info` through
# convert, resize, crop and transform, and its PNG writer reads these two keys from it
# (the colour profile as an iCCP chunk, an RGB transparency colour as tRNS)
CARRIED_INFO = ("icc_profile", "transparency")


def carried_info(image) -> dict:
    """The entries of an RGB source's `info` that NVIDIA's script writes into the crop
    PNG, unless step 7 padded it (its Image.fromarray drops them): the ICC profile
    (Met JPEGs often carry one; a viewer that honours it shows other colours without
    it) and an RGB transparency colour."""
    info = getattr(image, "info", None) or {}
    return {k: info[k] for k in CARRIED_INFO if info.get(k) is not None}


# ---- random shifts: pre-drawn in JSON order ------------------------------------------

def draw_shifts(faces, sizes: dict, params: AlignParams) -> list:
    """For each face (JSON order) the accepted N(0,1) pair, or None if rejected after
    1000 tries, drawing from one RandomState(12345) exactly as the serial reference does.

    `sizes[source_path]` is the full-resolution (width, height), or None when the image
    is unreadable: such a face consumes a single draw (the reference would have crashed).
    """
    out: list = []
    if params.random_shift == 0:
        return [None] * len(faces)
    rng = np.random.RandomState(SEED)
    for face in faces:
        size = sizes.get(face.source_path)
        sq = face_square(landmarks_full(face.face_spec.landmarks, face.face_spec.shrink),
                         rotate=params.rotate)
        accepted = None
        for _ in range(MAX_SHIFT_TRIES if size else 1):
            normal = rng.normal(0, 1, sq.c0.shape)
            if size is None:
                accepted = normal
                break
            quad = sq.quad(shift_center(sq, normal, params.random_shift))
            if shift_accepted(quad, size[0], size[1], params.retry_crops):
                accepted = normal
                break
        out.append(accepted)
    return out


# ---- per-image task (runs in a worker) -----------------------------------------------

@dataclass
class FaceJob:
    index: int                 # position in the input JSON
    record: dict               # input record (JSON form), for the manifest
    spec: FaceSpec             # its validated face_spec
    normal: Optional[list]     # accepted random-shift draw, if any
    rejected: bool = False     # random shift found no acceptable crop


@dataclass
class AlignTask:
    source: str                # absolute path of the source image
    jobs: list
    params: AlignParams
    output_dir: str
    max_pixels: int


@dataclass
class FaceResult:
    """One manifest entry."""
    index: int
    record: dict
    output: str
    status: str
    reason: str = ""
    file_md5: str = ""
    pixel_md5: str = ""
    params: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("index")
        return d


def pixel_md5(img) -> str:
    """md5 of the RGB pixel bytes: the crop's identity independent of the PNG encoder."""
    return hashlib.md5(img.convert("RGB").tobytes()).hexdigest()


def process_image(task: AlignTask) -> list:
    """Decode one source once and align all its faces; failures become FaceResults."""
    from ..infra.images import ImageProblem, open_image
    from ..infra.files import atomic_write_bytes
    from ..infra.executors import library_versions
    from ..core.exactgauss import backend
    versions = dict(library_versions(), gaussian=backend())
    params = asdict(task.params)

    def result(job, status, reason="", **kw):
        return FaceResult(job.index, job.record, _crop_name(job.record), status, reason,
                          params=params, versions=versions, **kw)

    results = []
    todo = [j for j in task.jobs if not j.rejected]
    for j in task.jobs:
        if j.rejected:
            results.append(result(j, "rejected", f"no crop inside the image after "
                                                 f"{MAX_SHIFT_TRIES} random-shift tries"))
    if todo:
        try:
            with open_image(task.source, task.max_pixels) as im:
                image = im.convert("RGB")
        except ImageProblem as e:
            return results + [result(j, e.status, e.reason) for j in todo]
        cache: dict = {}
        for j in todo:
            normal = None if j.normal is None else np.asarray(j.normal, dtype=np.float64)
            why = face_fit_problem(j.spec, image.size, task.params, normal)
            if why:
                results.append(result(j, "error", why))
                continue
            try:
                crop = align_face(image, j.spec, task.params, normal, cache)
            except (ValueError, ArithmeticError, MemoryError, OSError) as e:
                # what face_fit_problem does not foresee; say which face and image it was
                results.append(result(j, "error", f"cannot align this face in the "
                                                  f"{image.size[0]}x{image.size[1]} image: "
                                                  f"{type(e).__name__}: {e}"))
                continue
            buf = io.BytesIO()
            crop.save(buf, "PNG", compress_level=task.params.png_level)
            data = buf.getvalue()
            name = _crop_name(j.record)
            try:
                atomic_write_bytes(Path(task.output_dir) / name, data)
            except OSError as e:  # a name this file system refuses, a full disk...
                results.append(result(j, "error", f"cannot write {name[:80]}: {e.strerror or e}"))
                continue
            results.append(result(j, "ok", file_md5=hashlib.md5(data).hexdigest(),
                                  pixel_md5=pixel_md5(crop)))
    return sorted(results, key=lambda r: r.index)


def face_fit_problem(spec: FaceSpec, size: tuple, params: AlignParams,
                     normal: Optional[np.ndarray] = None) -> Optional[str]:
    """Why this face cannot be cropped from an image of `size` (in words about the face),
    or None. Catches what would otherwise surface as Pillow's "Coordinate 'right' is
    less than 'left'" or "height and width must be > 0"."""
    width, height = size
    with np.errstate(all="ignore"):
        sq = face_square(landmarks_full(spec.landmarks, spec.shrink), rotate=params.rotate)
        quad = sq.quad() if normal is None or params.random_shift == 0 else \
            sq.quad(shift_center(sq, normal, params.random_shift))
        qsize = float(sq.qsize)
    if not np.isfinite(qsize) or not np.all(np.isfinite(quad)):
        return "face_spec gives no face square (the eyes and mouth coincide)"
    if qsize < 1:
        return f"face is {qsize:.2g} px across: too small to align"
    x0, y0, x1, y1 = crop_box(quad)
    border = max(int(np.rint(qsize * 0.1)), 3)
    if x1 + border <= 0 or y1 + border <= 0 or x0 - border >= width or y0 - border >= height:
        return (f"face lies outside the image: its {qsize:.0f} px square spans x {x0}..{x1}, "
                f"y {y0}..{y1} of a {width}x{height} image (face_spec shrink {spec.shrink})")
    shrink = int(np.floor(qsize / params.size * 0.5))
    if shrink > 1 and (int(np.rint(width / shrink)) < 1 or int(np.rint(height / shrink)) < 1):
        return (f"face is {qsize:.0f} px across, too large for the {width}x{height} image "
                f"(face_spec shrink {spec.shrink})")
    return None


def _crop_name(record: dict) -> str:
    return FaceKey(record["obj_id"], int(record["face_idx"])).crop_name


# ---- the stage -----------------------------------------------------------------------

IO = "inputs and outputs (--work DIR, or NVIDIA's three flags)"
ALIGNMENT = "alignment (NVIDIA's flags; the defaults give MetFaces)"


@dataclass(frozen=True)
class AlignOptions:
    """Options of the align stage (names and defaults of its CLI flags; NVIDIA's flags
    with MetFaces' defaults, which are AlignParams')."""
    json: str = opt(help="face list (metfaces.json, filtered.json)",
                    metavar="FILE", group=IO)
    source_images: str = opt(help="folder each source_path is relative to", metavar="DIR",
                             group=IO)
    output_dir: str = opt(help="where the crops and aligned.json go", metavar="DIR", group=IO)
    random_shift: float = opt(AlignParams.random_shift, "shift crop centres (MetFaces-U: 0.2)",
                              metavar="S", limits=">= 0", group=ALIGNMENT, recipe=True)
    retry_crops: bool = opt(False, "redraw a shift until the crop fits the image",
                            group=ALIGNMENT, recipe=True)
    no_rotation: bool = opt(False, "keep crops axis-aligned (eyes not levelled)",
                            group=ALIGNMENT, recipe=True)
    no_padding: bool = opt(False, "no reflect-padding: black outside the image",
                           group=ALIGNMENT, recipe=True)
    size: int = opt(AlignParams.size, "output side, pixels", metavar="N", limits=">= 1",
                    group=ALIGNMENT, recipe=True)
    supersampling: int = opt(AlignParams.supersampling, "warp at size x S, then downscale",
                             metavar="S", limits=">= 1", group=ALIGNMENT, recipe=True)
    png_level: int = opt(AlignParams.png_level, "zlib level of the PNGs (same pixels)",
                         metavar="N", limits="0..9", recipe=True)
    max_pixels: int = opt(DEFAULT_MAX_PIXELS, "refuse larger sources", metavar="N",
                          limits=">= 1")
    skip_bad: bool = skip_bad_opt("record bad JSON records as failed, go on")
    workers: int = workers_opt()
    force: bool = force_opt()
    quiet: bool = quiet_opt()
    executor: str = executor_opt()
    scheduler: Optional[str] = scheduler_opt()

    @property
    def params(self) -> AlignParams:
        return convert(AlignParams, self, rotate=not self.no_rotation,
                       padding=not self.no_padding)


@dataclass
class AlignSummary(StageSummary):
    """align's outcome: `counts` by face status; `reused` crops already done; `written`
    crops written now (of which `remade` replaced an older crop of the same face);
    `removed` crops deleted because their face left the input; `record_updated` entries
    whose record changed in fields that do not touch the pixels (crop kept)."""
    reused: int = 0
    written: int = 0
    remade: int = 0
    removed: int = 0
    record_updated: int = 0


def align(opts: AlignOptions) -> AlignSummary:
    """Crop every face of `opts.json` from the images under `opts.source_images` into
    `opts.output_dir`, with the manifest aligned.json. Resumes: crops that exist and match
    the manifest are kept unless `opts.force`."""
    import time

    from ..core.errors import UsageError
    from ..infra.lock import work_lock

    t0 = time.monotonic()
    src_root = Path(opts.source_images)
    if not src_root.is_dir():
        raise UsageError(f"--source-images {src_root} is not a folder")
    out_dir = Path(opts.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --output-dir {out_dir}: {e}") from None
    with work_lock(out_dir, command="align"):  # one writer per output folder
        return _align_locked(opts, src_root, out_dir, t0)


def _align_locked(opts: AlignOptions, src_root: Path, out_dir: Path, t0: float) -> AlignSummary:
    import time

    from ..infra.executors import Progress, library_versions, make_executor, summarize
    from ..infra.faces import load_faces
    from ..infra.files import remove_stale_temps, safe_join
    loaded = load_faces(opts.json, skip_bad=opts.skip_bad, what="--json", pack=True)
    params = opts.params
    executor = make_executor(opts.executor, opts.workers, opts.scheduler)
    versions = library_versions()
    remove_stale_temps(out_dir)

    faces = loaded.faces
    # resolve sources; bad paths become failures
    resolved: dict = {}
    bad_paths: dict = {}
    for f in faces:
        if f.source_path in resolved:
            continue
        try:
            resolved[f.source_path] = str(safe_join(src_root, f.source_path))
        except ValueError as e:
            resolved[f.source_path] = None
            bad_paths[f.source_path] = str(e)

    # full-resolution sizes (headers only): for the random-shift pre-draw and scheduling
    sizes = {sp: _header_size(path, opts.max_pixels) for sp, path in resolved.items()}
    normals = draw_shifts(faces, sizes, params)

    previous = previous_align_results(out_dir)
    input_ref = input_reference(opts.json, out_dir)
    results: dict = {}
    by_source: dict = {}
    params_json = asdict(params)
    supersedes: dict = {}  # input index -> what the new crop replaces, and why
    record_updated = written = 0
    for i, f in enumerate(faces):
        rec = f.to_json()
        prev = previous.get((f.obj_id, f.face_idx))
        if not opts.force and prev is not None and _still_valid(prev, rec, params_json, out_dir):
            if prev.get("record") != rec:
                prev = {**prev, "record": rec}
                record_updated += 1
            prev.pop("supersedes", None)
            results[i] = prev
            continue
        why = _superseded_because(prev, rec, params_json)
        if why:
            supersedes[i] = {"file_md5": prev.get("file_md5", ""), "reason": why}
        if f.source_path in bad_paths:
            results[i] = FaceResult(i, rec, f.crop_name, "bad_path", bad_paths[f.source_path],
                                    params=params_json, versions=versions).to_json()
            continue
        normal = normals[i]
        job = FaceJob(i, rec, f.face_spec, None if normal is None else normal.tolist(),
                      rejected=params.random_shift != 0 and normal is None)
        by_source.setdefault(f.source_path, []).append(job)

    # journal: results of this run, so a killed run resumes without redoing them
    journal = out_dir / JOURNAL
    # absolute output dir: a Dask worker's current directory is not ours
    tasks = [AlignTask(resolved[sp], jobs, params, str(out_dir.absolute()), opts.max_pixels)
             for sp, jobs in by_source.items()]
    # longest first, so one slow padded face does not finish alone at the end
    tasks.sort(key=lambda t: -_estimated_cost(t, sizes, faces))
    n_todo = sum(len(t.jobs) for t in tasks)
    if tasks:
        warm_up(params)  # compile the kernels once, before the pool forks
    with Progress(n_todo, "align", quiet=opts.quiet or not n_todo, unit="face") as prog, \
            open(journal, "a", encoding="utf-8") as jf:
        for batch in executor.imap(process_image, tasks, ordered=False):
            for r in batch:
                results[r.index] = r.to_json()
                if r.status == "ok":
                    written += 1
                    if r.index in supersedes:
                        results[r.index]["supersedes"] = supersedes[r.index]
                f = faces[r.index]  # the journal says whose crop it is, as the manifest will
                results[r.index]["inputs"] = claimed_by(previous.get((f.obj_id, f.face_idx)), input_ref)
                jf.write(json.dumps(results[r.index]) + "\n")
                jf.flush()
                if r.status != "ok":
                    prog.write(f"{r.output}: {r.status}: {r.reason}")
                prog.update(1)

    tasks = by_source = None  # the jobs' records: freed before the manifest is built
    entries = [{**results[i], "inputs": claimed_by(previous.get((f.obj_id, f.face_idx)), input_ref)}
               for i, f in enumerate(faces) if i in results]
    for b in loaded.bad:
        entries.append({"record": b.raw, "output": "", "status": "bad_record", "reason": b.reason,
                        "file_md5": "", "pixel_md5": "", "params": params_json,
                        "versions": versions, "inputs": [input_ref]})
    retired, removed = retire_missing(previous, faces, out_dir, src_root, input_ref)
    entries += retired
    from ..infra.jsonstream import atomic_write_json_list
    atomic_write_json_list(out_dir / MANIFEST, entries)  # entry by entry: no whole-list text
    journal.unlink(missing_ok=True)
    remove_stale_temps(out_dir)

    from ..infra.workdir import status_counts
    total = dict(status_counts(entries))
    skipped = len(faces) - n_todo - sum(1 for e in entries if e["status"] == "bad_path")
    live = sum(v for k, v in total.items() if k not in ALIGN_RETIRED)
    line = summarize({k: v for k, v in total.items() if k not in ALIGN_RETIRED}, f"align: {live} faces")
    if skipped:
        line += f" ({skipped} already done)"
    remade = sum(1 for i in supersedes if results.get(i, {}).get("status") == "ok")
    lines = [line]
    if remade or removed or record_updated:  # an update reached align
        lines.append(f"align changes: {written} crops written ({remade} re-made), {removed} removed, "
                     f"{record_updated} records updated (crop kept); manifest lists "
                     + ", ".join(f"{total.get(k, 0)} {k}" for k in ALIGN_RETIRED))
    lines.append(f"manifest: {out_dir / MANIFEST}")
    failed = sum(1 for e in entries if e["status"] not in ("ok",) + ALIGN_RETIRED)
    return AlignSummary("align", total, {"crops": out_dir, "manifest": out_dir / MANIFEST},
                        time.monotonic() - t0, failed, lines, reused=skipped, written=written,
                        remade=remade, removed=removed, record_updated=record_updated)


# what decides a crop's pixels; other record fields (title, artist, filter values...) do not
PIXEL_KEYS = ("obj_id", "face_idx", "source_path", "face_spec", "source_sha256", "source_md5")


def pixel_record(rec: dict) -> dict:
    """The part of a face record a crop depends on."""
    return {k: rec.get(k) for k in PIXEL_KEYS}


def _recorded_params(prev: dict) -> dict:
    """The parameters a manifest entry was made with (entries older than --png-level
    were written at level 6)."""
    params = prev.get("params")
    if not isinstance(params, dict):
        return {}
    return {"png_level": OLD_PNG_LEVEL, **params}


def _superseded_because(prev: Optional[dict], rec: dict, params: dict) -> str:
    """Why an earlier ok crop of this face is being replaced ("" when there was none)."""
    if not prev or prev.get("status") != "ok" or not isinstance(prev.get("record"), dict):
        return ""
    old = pixel_record(prev["record"])
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
    import os
    src = os.path.realpath(json_path)
    try:
        return Path(os.path.relpath(src, os.path.realpath(out_dir))).as_posix()
    except ValueError:
        return Path(src).as_posix()


def claimed_by(prev: Optional[dict], input_ref: str) -> list:
    """The inputs a face's crop belongs to after this run: this one, plus those its earlier
    entry named (a crop another --json made or reused stays theirs too)."""
    before = prev.get("inputs") if isinstance(prev, dict) else None
    names = {i for i in before if isinstance(i, str)} if isinstance(before, list) else set()
    return sorted(names | {input_ref})


def _other_claims(prev: dict, input_ref: str, out_dir: Path) -> Optional[list]:
    """Inputs other than this run's that still claim an entry's crop (those whose file is
    gone lapse), or None for an entry from before inputs were recorded (treated as made
    from this input, as align always did)."""
    inputs = prev.get("inputs")
    if not isinstance(inputs, list):
        return None
    return [i for i in inputs if isinstance(i, str) and i != input_ref
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
    from ..infra.files import safe_join
    wanted = {(f.obj_id, f.face_idx) for f in faces}
    objects = {f.obj_id for f in faces}
    entries, removed = [], 0
    for key, prev in previous.items():
        if key in wanted:
            continue
        others = _other_claims(prev, input_ref, out_dir)
        if others:
            entries.append({**prev, "inputs": others})  # another input's face: left alone
            continue
        if prev.get("status") in ALIGN_RETIRED:
            entries.append(prev)  # retired earlier: the manifest keeps saying so
            continue
        obj_id, face_idx = key
        name = _crop_name(prev["record"])
        path = out_dir / name
        try:  # only a plain file directly in out_dir (a hand-edited record names no other)
            if prev.get("output") == name and path.parent == out_dir and "/" not in name \
                    and "\\" not in name and path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
        except OSError:
            pass
        source = str(prev["record"].get("source_path") or "")
        try:
            source_gone = not safe_join(src_root, source).is_file()
        except (ValueError, OSError):
            source_gone = True
        if obj_id not in objects and source_gone:
            status, why = "withdrawn", (f"object {obj_id} has no face in the input any more and "
                                        f"its source image {source[:200]} is gone (withdrawn at "
                                        "the Met, or lost its image)")
        else:
            status, why = "superseded", (f"face {face_idx} of object {obj_id} is no longer in the "
                                         "input (its image was detected again, or the filter or "
                                         "a person now rejects it)")
        entries.append({**prev, "status": status, "reason": why, "was": prev.get("status"),
                        "output": "" if prev.get("status") == "ok" else prev.get("output", "")})
    return entries, removed


def _header_size(path, max_pixels):
    """(width, height) from the header alone, or None when unreadable."""
    from ..infra.images import ImageProblem, open_image
    if path is None:
        return None
    try:
        with open_image(path, max_pixels, load=False) as im:
            return im.size
    except ImageProblem:
        return None


def _estimated_cost(task: "AlignTask", sizes: dict, faces: list) -> float:
    """Relative work of one image task: decoding plus each face's padded area."""
    total = 0.0
    for j in task.jobs:
        spec = faces[j.index].face_spec
        qsize = float(face_square(landmarks_full(spec.landmarks, spec.shrink)).qsize)
        total += qsize * qsize
    size = sizes.get(faces[task.jobs[0].index].source_path) if task.jobs else None
    if size:
        total += size[0] * size[1]
    return total


def warm_up(params: Optional[AlignParams] = None) -> None:
    """Compile (or load from numba's cache) the Gaussian, warp and resize kernels in this
    process, and with `params` the step-8 Lanczos taps (~60 ms of Python), so that
    workers forked afterwards inherit them."""
    from ..core.exactblur import warm_up as warm_up_blur
    from ..core.exactresize import lanczos_coeffs, resize_lanczos
    warm_up_blur()
    warp_and_downscale(np.zeros((4, 4, 3), np.uint8), np.arange(8.0), 8, 2)
    resize_lanczos(np.zeros((4, 4, 3), np.uint8), (2, 2))
    if params is not None and params.size < params.transform_size:
        lanczos_coeffs(params.transform_size, params.size)


def _still_valid(prev: dict, rec: dict, params: dict, out_dir: Path) -> bool:
    """A previous result is reused only for the same record and parameters, and an ok
    crop only if the file is still there with the recorded md5."""
    from ..infra.files import file_digest
    try:
        if not isinstance(prev.get("record"), dict) or pixel_record(prev["record"]) != pixel_record(rec) \
                or _recorded_params(prev) != params:
            return False
    except RecursionError:  # a hand-edited manifest nested absurdly deep
        return False
    if prev.get("status") != "ok":
        return False  # failures are retried (and retired faces come back when re-detected)
    # only the crop this record names, in the output folder itself: an edited manifest
    # pointing elsewhere (../x.png, a symlink) proves nothing about our crop
    name = _crop_name(rec)
    if prev.get("output") != name:
        return False
    path = out_dir / name
    try:
        return not path.is_symlink() and path.is_file() and file_digest(path) == prev.get("file_md5")
    except OSError:
        return False
