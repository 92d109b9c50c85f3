"""The public Python API: every stage as a function with keyword options, plus per-image
helpers and an emulator for offline use. Re-exported by `metfaces_build`.

Keyword options are named as the CLI flags (snake_case: `--max-side` is `max_side`) with
the same defaults, and each stage function returns its summary (counts by status, output
paths, elapsed seconds, `.exit_code`, `.line()`). An unknown keyword is a TypeError that
names the valid ones; a user mistake (a missing file, a bad combination) a UsageError.

    from metfaces_build import Work, serve_emulator, fetch, detect, filter, align

    work = Work("my-work")
    with serve_emulator() as api:
        fetch(work, api=api.url, departments="European Paintings", limit=10)
    detect(work)
    filter(work)
    align(work)

Heavy libraries (numpy, dlib, scipy) load inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .infra.workdir import Work

PathLike = Union[str, os.PathLike]


def _work(work) -> Work:
    return work if isinstance(work, Work) else Work(work)


def _id_list(value) -> Optional[str]:
    """"1,2" from 1, "1,2", [1, 2] or ("a", "b"): the CLI's comma-separated form."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return ",".join(str(v) for v in value)


# ---- stages -------------------------------------------------------------------------------

def fetch(work, **options) -> Any:
    """Download Met object records and original images into `work` (see `metfaces-build
    fetch --help`). Say what to fetch with departments= ("11,9", "European Paintings" or
    a list), search=, ids= ("436001,436008" or a list), ids_file=, since= or from_json=;
    point api= at another API root (e.g. `serve_emulator().url`). Returns FetchSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.fetch import FetchOptions, fetch as stage
    for name in ("departments", "ids"):
        if name in options:
            options[name] = _id_list(options[name])
    if "allow_host" in options:
        options["allow_host"] = tuple([options["allow_host"]] if isinstance(options["allow_host"], str)
                                      else options["allow_host"])
    from .stages.recipe import fetch_work
    return fetch_work(_work(work), options_from_kwargs(FetchOptions, options, "fetch"),
                      set(options))


def detect(work=None, **options) -> Any:
    """Find faces and 68 landmarks in every fetched original of `work` -> faces.json (or,
    with images= and out=, in every image of a folder). detector="hog" | "cnn" | "cascade",
    max_side=1024 (the shrink rule). Returns DetectSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.detect import DetectOptions, detect as stage
    opts = options_from_kwargs(DetectOptions, options, "detect")
    if work is None or opts.images:
        return stage(None if work is None else _work(work), opts)
    from .stages.recipe import detect_work
    return detect_work(_work(work), opts, set(options))


def filter(work, **options) -> Any:  # noqa: A001 - the stage's name
    """Prune faces.json of `work` with the explicit tests -> filtered.json, rejected.jsonl
    (thresholds as keywords, e.g. min_size=512, min_score={"cnn": 0.8}; config= a TOML
    file). Returns FilterSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.filter import FilterOptions, filter as stage
    score = options.get("min_score")
    if isinstance(score, dict):
        options["min_score"] = tuple(f"{k}={v}" for k, v in score.items())
    elif isinstance(score, str):
        options["min_score"] = (score,)
    opts = options_from_kwargs(FilterOptions, options, "filter")
    if opts.explain is not None:
        return stage(_work(work), opts)
    from .stages.recipe import filter_work
    return filter_work(_work(work), opts, set(options))


def align(work_or_json, **options) -> Any:
    """Crop aligned faces with MetFaces' exact arithmetic. Given a Work (or a work
    directory): its filtered.json, sources under it, crops into its images/. Given a
    face-list file: pass source_images= and output_dir=. size=1024, no_rotation=False,
    random_shift=0.0, ... as the CLI. Returns AlignSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.align import AlignOptions, align as stage
    target = work_or_json
    if isinstance(target, Work) or Path(target).is_dir():
        from .stages.recipe import align_work
        given = set(options)
        for k in ("json", "source_images", "output_dir"):
            options.setdefault(k, "")
        return align_work(_work(target), options_from_kwargs(AlignOptions, options, "align"),
                          given)
    else:
        options.setdefault("json", str(target))
        missing = [k for k in ("source_images", "output_dir") if k not in options]
        if missing:
            raise TypeError(f"align({str(target)!r}, ...) needs {' and '.join(missing)}= "
                            "(or pass a Work)")
    return stage(options_from_kwargs(AlignOptions, options, "align"))


def compare(stored=None, regenerated=None, **options) -> Any:
    """Regenerated vs stored landmarks (two face lists), or crops=(folder_a, folder_b);
    with out=, writes compare.json and (landmarks) a report there. Returns
    CompareSummary."""
    from .app.commands.compare import compare_with_report
    from .infra.stage import options_from_kwargs
    from .stages.compare import CompareOptions
    if stored is not None:
        options["stored"] = str(stored)
    if regenerated is not None:
        options["regenerated"] = str(regenerated)
    if options.get("crops") is not None:
        options["crops"] = tuple(str(p) for p in options["crops"])
    return compare_with_report(options_from_kwargs(CompareOptions, options, "compare"))


def report(work, **options) -> Any:
    """Write report/report.md, report.html and stats.json for whatever `work` holds.
    Returns ReportSummary (`.outputs["markdown"]`)."""
    from .infra.stage import options_from_kwargs
    from .stages.report import ReportOptions, report as stage
    return stage(_work(work), options_from_kwargs(ReportOptions, options, "report"))


def review(work, **options) -> Any:
    """Write report/review.html (every face, its decision and reasons, to sort and
    overrule) and its thumbnails. Returns ReviewSummary (`.page`, `.faces`)."""
    from .infra.stage import options_from_kwargs
    from .stages.review import ReviewOptions, review as stage
    return stage(_work(work), options_from_kwargs(ReviewOptions, options, "review"))


def export(work, out, **options) -> Any:
    """Pack the ok crops of `work`/images (or images=) into a StyleGAN dataset at `out`
    (a .zip, or a folder). Returns ExportSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.export import ExportOptions, export as stage
    options["out"] = str(out)
    return stage(None if work is None else _work(work),
                 options_from_kwargs(ExportOptions, options, "export"))


def verify(json, images, **options) -> Any:
    """Check the crops in `images` against the image_md5 of each record of `json`.
    Returns VerifySummary."""
    from .infra.stage import options_from_kwargs
    from .stages.verify import VerifyOptions, verify as stage
    options.update(json=str(json), images=str(images))
    return stage(options_from_kwargs(VerifyOptions, options, "verify"))


def run(work, **options) -> Any:
    """fetch -> detect -> filter -> align -> report in `work`, resumable (every fetch and
    detect keyword, fetch_workers=, filter_config=). Returns RunSummary; a usage error in
    a stage raises UsageError naming it (the stages before it are kept)."""
    from .app.run import RunOptions, run as pipeline
    from .core.errors import UsageError
    from .infra.stage import options_from_kwargs
    for name in ("departments", "ids"):
        if name in options:
            options[name] = _id_list(options[name])
    if isinstance(options.get("allow_host"), (list, str)):
        h = options["allow_host"]
        options["allow_host"] = (h,) if isinstance(h, str) else tuple(h)
    summary = pipeline(_work(work), options_from_kwargs(RunOptions, options, "run"),
                       given=set(options))
    if summary.error is not None:
        raise UsageError(f"run stopped at {summary.stopped_at}: {summary.error}")
    return summary


def status(work) -> Any:
    """Per stage of `work`: current, stale (with the reasons) or missing, read from its
    files (no network, nothing written). Returns StatusSummary (`.states`, `.exit_code`
    0 when everything is current, `.to_json()`)."""
    from .stages.status import status as stage
    return stage(_work(work))


# ---- one image ----------------------------------------------------------------------------

def load_faces(path: PathLike, skip_bad: bool = False) -> list:
    """The FaceRecords of a metfaces.json-compatible file (NVIDIA's metfaces.json, or our
    faces.json / filtered.json). Bad records raise RecordError unless `skip_bad`."""
    from .infra.faces import load_faces as load
    return load(path, skip_bad=skip_bad).faces


def detect_image(image, detector: str = "hog", max_side: int = 1024, *,
                 upsample: Optional[int] = None, min_face: int = 1024,
                 models_dir: Optional[PathLike] = None) -> list:
    """Faces in one image (a path, a PIL image or an HxWx3 uint8 array) as FaceRecords,
    found exactly as the detect stage finds them: the image is shrunk by the integer
    `shrink` = ceil(long side / max_side) first, and each record's `face_spec` (rect,
    landmarks in the shrunk frame, shrink) feeds `align_face` directly. As in the stage, a
    face whose aligned crop would be under `min_face` original pixels is not searched for
    (0: every face the scan can find)."""
    from .infra.models import load_models, resolve_models
    from .stages import detect as D
    if detector not in D.DETECTORS:
        raise ValueError(f"unknown detector {detector!r} (choose {', '.join(D.DETECTORS)})")
    opts = D.DetectOptions(detector=detector, max_side=max_side, workers=1, min_face=min_face,
                           **({} if upsample is None else {"upsample": upsample}))
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        shrunk = D.load_shrunk(path, max_side)
        obj_id, source_path = path.stem, path.name
        from .infra.files import file_digest
        md5 = file_digest(path)
    else:
        shrunk = _shrink_in_memory(image, max_side)
        obj_id, source_path, md5 = "image", "", ""
    models = load_models(resolve_models(models_dir, need_cnn=detector != "hog"))
    found = D.run_detector(shrunk.pixels, opts, models)
    task = D.DetectTask(obj_id=obj_id, source_path=source_path, path=source_path)
    res = D.DetectResult(obj_id, source_path, "ok", source_md5=md5, width=shrunk.width,
                         height=shrunk.height, mode=shrunk.mode, shrink=shrunk.shrink,
                         shrink_method=shrunk.method, exif_orientation=shrunk.exif_orientation)
    return [D.face_record(task, res, i, d) for i, d in enumerate(found.detections)]


def _shrink_in_memory(image, max_side: int):
    """The stage's shrink rule for an image already in memory: integer box reduction."""
    import numpy as np
    from PIL import Image

    from .stages.detect import ShrunkImage, choose_shrink, to_rgb8
    im = image if hasattr(image, "mode") else Image.fromarray(np.asarray(image))
    mode = im.mode
    rgb = to_rgb8(im)
    shrink = choose_shrink(rgb.width, rgb.height, max_side)
    small = rgb.reduce(shrink) if shrink > 1 else rgb
    return ShrunkImage(pixels=np.asarray(small), shrink=shrink,
                       method=f"reduce/{shrink}" if shrink > 1 else "none",
                       width=rgb.width, height=rgb.height, mode=mode, format="",
                       exif_orientation=1)


def align_face(image, face_spec, size: int = 1024, rotate: bool = True, *,
               padding: bool = True, supersampling: int = 4):
    """One aligned crop (a PIL image) of the face `face_spec` (a FaceSpec, a FaceRecord or
    a face_spec dict) in `image` (a path or a full-resolution PIL image), with
    MetFaces' exact arithmetic."""
    from PIL import Image

    from .core.records import FaceSpec
    from .stages.align import AlignParams, align_face as crop
    spec = getattr(face_spec, "face_spec", face_spec)
    if isinstance(spec, dict):
        spec = FaceSpec.from_json(spec)
    params = AlignParams(size=size, supersampling=supersampling, rotate=rotate, padding=padding)
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return crop(im.convert("RGB"), spec, params)
    return crop(image.convert("RGB") if image.mode != "RGB" else image, spec, params)


# ---- offline ------------------------------------------------------------------------------

class Emulator:
    """A running Met API emulator: `.url` is the API root to pass as `api=`; every method
    of the emulator handle (truth(), records(), stats(), set_faults()) is available."""

    def __init__(self, handle):
        self.handle = handle
        self.url = handle.api_root

    def __getattr__(self, name):
        return getattr(self.handle, name)


@contextlib.contextmanager
def serve_emulator(faults=(), fault_rate: float = 0.0, **options) -> Iterator[Emulator]:
    """Serve the sample Met collection on a free loopback port for the `with` block:

        with serve_emulator(faults="429,5xx", fault_rate=0.1) as api:
            fetch(work, api=api.url, departments="11")

    `options` go to met.emulator.start_emulator (seed, retry_after, cache_dir, ...)."""
    from .met.emulator import start_emulator
    handle = start_emulator(faults=faults, fault_rate=fault_rate, **options)
    try:
        yield Emulator(handle)
    finally:
        handle.stop()


__all__ = ["Work", "fetch", "detect", "filter", "align", "compare", "report", "review", "export",
           "verify", "run", "load_faces", "detect_image", "align_face", "serve_emulator"]
