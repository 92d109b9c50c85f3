"""The stage packages split by role (filter/, detect/): each module small, each function
short, no import cycle between stages once packages count, and every name the single
modules had still importable from the package."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from conftest import REPO

STAGES = REPO / "metfaces_build" / "stages"
SPLIT = ("filter", "detect")


def _stage_units() -> dict:
    """{stage name: its files}: a module is one file, a package all of its files."""
    units = {p.stem: [p] for p in STAGES.glob("*.py") if p.stem != "__init__"}
    units.update({p.name: sorted(p.rglob("*.py")) for p in STAGES.iterdir()
                  if (p / "__init__.py").is_file()})
    return units


def _stages_imported(path: Path, units: dict) -> set:
    """The stages `path` imports (relative imports resolved; function-level ones too)."""
    package = list(path.relative_to(REPO).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level \
                else node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for m in names:
            parts = m.split(".")
            if parts[:2] == ["metfaces_build", "stages"] and len(parts) > 2 and parts[2] in units:
                out.add(parts[2])
    return out


def test_split_stages_are_packages_of_small_modules():
    for name in SPLIT:
        assert (STAGES / name / "__init__.py").is_file() and not (STAGES / f"{name}.py").exists()
    # (the other stages are split on their own branches; widen to all once they land)
    long = {str(p.relative_to(REPO)): n for name in SPLIT for p in (STAGES / name).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long


def test_no_function_over_60_lines_in_the_split_stages():
    long = []
    for name in SPLIT:
        for p in (STAGES / name).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                        and node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{p.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not long, long


# deferred on purpose, each with a comment saying why: `import stages.detect` loads no
# numpy or dlib (test_models), and filter loads scipy and PIL only to measure crops;
# core.metrics and infra.images import numpy (and PIL); tomllib only for --config
HEAVY = {"numpy", "PIL", "dlib", "scipy", "scipy.fft", "tomllib", "tomli", "...core.metrics",
         "...infra.images"}


def test_imports_inside_functions_are_only_the_heavy_ones():
    inner = []
    for name in SPLIT:
        for p in (STAGES / name).rglob("*.py"):
            for f in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(f):
                    if isinstance(node, ast.Import):
                        mods = [a.name for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        mods = ["." * node.level + (node.module or "")]
                    else:
                        continue
                    inner += [f"{p.name}:{node.lineno} {m}" for m in mods if m not in HEAVY]
    assert not inner, inner


def test_no_import_cycles_between_stages_packages_included():
    units = _stage_units()
    graph = {name: set().union(*(_stages_imported(p, units) for p in files)) - {name}
             for name, files in units.items()}
    assert {"filter", "detect"} <= graph["status"]  # the packages are seen as stages
    done, stack = set(), []

    def visit(n):
        assert n not in stack, "import cycle: " + " -> ".join(stack[stack.index(n):] + [n])
        if n not in done:
            stack.append(n)
            for m in sorted(graph[n]):
                visit(m)
            stack.pop()
            done.add(n)
    for n in graph:
        visit(n)


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


@pytest.mark.parametrize("name,names", [("filter", FILTER_NAMES), ("detect", DETECT_NAMES)])
def test_the_package_keeps_every_name_of_the_module(name, names):
    mod = importlib.import_module(f"metfaces_build.stages.{name}")
    missing = [n for n in names.split() if not hasattr(mod, n)]
    assert not missing, missing
    assert set(names.split()) <= set(mod.__all__) and all(hasattr(mod, n) for n in mod.__all__)
    # the stage function, not a submodule of the same name
    assert callable(getattr(mod, name)) and getattr(mod, name).__name__ == name


def test_drivers_hold_the_lock_of_the_folder_they_write(tmp_path):
    """detect locks the folder of --out (not the image folder); filter its work directory;
    both before reading an image or a model, and a finished run leaves no lock behind."""
    from PIL import Image

    from metfaces_build.core.errors import UsageError
    from metfaces_build.infra.lock import LOCK_NAME, work_lock
    from metfaces_build.stages import detect, filter as flt
    images, out = tmp_path / "paintings", tmp_path / "out"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "1.png")
    opts = detect.DetectOptions(images=str(images), out=str(out / "faces.json"), quiet=True)
    with work_lock(out, command="align"):
        with pytest.raises(UsageError, match="in use by align"):
            detect.detect(None, opts)
    (tmp_path / "faces.json").write_text("[]")
    with work_lock(tmp_path, command="fetch"):
        with pytest.raises(UsageError, match="in use by fetch"):
            flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    s = flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    assert (s.kept, s.rejected, s.exit_code) == (0, 0, 0) and s.counts == {"kept": 0, "rejected": 0}
    assert s.outputs["filtered"] == tmp_path / "filtered.json" and not (tmp_path / LOCK_NAME).exists()
    again = flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    assert again.up_to_date and again.line().endswith("(up to date; --force redoes it)")
