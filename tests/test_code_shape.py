"""The code's shape (issue 23), over the whole package: stage modules under 600 lines,
no function over 60 lines (the numba kernels of core/exact*.py aside), imports at module
level except the heavy or optional libraries deferred on purpose, and the split stages
(fetch/, filter/, detect/) still exporting every name their single modules had."""
from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "metfaces_build"
STAGES = PACKAGE / "stages"
SPLIT = ("fetch", "filter", "detect")

# deferred on purpose, each where it is imported with a comment saying why: slow to
# import (the CLI and `import metfaces_build` start without them), optional extras, or
# the Python-version fallback of tomllib; core.metrics and infra.images load numpy/PIL
HEAVY = {"numpy", "PIL", "dlib", "face_recognition_models", "scipy", "numba", "requests",
         "urllib3", "tenacity", "dask", "distributed", "tomllib", "tomli", "tqdm"}
HEAVY_LOCAL = {"core.metrics", "infra.images", "dask_executor"}
# the keyword API and the package's lazy attributes import on first use by design: a
# notebook's `import metfaces_build` loads no stage (test_api's import-time test)
LAZY_BY_DESIGN = {PACKAGE / "api.py", PACKAGE / "__init__.py"}


def _py(root: Path):
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_stage_modules_are_under_600_lines():
    long = {str(p.relative_to(REPO)): n for p in _py(STAGES)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
    for name in SPLIT:
        assert (STAGES / name / "__init__.py").is_file() and not (STAGES / f"{name}.py").exists()


def test_no_function_over_60_lines():
    long = [f"{p.relative_to(REPO)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1})"
            for p in _py(PACKAGE) if not (p.parent.name == "core" and p.name.startswith("exact"))
            for f in _functions(p) if f.end_lineno - f.lineno + 1 > 60]
    assert not long, "\n".join(long)


def _deferred_ok(node, path: Path) -> bool:
    if isinstance(node, ast.Import):
        return all(a.name.split(".")[0] in HEAVY for a in node.names)
    if node.level == 0:
        return (node.module or "").split(".")[0] in HEAVY
    return any((node.module or "").endswith(m) for m in HEAVY_LOCAL)


def test_imports_inside_functions_only_where_deferred_on_purpose():
    inner = [f"{p.relative_to(REPO)}:{n.lineno}" for p in _py(PACKAGE) if p not in LAZY_BY_DESIGN
             for f in _functions(p) for n in ast.walk(f)
             if isinstance(n, (ast.Import, ast.ImportFrom)) and not _deferred_ok(n, p)]
    assert not inner, "\n".join(inner)


def test_the_shape_checks_see_a_violation(tmp_path):
    """The checks above are not vacuous: a long function and a needless inner import in a
    scratch module are both found."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import json\n" + "    x = 1\n" * 61)
    (f,) = _functions(p)
    assert f.end_lineno - f.lineno + 1 > 60
    (node,) = [n for n in ast.walk(f) if isinstance(n, ast.Import)]
    assert not _deferred_ok(node, p)


FETCH_NAMES = ("STATUSES JournalIndex compact_journal dedupe_ids fetch_object UpdateJournal "
               "run_pool check_options FetchSummary FetchOptions fetch")
FILTER_NAMES = (
    "CACHE_VERSION CONFIG_FIELDS Check CropMeasures DEFAULT_MIN_SCORE FaceVerdict FilterConfig "
    "FilterOptions FilterOutcome FilterResult FilterSummary FilterTask OVERRIDES_FILE "
    "OVERRIDE_DECISIONS OVERRIDE_REASON apply_overrides build_config cache_entry cached_result "
    "check_crop check_face check_image_faces check_landmarks check_padding check_resolution "
    "check_score config_from_mapping crop_measures explain face_id face_object filter "
    "filter_faces filter_tasks hash_distance image_cache_key load_overrides load_toml_config "
    "measurement_crops overrides_digest overrides_in_force parse_overrides perceptual_hash "
    "popcount resolve_duplicates resolve_overlaps summary_line write_cache write_outputs "
    "THRESHOLDS Thresholds")
DETECT_NAMES = (
    "CNN_MIN_BOX DEFAULT_CASCADE_SCORE DEFAULT_CNN_UPSAMPLE DEFAULT_MAX_SIDE DEFAULT_MIN_FACE "
    "DEFAULT_UPSAMPLE DETECTORS DONE_STATUSES DetectOptions DetectResult DetectSummary "
    "DetectTask Detection DetectorRun HOG_MIN_BOX IMAGE_SUFFIXES JOURNAL_VERSION "
    "JPEG_DRAFT_SCALES QSIZE_PER_BOX SAME_FACE_IOU SETTINGS ShrunkImage SourceVersion StagePaths "
    "as_rgb_array cascade_boxes choose_shrink cnn_boxes cnn_reduce detect detect_faces "
    "detect_task draft_scale face_changes face_record file_stat_key hog_boxes init_worker "
    "load_shrunk order_faces predict_landmarks prefetch reduced_cnn_boxes reusable_detections "
    "run_detector same_face same_source scan_upsample smallest_box stage_inputs "
    "tasks_and_damage tasks_from_folder tasks_from_work to_rgb8 IO DETECTION")


def test_the_packages_keep_every_name_of_the_modules():
    for name, names in (("fetch", FETCH_NAMES), ("filter", FILTER_NAMES), ("detect", DETECT_NAMES)):
        mod = importlib.import_module(f"metfaces_build.stages.{name}")
        missing = [n for n in names.split() if not hasattr(mod, n)]
        assert not missing, (name, missing)
        assert set(names.split()) <= set(mod.__all__) and all(hasattr(mod, n) for n in mod.__all__)
        # the stage function, not a submodule of the same name
        assert callable(getattr(mod, name)) and getattr(mod, name).__name__ == name
    assert dataclasses.is_dataclass(importlib.import_module("metfaces_build.stages.fetch").FetchOptions)
