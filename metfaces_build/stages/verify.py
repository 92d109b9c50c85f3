"""Check aligned crops against the image_md5 of a metfaces.json-style file.

For every record: the crop `{obj_id}-{face_idx:02d}.png` in --images (else the basename
of the record's image_path), its file md5 against the record's `image_md5`, and its pixel
md5 (md5 of the RGB bytes). image_md5 is the md5 of NVIDIA's PNG *file*: the same pixels
saved by another Pillow or zlib give other bytes, so a differing md5 alone does not say the
pixels differ. Give --reference DIR (other crops of the same faces, e.g. NVIDIA's
images/) to tell: per crop the PSNR and the largest absolute pixel difference against the
reference crop of the same name.

status per face:
  match            file md5 == image_md5
  same_pixels      md5 differs, pixels equal the reference's: an encoder difference, or
                   only the PNG metadata differs (e.g. the colour profile; `metadata`
                   says which, and the summary counts them)
  pixels_differ    md5 differs and the pixels differ from the reference (PSNR, max diff)
  md5_differs      md5 differs, no reference crop to compare pixels with
  size_differs     crop and reference have different sizes
  no_md5           the record has no image_md5 (nothing to check the file against)
  missing          no crop file
  unreadable       the crop (or reference) is not a readable image

The library versions that decide pixels and bytes (numpy, scipy, Pillow and its zlib:
resampling changed across Pillow releases) are printed and written with the results, and
so are those the crops were made with when --images holds align's aligned.json.

Output: a summary on stdout (counts, the worst crops); --out FILE writes every face's
result as JSON.

exit status: 0 every crop matches (with --accept-same-pixels, same_pixels counts as a
match); 1 any other status; 2 usage error (missing or malformed --json, missing folder).

examples:
  metfaces-build verify --json metfaces.json --images metfaces-work/images
  metfaces-build verify --json metfaces.json --images my-crops --reference nvidia/images \\
      --out verify.json
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core.errors import UsageError
from ..core.metrics import psnr_and_max
from ..core.pngmeta import metadata_difference
from ..core.records import FaceKey
from ..core.status import (BAD_RECORD, MATCH, MD5_DIFFERS, MISSING, NO_MD5, PIXELS_DIFFER,
                           SAME_PIXELS, SIZE_DIFFERS, UNREADABLE)
from ..infra.executors import LocalExecutor, Progress, library_versions, summarize
from ..infra.faces import load_faces
from ..infra.files import atomic_write_json
from ..infra.images import MAX_CROP_PIXELS, open_image
from ..infra.readers import read_aligned
from ..infra.stage import StageSummary, opt, quiet_opt, skip_bad_opt, workers_opt

PASS = (MATCH,)
WORST_SHOWN = 10


@dataclass(frozen=True)
class VerifyTask:
    obj_id: str
    face_idx: int
    expected_md5: str
    crop: str                 # path, "" when not found
    reference: str            # path, "" when none


@dataclass
class FaceCheck:
    """One face's verdict and the measurements behind it."""
    obj_id: str
    face_idx: int
    file: str
    status: str
    expected_md5: str = ""
    file_md5: str = ""
    file_md5_match: Optional[bool] = None
    pixel_md5: str = ""
    width: int = 0
    height: int = 0
    reference: str = ""
    reference_pixel_md5: str = ""
    pixels_equal: Optional[bool] = None
    psnr: Optional[float] = None         # dB; None when pixels are equal or not compared
    max_abs_diff: Optional[int] = None
    differing_pixels: Optional[float] = None  # share of pixels with any channel differing
    reason: str = ""
    metadata: str = ""                   # PNG metadata differing from the reference's, in words

    def to_json(self) -> dict:
        d = asdict(self)
        if d["psnr"] is not None:
            d["psnr"] = round(d["psnr"], 4)
        if d["differing_pixels"] is not None:
            d["differing_pixels"] = round(d["differing_pixels"], 6)
        return d


def _rgb(path: str):
    """RGB pixels of a crop, decoded with the project's guard (pixel limit from the header,
    regular files only); ImageProblem says why not."""
    with open_image(path, MAX_CROP_PIXELS, limit_name="a crop is at most 8192x8192") as im:
        return np.asarray(im.convert("RGB"))


def verify_crop(task: VerifyTask) -> FaceCheck:
    """File md5, pixel md5 and (with a reference) the pixel comparison of one crop."""
    res = FaceCheck(task.obj_id, task.face_idx, os.path.basename(task.crop) if task.crop else
                    FaceKey(task.obj_id, task.face_idx).crop_name, MATCH,
                    expected_md5=task.expected_md5)
    if not task.crop:
        res.status, res.reason = MISSING, "no crop file"
        return res
    try:
        with open(task.crop, "rb") as f:
            data = f.read()
        res.file_md5 = hashlib.md5(data).hexdigest()
        pixels = _rgb(task.crop)
    except Exception as e:  # noqa: BLE001 - any decoder error is this crop's outcome
        res.status, res.reason = UNREADABLE, f"{task.crop}: {e}"
        return res
    res.height, res.width = pixels.shape[:2]
    res.pixel_md5 = hashlib.md5(pixels.tobytes()).hexdigest()
    if not task.expected_md5:
        res.status, res.reason = NO_MD5, "the record has no image_md5"
    else:
        res.file_md5_match = res.file_md5 == task.expected_md5.lower()
    if res.file_md5_match:
        res.status = MATCH
    elif res.file_md5_match is False:
        res.status = MD5_DIFFERS
    if task.reference:
        res.reference = task.reference
        try:
            ref = _rgb(task.reference)
        except Exception as e:  # noqa: BLE001
            res.status, res.reason = UNREADABLE, f"reference {task.reference}: {e}"
            return res
        res.reference_pixel_md5 = hashlib.md5(ref.tobytes()).hexdigest()
        if ref.shape != pixels.shape:
            res.pixels_equal = False
            if res.status != MATCH:
                res.status = SIZE_DIFFERS
            res.reason = f"{res.width}x{res.height} vs reference {ref.shape[1]}x{ref.shape[0]}"
            return res
        psnr, mx = psnr_and_max(pixels, ref)
        res.pixels_equal = mx == 0
        res.psnr = None if math.isinf(psnr) else psnr
        res.max_abs_diff = mx
        res.differing_pixels = float(np.mean(np.any(pixels != ref, axis=2)))
        if res.status == MD5_DIFFERS:
            res.status = SAME_PIXELS if res.pixels_equal else PIXELS_DIFFER
        if res.status in (SAME_PIXELS, PIXELS_DIFFER):
            with open(task.reference, "rb") as f:
                res.metadata = metadata_difference(data, f.read())
            if res.status == SAME_PIXELS:
                res.reason = (f"same pixels; only the PNG metadata differs: {res.metadata}"
                              if res.metadata else "same pixels and metadata; the compressed "
                              "bytes differ (another Pillow/zlib)")
    return res


# ---- inputs ---------------------------------------------------------------------------

def crop_path(folder: Path, rec) -> str:
    """The crop for a record: MetFaces' name, else the basename of its image_path."""
    names = [rec.crop_name]
    if rec.image_path:
        base = rec.image_path.replace("\\", "/").rsplit("/", 1)[-1]
        if base and base not in names and base not in (".", ".."):
            names.append(base)
    for name in names:
        p = folder / name
        if p.is_file():
            return str(p)
    return ""


def verify_tasks(faces: list, images: Path, reference: Optional[Path]) -> list:
    tasks = []
    for rec in faces:
        crop = crop_path(images, rec)
        ref = ""
        if reference is not None:
            name = os.path.basename(crop) if crop else rec.crop_name
            ref = str(reference / name) if (reference / name).is_file() else crop_path(reference, rec)
        tasks.append(VerifyTask(rec.obj_id, rec.face_idx, rec.image_md5.strip(), crop, ref))
    return tasks


def versions() -> dict:
    """Everything that decides crop pixels and PNG bytes, in this process."""
    v = dict(library_versions())
    try:
        from PIL import features  # only here, to name zlib's version (not on `import`)
        v["zlib"] = features.version("zlib")
    except Exception:  # noqa: BLE001 - old Pillow without features.version
        pass
    v["metfaces-build"] = __version__
    return v


def aligned_with(images: Path) -> list:
    """Distinct library versions recorded in images/aligned.json (align's manifest)."""
    out: list = []
    for e in read_aligned(images) or []:
        if e.versions is not None and e.versions not in out:
            out.append(e.versions)
    return out


# ---- the command ----------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyOptions:
    """Options of the verify stage (names and defaults of its CLI flags)."""
    json: str = opt(help="metfaces.json-like list with image_md5", metavar="FILE")
    images: str = opt(help="folder of crops to check", metavar="DIR", shown="DIR/images")
    reference: Optional[str] = opt(None, "other crops to compare pixels (PSNR) with",
                                   metavar="DIR")
    out: Optional[str] = opt(None, "write every face's result here (JSON)", metavar="FILE")
    accept_same_pixels: bool = opt(False, "count same_pixels as a match")
    skip_bad: bool = skip_bad_opt("list malformed records, go on")
    workers: int = workers_opt()
    quiet: bool = quiet_opt()


@dataclass
class VerifySummary(StageSummary):
    """verify's outcome: `counts` by crop status; `results` every FaceCheck."""
    results: list = field(default_factory=list)


def verify(opts: VerifyOptions) -> VerifySummary:
    """Check every crop of `opts.images` against the image_md5 of its record in
    `opts.json` (and, with `opts.reference`, its pixels against another folder's)."""
    t0 = time.monotonic()
    images = Path(opts.images)
    if not images.is_dir():
        raise UsageError(f"--images {images} is not a folder")
    reference = Path(opts.reference) if opts.reference else None
    if reference is not None and not reference.is_dir():
        raise UsageError(f"--reference {reference} is not a folder")
    loaded = load_faces(opts.json, skip_bad=opts.skip_bad, what="--json")
    tasks = verify_tasks(loaded.faces, images, reference)
    vers = versions()
    made_with = aligned_with(images)

    results = []
    executor = LocalExecutor(min(opts.workers, max(1, len(tasks))))
    with Progress(len(tasks), "verify", opts.quiet, unit="crop") as prog:
        for r in executor.imap(verify_crop, tasks):
            results.append(r)
            prog.update(1)
    passing = PASS + ((SAME_PIXELS,) if opts.accept_same_pixels else ())
    counts: dict = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    bad_records = [{"index": b.index, "reason": b.reason} for b in loaded.bad]
    if bad_records:
        counts[BAD_RECORD] = len(bad_records)

    if opts.out:
        atomic_write_json(opts.out, {
            "json": str(opts.json), "images": str(images),
            "reference": str(reference) if reference else None,
            "versions": vers, "aligned_with": made_with,
            "counts": counts, "faces": [r.to_json() for r in results],
            "bad_records": bad_records,
            "note": "image_md5 is an md5 of a PNG file, not of pixels: the same pixels saved "
                    "by another Pillow/zlib give another md5; pixel_md5 and the reference "
                    "comparison tell pixels apart"})
    failed = sum(1 for r in results if r.status not in passing) + len(bad_records)
    return VerifySummary(stage="verify", counts=counts,
                         outputs={"results": Path(opts.out)} if opts.out else {},
                         elapsed=time.monotonic() - t0, failed=failed,
                         lines=summary(results, counts, vers, made_with, opts.out).split("\n"),
                         results=results)


def summary(results: list, counts: dict, vers: dict, made_with: list, out: Optional[str]) -> str:
    lines = [summarize(counts, f"verify: {len(results)} crops")]
    compared = [r for r in results if r.pixels_equal is not None]
    if compared:
        equal = sum(1 for r in compared if r.pixels_equal)
        finite = [r.psnr for r in compared if r.psnr is not None]
        lines.append(f"pixels vs reference: {equal} of {len(compared)} identical"
                     + (f"; differing: min PSNR {min(finite):.2f} dB, max difference "
                        f"{max(r.max_abs_diff or 0 for r in compared)}" if finite else ""))
    worst = sorted((r for r in results if r.status not in (MATCH, SAME_PIXELS)),
                   key=lambda r: (r.status != PIXELS_DIFFER, r.psnr if r.psnr is not None
                                  else math.inf, r.obj_id, r.face_idx))
    for r in worst[:WORST_SHOWN]:
        detail = (f"PSNR {r.psnr:.2f} dB, max diff {r.max_abs_diff}" if r.psnr is not None
                  else r.reason or (f"file md5 {r.file_md5}, expected {r.expected_md5}"
                                    if r.file_md5 else ""))
        lines.append(f"  {r.status}: {r.file}" + (f" ({detail})" if detail else ""))
    if len(worst) > WORST_SHOWN:
        lines.append(f"  ... and {len(worst) - WORST_SHOWN} more" + (f" (see {out})" if out else
                                                                      " (--out FILE lists all)"))
    meta = [r for r in results if r.status == SAME_PIXELS and r.metadata]
    if meta:
        lines.append(f"same_pixels: {len(meta)} of {counts.get(SAME_PIXELS)} differ from the "
                     f"reference only in PNG metadata, e.g. {meta[0].file}: {meta[0].metadata}")
    if counts.get(MD5_DIFFERS):
        lines.append("note: image_md5 is the md5 of a PNG file; a crop with the same pixels "
                     "saved by another Pillow/zlib differs too. --reference DIR tells them apart.")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    for v in made_with:
        lines.append("crops made with: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    if out:
        lines.append(f"results: {out}")
    return "\n".join(lines)
