"""`status`: per stage, is the work directory's output current, stale (and why) or missing.

Read-only and offline: it compares what each output was made from (journals, the filter
summary, the align manifest, stamps) with what is there now and with the recipe, the
way `dvc status` and `git status` do, and names the command that brings it current. It
cannot know what the Met added since the last fetch: `run` asks the API for that.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.errors import UsageError
from ..core.records import FaceKey, FaceRecord
from ..core.status import (ALIGN_RETIRED, BAD_CONTENT, CURRENT, HTTP_ERROR, MISSING, OK,
                           STALE)
from ..infra.files import file_digest, read_jsonl
from ..infra.jsonstream import read_json_items
from ..infra.readers import manifest_complete, scan_aligned
from ..infra.recipe import changed_inputs, read_stamps
from ..infra.stage import StageSummary
from ..infra.workdir import Work, as_work, latest, scan_objects, status_counts
from .align import AlignOptions, input_reference, pixel_record
from .detect import DetectOptions, reusable_detections, tasks_from_work
from .filter import load_overrides, overrides_digest
from .recipe import filter_config_of, recipe_of, use_table
from .report import REPORT_INPUTS
from .review import REVIEW_INPUTS

NETWORK_FAILED = (HTTP_ERROR, BAD_CONTENT)


@dataclass
class StageState:
    """One stage's line: current / stale / missing, the reasons, the command that fixes it."""
    stage: str
    state: str
    reasons: list = field(default_factory=list)
    fix: str = ""

    def to_json(self) -> dict:
        return {"stage": self.stage, "state": self.state, "reasons": self.reasons, "fix": self.fix}


@dataclass
class StatusSummary(StageSummary):
    """status's outcome; exit code 0 when every stage is current, else 1."""
    states: list = field(default_factory=list)
    recipe: bool = False

    @property
    def exit_code(self) -> int:
        return 0 if all(s.state == CURRENT for s in self.states) else 1

    def to_json(self) -> dict:
        return {"work": str(self.outputs.get("work", "")), "current": self.exit_code == 0,
                "recipe": self.recipe, "stages": [s.to_json() for s in self.states]}


@dataclass
class CropDrift:
    """How the crops in images/ differ from filtered.json's kept faces."""
    to_make: list = field(default_factory=list)     # kept faces without a current crop
    to_remove: list = field(default_factory=list)   # crops of faces no longer kept
    changed: list = field(default_factory=list)     # kept faces whose crop is out of date
    failed: list = field(default_factory=list)      # kept faces align could not crop
    kept: set = field(default_factory=set)          # every kept face of filtered.json

    @property
    def current(self) -> bool:
        """Every kept face has its crop and no other crop is there (faces align failed on,
        with a recorded reason, are not stale crops: a rerun retries them)."""
        return not (self.to_make or self.to_remove or self.changed)

    def reasons(self, failed: bool = True) -> list:
        out = []
        if self.to_remove:
            out.append(f"{len(self.to_remove)} crop(s) of faces no longer kept in filtered.json "
                       f"({_ids(self.to_remove)})")
        if self.to_make:
            out.append(f"{len(self.to_make)} kept face(s) without a crop ({_ids(self.to_make)})")
        if self.changed:
            out.append(f"{len(self.changed)} crop(s) made from another record or other align "
                       f"settings ({_ids(self.changed)})")
        if self.failed and failed:
            out.append(f"{len(self.failed)} kept face(s) failed in align, rerun to retry "
                       f"({_ids(self.failed)}; reasons in images/aligned.json)")
        return out


def _ids(keys: list) -> str:
    shown = ", ".join(str(FaceKey(*k)) for k in keys[:3])
    return shown + (" ..." if len(keys) > 3 else "")


def status(work) -> StatusSummary:
    """The state of every stage of `work` (see the module docstring)."""
    t0 = time.monotonic()
    work = as_work(work)
    if not work.path.is_dir():
        raise UsageError(f"work directory not found: {work.path}")
    recipe = recipe_of(work)
    fix = f"metfaces-build run --work {work.path}"
    states = [fetch_state(work, recipe, fix), detect_state(work, recipe, fix),
              filter_state(work, recipe, fix), align_state(work, recipe, fix),
              stamped_state(work, "report", work.report_dir / "report.md", REPORT_INPUTS,
                            f"metfaces-build report --work {work.path}"),
              stamped_state(work, "review", work.review_page, REVIEW_INPUTS,
                            f"metfaces-build review --work {work.path}")]
    lines = [f"{s.stage:<7} {s.state:<8} " + ("; ".join(s.reasons) if s.reasons else "")
             for s in states]
    lines = [ln.rstrip() for ln in lines]
    todo = [s for s in states if s.state != CURRENT]
    if not todo:
        lines.append(f"everything current ({work.path})")
    else:
        fixes = list(dict.fromkeys(s.fix for s in todo))
        lines.append("to bring it current: " + " ; ".join(
            [fix] if fix in fixes else fixes))
    if recipe is None:
        lines.append(f"no recipe in {work.path}: give `run` the selection once (e.g. "
                     f"`{fix} --departments 11`); it records it in {work.recipe_toml.name}")
    counts = {s.state: sum(1 for x in states if x.state == s.state) for s in states}
    return StatusSummary(stage="status", counts=counts, outputs={"work": work.path},
                         elapsed=time.monotonic() - t0, failed=0, lines=lines, states=states,
                         recipe=recipe is not None)


# ---- per stage -----------------------------------------------------------------------------

def fetch_state(work: Work, recipe, fix: str) -> StageState:
    if not work.objects_jsonl.exists():
        return StageState("fetch", MISSING, ["nothing fetched yet"],
                          fix if recipe else f"{fix} --departments LIST (or --search, --ids, ...)")
    objs, damage = scan_objects(work.objects_jsonl)
    reasons = []
    counts = status_counts(objs.values())
    failed = sum(counts.get(s, 0) for s in NETWORK_FAILED)
    if failed:
        reasons.append(f"{failed} object(s) failed on the network, rerun to retry")
    refresh = sum(1 for r in objs.values() if r.get("refresh_error"))
    if refresh:
        reasons.append(f"{refresh} refresh(es) failed (the old image and record are kept), "
                       "rerun to retry")
    if damage:
        numbers = [n for n, _ in damage.lines]
        reasons.append(f"{len(numbers)} damaged line(s) in {work.objects_jsonl.name} (line "
                       f"{', '.join(map(str, numbers[:5]))}): kept as they are, never read as "
                       "an object gone; fix or delete them by hand")
    stamp = read_stamps(work.stamps_json).get("fetch") or {}
    if recipe is not None and "fetch" in recipe.sections and \
            stamp.get("recipe") != recipe.digest("fetch"):
        reasons.append("the recipe's [fetch] table changed since the last fetch")
    return StageState("fetch", STALE if reasons else CURRENT, reasons, fix)


def detect_state(work: Work, recipe, fix: str) -> StageState:
    if not work.objects_jsonl.exists() and not work.originals_dir.is_dir():
        return StageState("detect", MISSING, ["nothing fetched to detect in"], fix)
    if not work.faces_json.exists():
        return StageState("detect", MISSING, ["faces.json not written yet"], fix)
    opts = use_table(work, "detect", DetectOptions(), given=set(), save=False).options
    signature = opts.signature()
    tasks = tasks_from_work(work)
    before = latest(read_jsonl(work.detect_journal), "source_path")
    done = reusable_detections(before.values(), {t.source_path: t.version for t in tasks},
                               signature)
    todo = [t for t in tasks if t.source_path not in done]
    # each task falls in one of three lists by its own source_path (no list scans:
    # 200,000 originals not detected yet are not 200,000 x 200,000 comparisons)
    new = [t for t in todo if t.source_path not in before]
    settings = [t for t in todo if t.source_path in before
                and before[t.source_path].get("settings") != signature]
    reshot = [t for t in todo if t.source_path in before
              and before[t.source_path].get("settings") == signature]
    reasons = []
    if new:
        reasons.append(f"{len(new)} original(s) not detected yet")
    if reshot:
        reasons.append(f"{len(reshot)} original(s) re-shot since detect")
    if settings:
        reasons.append(f"detector settings changed for {len(settings)} image(s)")
    if not reasons and work.detect_journal.exists() and \
            work.detect_journal.stat().st_mtime_ns > work.faces_json.stat().st_mtime_ns + 10**9:
        reasons.append("faces.json older than detect.jsonl (an interrupted detect)")
    return StageState("detect", STALE if reasons else CURRENT, reasons, fix)


def filter_state(work: Work, recipe, fix: str) -> StageState:
    summary = work.filter_summary()
    if not work.filtered_json.exists() or summary is None:
        return StageState("filter", MISSING, ["filtered.json not written yet"], fix)
    reasons = []
    if work.faces_json.exists() and file_digest(work.faces_json, "sha256") != \
            summary.get("input_sha256"):
        reasons.append("faces.json changed since filter")
    if recipe is not None and "filter" in recipe.sections:
        cfg = filter_config_of(recipe).to_json()
        old = summary.get("config") if isinstance(summary.get("config"), dict) else {}
        diff = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in cfg.items() if old.get(k) != v]
        if diff:
            reasons.append("filter config changed (" + ", ".join(diff[:3])
                           + (" ..." if len(diff) > 3 else "") + ")")
    if work.overrides_json.exists():
        try:
            saved = load_overrides(work.overrides_json, None)
        except UsageError as e:
            reasons.append(f"overrides.json unreadable: {e}")
        else:
            known = _face_ids(work.faces_json)
            applied = {k: v for k, v in saved.items() if k in known}
            recorded = (summary.get("overrides") or {}) if isinstance(summary.get("overrides"),
                                                                      dict) else {}
            if recorded.get("sha256") != overrides_digest(applied):
                reasons.append("overrides.json changed since filter")
    return StageState("filter", STALE if reasons else CURRENT, reasons, fix)


def _face_ids(path: Path) -> set:
    return {str(FaceKey(str(d.get("obj_id")), d["face_idx"])) for d in _items(path)
            if isinstance(d, dict) and isinstance(d.get("face_idx"), int)}


def align_state(work: Work, recipe, fix: str) -> StageState:
    if not work.filtered_json.exists():
        return StageState("align", MISSING, ["nothing filtered to align"], fix)
    if not manifest_complete(work.images_dir):  # streamed: no manifest held whole
        return StageState("align", MISSING, ["no crops made yet"], fix)
    drift = crop_drift(work, recipe)
    reasons = drift.reasons()
    return StageState("align", STALE if reasons else CURRENT, reasons, fix)


def crop_drift(work: Work, recipe=None) -> CropDrift:
    """How images/ differs from filtered.json: the one comparison `status` and `export`
    make (the align parameters come from the recipe, MetFaces' defaults without one).
    Both files are read entry by entry and each face kept as a digest of what decides its
    pixels, so memory is a few hundred bytes per face, not its record."""
    params = None  # without a recipe, the crops' own settings are the intended ones
    if recipe is not None and "align" in recipe.sections:
        opts = AlignOptions(json="", source_images="", output_dir="")
        params = asdict(use_table(work, "align", opts, given=set(), save=False).options.params)
    ref = input_reference(work.filtered_json, work.images_dir)
    ok, failed = {}, {}  # key -> (pixel digest, made with other params, ours to remove)
    for e in scan_aligned(work.images_dir):
        key = e.key
        if key is None:
            continue
        if e.status == OK:
            ours = e.inputs is None or ref in e.inputs
            other = params is not None and _params_differ(e.params, params)
            ok[key] = (_pixel_digest(e.record), other, ours)
        elif e.status not in ALIGN_RETIRED:
            failed[key] = _pixel_digest(e.record)
    drift = CropDrift()
    for d in _kept_records(work):
        key = FaceKey(d["obj_id"], d["face_idx"])
        drift.kept.add(key)
        digest, e = _pixel_digest(d), ok.get(key)
        if e is None and failed.get(key) == digest:
            drift.failed.append(key)
        elif e is None:
            drift.to_make.append(key)
        elif e[0] != digest or e[1]:
            drift.changed.append(key)
    # crops another face list claims (align --json other.json into images/) are not ours
    drift.to_remove = sorted(k for k, e in ok.items() if k not in drift.kept and e[2])
    return drift


def _items(path: Path):
    """The entries of a JSON list file one by one (nothing when missing or not a list)."""
    try:
        items = read_json_items(path, path.name)
        yield from (items if hasattr(items, "__next__") else ())
    except UsageError:
        return


def _kept_records(work: Work):
    """filtered.json's records as align reads them (normalised; bad ones left out as align
    does with --skip-bad)."""
    for i, d in enumerate(_items(work.filtered_json)):
        try:
            yield FaceRecord.from_json(d, i).to_json()
        except ValueError:
            continue


def _pixel_digest(rec: dict) -> bytes:
    blob = json.dumps(pixel_record(rec), sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode("utf-8", "replace"), digest_size=16).digest()


def _params_differ(recorded, params: dict) -> bool:
    if not isinstance(recorded, dict):
        return False
    keys = set(recorded) & set(params) - {"png_level"}
    return any(recorded[k] != params[k] for k in keys)


def stamped_state(work: Work, stage: str, output: Path, inputs: tuple, fix: str) -> StageState:
    if not output.exists():
        return StageState(stage, MISSING, [f"{work.rel(output)} not written yet"], fix)
    stamp = read_stamps(work.stamps_json).get(stage) or {}
    changed = changed_inputs(work.path, stamp.get("inputs"), inputs)
    if not changed:
        return StageState(stage, CURRENT, [], fix)
    if not isinstance(stamp.get("inputs"), dict):
        return StageState(stage, STALE, ["made before stamps were kept (or by hand)"], fix)
    return StageState(stage, STALE, [f"{', '.join(changed[:3])} changed since it was made"], fix)


def status_json(summary: StatusSummary) -> str:
    return json.dumps(summary.to_json(), indent=1)
