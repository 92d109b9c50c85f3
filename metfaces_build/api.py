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

Values are checked as the CLI checks them (`infra.stage.check_values`): `detector="CNN"`
is a UsageError naming the valid detectors. `inspect.signature(detect)` (and help(),
IPython's call tips) list every keyword option with its type and default, read from the
stage's options dataclass.

Heavy libraries (numpy, dlib, scipy) load inside the functions that need them.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from .infra.workdir import Work

# The stage modules (and numpy, dlib, scipy behind them) are imported inside each function
# on purpose: `import metfaces_build` must stay cheap (tests/test_api.py measures it).

PathLike = Union[str, os.PathLike]


class _StageFunction:
    """A stage function whose signature lists its options dataclass's fields as
    keyword-only parameters (type, default), computed when first asked for, so that
    importing the API stays cheap; calling it calls the function."""

    def __init__(self, fn, options: str, consumed: tuple = ()):
        functools.update_wrapper(self, fn)
        self._fn, self._options, self._consumed = fn, options, consumed
        self._signature = None

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<function metfaces_build.{self.__name__}>"

    @property
    def __signature__(self) -> inspect.Signature:
        if self._signature is None:
            import dataclasses
            import importlib
            import typing
            modname, _, clsname = self._options.rpartition(".")
            cls = getattr(importlib.import_module(modname), clsname)
            hints = typing.get_type_hints(cls)
            own = inspect.signature(self._fn)
            params = [p for p in own.parameters.values() if p.kind != p.VAR_KEYWORD]
            named = {p.name for p in params} | set(self._consumed)
            for f in dataclasses.fields(cls):
                if f.name in named:
                    continue
                if f.default is not dataclasses.MISSING:
                    default = f.default
                elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                    default = f.default_factory()  # type: ignore[misc]
                else:  # given by the positional argument (e.g. align's Work)
                    default = None
                annotation = hints.get(f.name, Any)
                if default is None and typing.get_origin(annotation) is not typing.Union:
                    annotation = Optional[annotation]
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                                default=default, annotation=annotation))
            self._signature = own.replace(parameters=params)
        return self._signature


def _options_signature(options: str, consumed: tuple = ()):
    """Decorator: give the stage function the keyword options of `options` (a dotted
    path to its options dataclass) in its signature."""
    return lambda fn: _StageFunction(fn, options, consumed)


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

@_options_signature("metfaces_build.stages.fetch.FetchOptions")
def fetch(work, **options) -> Any:
    """Download Met object records and original images into `work` (see `metfaces-build
    fetch --help`). Say what to fetch with departments= ("11,9", "European Paintings" or
    a list), search=, ids= ("436001,436008" or a list), ids_file=, since= or from_json=;
    point api= at another API root (e.g. `serve_emulator().url`). Returns FetchSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.fetch import FetchOptions
    for name in ("departments", "ids"):
        if name in options:
            options[name] = _id_list(options[name])
    if "allow_host" in options:
        options["allow_host"] = tuple([options["allow_host"]] if isinstance(options["allow_host"], str)
                                      else options["allow_host"])
    from .stages.recipe import fetch_work
    return fetch_work(_work(work), options_from_kwargs(FetchOptions, options, "fetch"),
                      set(options))


@_options_signature("metfaces_build.stages.detect.DetectOptions")
def detect(work=None, **options) -> Any:
    """Find faces and 68 landmarks in every fetched original of `work` -> faces.json (or,
    with images= and out=, in every image of a folder). detector="hog" | "cnn" | "cascade",
    max_side= (the shrink rule); defaults in the signature. Returns DetectSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.detect import DetectOptions, detect as stage
    opts = options_from_kwargs(DetectOptions, options, "detect")
    if work is None or opts.images:
        return stage(None if work is None else _work(work), opts)
    from .stages.recipe import detect_work
    return detect_work(_work(work), opts, set(options))


@_options_signature("metfaces_build.stages.filter.FilterOptions")
def filter(work, **options) -> Any:  # noqa: A001 - the stage's name
    """Prune faces.json of `work` with the explicit tests -> filtered.json, rejected.jsonl
    (thresholds as keywords, e.g. min_size=512, min_score={"cnn": 0.8}; config= a TOML
    file). Returns FilterSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.filter import FilterOptions, filter as stage
    from .core.errors import UsageError
    score = options.get("min_score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        raise UsageError(f"filter: min_score is a threshold per detector (HOG's and the CNN's "
                         f"scores have different scales): min_score={{'cnn': {score}}} or "
                         f"'cnn={score}', not a bare {score}")
    if isinstance(score, dict):
        options["min_score"] = tuple(f"{k}={v}" for k, v in score.items())
    elif isinstance(score, str):
        options["min_score"] = (score,)
    opts = options_from_kwargs(FilterOptions, options, "filter")
    if opts.explain is not None:
        return stage(_work(work), opts)
    from .stages.recipe import filter_work
    return filter_work(_work(work), opts, set(options))


@_options_signature("metfaces_build.stages.align.AlignOptions")
def align(work_or_json, **options) -> Any:
    """Crop aligned faces with MetFaces' exact arithmetic. Given a Work (or a work
    directory): its filtered.json, sources under it, crops into its images/. Given a
    face-list file: pass source_images= and output_dir=. size=, no_rotation=,
    random_shift=, ... as the CLI (defaults in the signature). Returns AlignSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.align import AlignOptions, align as stage
    target = work_or_json
    for k in ("json", "source_images", "output_dir"):
        if options.get(k, "") is None:  # the signature's None: from the Work
            del options[k]
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


@_options_signature("metfaces_build.stages.compare.CompareOptions")
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


@_options_signature("metfaces_build.stages.report.ReportOptions")
def report(work, **options) -> Any:
    """Write report/report.md, report.html and stats.json for whatever `work` holds.
    Returns ReportSummary (`.outputs["markdown"]`)."""
    from .infra.stage import options_from_kwargs
    from .stages.report import ReportOptions, report as stage
    return stage(_work(work), options_from_kwargs(ReportOptions, options, "report"))


@_options_signature("metfaces_build.stages.review.ReviewOptions")
def review(work, **options) -> Any:
    """Write report/review.html (every face, its decision and reasons, to sort and
    overrule) and its thumbnails. Returns ReviewSummary (`.page`, `.faces`)."""
    from .infra.stage import options_from_kwargs
    from .stages.review import ReviewOptions, review as stage
    return stage(_work(work), options_from_kwargs(ReviewOptions, options, "review"))


@_options_signature("metfaces_build.stages.export.ExportOptions", consumed=('out',))
def export(work, out, **options) -> Any:
    """Pack the ok crops of `work`/images (or images=) into a StyleGAN dataset at `out`
    (a .zip, or a folder), or with format="webdataset" | "hf" | "folder" into tar shards
    (shard_size=), a Hugging Face dataset folder or a plain folder. Returns ExportSummary."""
    from .infra.stage import options_from_kwargs
    from .stages.export import ExportOptions, export as stage
    options["out"] = str(out)
    return stage(None if work is None else _work(work),
                 options_from_kwargs(ExportOptions, options, "export"))


@_options_signature("metfaces_build.stages.verify.VerifyOptions")
def verify(json, images, **options) -> Any:
    """Check the crops in `images` against the image_md5 of each record of `json`.
    Returns VerifySummary."""
    from .infra.stage import options_from_kwargs
    from .stages.verify import VerifyOptions, verify as stage
    options.update(json=str(json), images=str(images))
    return stage(options_from_kwargs(VerifyOptions, options, "verify"))


@_options_signature("metfaces_build.app.run.RunOptions")
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


def detect_image(image, detector: Optional[str] = None, max_side: Optional[int] = None, *,
                 upsample: Optional[int] = None, min_face: Optional[int] = None,
                 models_dir: Optional[PathLike] = None) -> list:
    """Faces in one image (a path, a PIL image or an HxWx3 uint8 array) as FaceRecords,
    found exactly as the detect stage finds them: the image is shrunk by the integer
    `shrink` = ceil(long side / max_side) first, and each record's `face_spec` (rect,
    landmarks in the shrunk frame, shrink) feeds `align_face` directly. As in the stage, a
    face whose aligned crop would be under `min_face` original pixels is not searched for
    (0: every face the scan can find). An option left None takes the detect stage's
    default (as `metfaces-build detect --help` shows)."""
    from .core.errors import UsageError
    from .infra.models import load_models, resolve_models
    from .infra.stage import options_from_kwargs
    from .stages import detect as D
    given = {"detector": detector, "max_side": max_side, "upsample": upsample,
             "min_face": min_face}
    opts = options_from_kwargs(D.DetectOptions, {"workers": 1, **{
        k: v for k, v in given.items() if v is not None}}, "detect_image")
    detector, max_side = opts.detector, opts.max_side
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise UsageError(f"detect_image: no such image file: {path}")
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


def align_face(image, face_spec, size: Optional[int] = None, rotate: bool = True, *,
               padding: bool = True, supersampling: Optional[int] = None):
    """One aligned crop (a PIL image) of the face `face_spec` (a FaceSpec, a FaceRecord or
    a face_spec dict) in `image` (a path, a full-resolution PIL image or an HxWx3 uint8
    array), with MetFaces' exact arithmetic. The crop keeps the source's colour profile
    where NVIDIA's script keeps it (`crop.info["icc_profile"]`, written by `crop.save`).
    size and supersampling are checked as align's --size and --supersampling; None takes
    align's default (MetFaces')."""
    import numpy as np
    from PIL import Image

    from .core.errors import UsageError
    from .core.records import FaceSpec
    from .infra.stage import check_values
    from .stages.align import AlignOptions, AlignParams, align_face as crop
    given = {k: v for k, v in (("size", size), ("supersampling", supersampling)) if v is not None}
    check_values(AlignOptions, given, "align_face")
    spec = getattr(face_spec, "face_spec", face_spec)
    if isinstance(spec, dict):
        spec = FaceSpec.from_json(spec)
    if not isinstance(spec, FaceSpec):
        raise UsageError(f"align_face: face_spec must be a FaceSpec, a FaceRecord or a "
                         f"face_spec dict, got {type(face_spec).__name__}")
    params = AlignParams(rotate=rotate, padding=padding, **given)
    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise UsageError(f"align_face: no such image file: {image}")
        with Image.open(image) as im:
            return crop(im.convert("RGB"), spec, params)
    if not hasattr(image, "mode"):  # an array, as detect_image takes
        image = Image.fromarray(np.asarray(image))
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
