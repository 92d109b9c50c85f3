"""align's pixels: one face cropped exactly as NVIDIA's metfaces.py crops it, and the
per-image task a worker runs (decode once, crop every face, write the PNGs).

The arithmetic is the reference's (ALIGN.md steps 4-8); the speed comes from the numba
kernels of core/exact*.py, fused so the 4096-pixel warp is never stored. Random shifts are
pre-drawn in JSON order (`draw_shifts`) so any number of workers gives the same crops.
The driver (stages/align.py) plans the tasks and keeps the manifest.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.exactblur import pad_and_blur, warm_up as warm_up_blur
from ..core.exactgauss import backend
from ..core.exactresize import lanczos_coeffs, resize_lanczos
from ..core.exactwarp import quad_warp, warp_and_downscale
from ..core.geometry import crop_box, face_square, landmarks_full
from ..core.records import FaceSpec
from ..core.status import ERROR, OK, REJECTED
from ..infra.executors import library_versions
from ..infra.files import atomic_write_bytes
from ..infra.images import ImageProblem, open_image

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
    from PIL import Image  # Pillow is loaded by the workers that crop, not by `import`
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
    """One face to crop. It carries its crop's name, not its record: the driver holds
    the records and joins each to its result (a plan of 200,000 jobs then holds no
    200,000 record dicts)."""
    index: int                 # position in the input JSON
    name: str                  # the crop's file name, {obj_id}-{face_idx:02d}.png
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
    """One manifest entry (`record` None from a worker: the driver fills it in)."""
    index: int
    record: Optional[dict]
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
    versions = dict(library_versions(), gaussian=backend())
    params = asdict(task.params)

    def result(job, status, reason="", **kw):
        return FaceResult(job.index, None, job.name, status, reason,
                          params=params, versions=versions, **kw)

    results = []
    todo = [j for j in task.jobs if not j.rejected]
    for j in task.jobs:
        if j.rejected:
            results.append(result(j, REJECTED, f"no crop inside the image after "
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
                results.append(result(j, ERROR, why))
                continue
            try:
                crop = align_face(image, j.spec, task.params, normal, cache)
            except (ValueError, ArithmeticError, MemoryError, OSError) as e:
                # what face_fit_problem does not foresee; say which face and image it was
                results.append(result(j, ERROR, f"cannot align this face in the "
                                                  f"{image.size[0]}x{image.size[1]} image: "
                                                  f"{type(e).__name__}: {e}"))
                continue
            buf = io.BytesIO()
            crop.save(buf, "PNG", compress_level=task.params.png_level)
            data = buf.getvalue()
            name = j.name
            try:
                atomic_write_bytes(Path(task.output_dir) / name, data)
            except OSError as e:  # a name this file system refuses, a full disk...
                results.append(result(j, ERROR, f"cannot write {name[:80]}: {e.strerror or e}"))
                continue
            results.append(result(j, OK, file_md5=hashlib.md5(data).hexdigest(),
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


def _header_size(path, max_pixels):
    """(width, height) from the header alone, or None when unreadable."""
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
    warm_up_blur()
    warp_and_downscale(np.zeros((4, 4, 3), np.uint8), np.arange(8.0), 8, 2)
    resize_lanczos(np.zeros((4, 4, 3), np.uint8), (2, 2))
    if params is not None and params.size < params.transform_size:
        lanczos_coeffs(params.transform_size, params.size)


