"""filter's thresholds: FilterConfig (every default), the TOML file and the flags
(FilterOptions), overlaid in that order by `build_config`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ...core.errors import UsageError
from ...infra.stage import (check_values, force_opt, opt, overridable, quiet_opt, skip_bad_opt,
                            workers_opt)

DEFAULT_MIN_SCORE = {"cnn": 0.3, "hog": 0.0}


def _t(default, help, metavar="X", limits=">= 0", **kw):
    """A threshold: a FilterConfig field with a flag, a TOML key and a recipe entry."""
    return opt(default, help, metavar=metavar, limits=limits, threshold=True, **kw)


@dataclass
class FilterConfig:
    """Thresholds of every test (the TOML keys; the flags of those marked `_t`)."""
    min_size: float = _t(1024.0, "min crop side, source px", "PX")   # no upsampling
    min_score: dict = opt(help="min detector score per detector",
                          factory=lambda: dict(DEFAULT_MIN_SCORE))
    max_roll: float = _t(45.0, "max |eye-line angle|, degrees", "DEG")
    min_mouth_drop: float = _t(0.4, "mouth below eye line, eye distances", limits=None)
    eye_jaw_min: float = _t(0.4, "min outer-eye distance / jaw width")
    eye_jaw_max: float = _t(0.95, "max outer-eye distance / jaw width")
    max_yaw: float = _t(0.35, "max nose-to-eye asymmetry")
    max_landmark_outside: float = _t(0.1, "landmarks outside image, eye distances")
    max_padding: float = _t(0.5, "max share of the crop outside the image", "SHARE")
    max_overlap: float = _t(0.3, "max box IoU of two faces of an image", "IOU")
    max_hash_distance: int = _t(6, "near-duplicate pHash bits; < 0: off", "BITS",
                                limits=None)
    min_sharpness: Optional[float] = _t(None, "min Laplacian variance (rejects)", "VAR",
                                        shown="none: tag only")
    grayscale_chroma: float = _t(0.02, "grayscale below this channel spread")
    reject_grayscale: bool = opt(False, "reject grayscale faces (else tag them)")
    crop_tests: bool = opt(True, "decode images for the crop tests")
    crop_size: int = _t(128, "side of the measurement crop", "PX", limits=">= 16")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(FilterConfig)}


def config_from_mapping(values: dict, base: Optional[FilterConfig] = None,
                        where: str = "config") -> FilterConfig:
    """Overlay `values` (TOML table or flags) on `base`: names, types and limits checked
    by infra.stage.check_values from FilterConfig's declarations (the flags' own check);
    min_score, a table of detector scores, merges into the base's."""
    unknown = [k for k in values if k not in CONFIG_FIELDS]
    if unknown:
        raise UsageError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(CONFIG_FIELDS)})")
    cfg = base or FilterConfig()
    changes = check_values(FilterConfig, dict(values), where)
    if "min_score" in changes:
        v = changes["min_score"]
        if not isinstance(v, dict) or not all(_is_number(x) for x in v.values()):
            raise UsageError(f"{where}: min_score must map detector names to numbers")
        changes["min_score"] = {**cfg.min_score, **{str(n): float(x) for n, x in v.items()}}
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.eye_jaw_min > cfg.eye_jaw_max:
        raise UsageError(f"{where}: eye_jaw_min ({cfg.eye_jaw_min}) > eye_jaw_max ({cfg.eye_jaw_max})")
    return cfg


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_toml_config(path: str) -> dict:
    """The `[filter]` table of a TOML file (or its top level when there is no such table)."""
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise UsageError("--config needs Python 3.11+ (tomllib) or the 'tomli' package; "
                             "use flags instead, or `pip install tomli`") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None
    table = data.get("filter", data)
    if not isinstance(table, dict):
        raise UsageError(f"config file {path}: [filter] must be a table")
    return table


def build_config(opts: "FilterOptions") -> FilterConfig:
    """Defaults, then the TOML file, then flags."""
    cfg = FilterConfig()
    if opts.config:
        cfg = config_from_mapping(load_toml_config(opts.config), cfg, where=opts.config)
    flags: dict[str, Any] = {name: getattr(opts, name) for name in THRESHOLDS
                             if getattr(opts, name) is not None}
    if opts.min_score:
        flags["min_score"] = dict(_parse_score(s) for s in opts.min_score)
    if opts.reject_grayscale:
        flags["reject_grayscale"] = True
    if opts.no_crop_tests:
        flags["crop_tests"] = False
    return config_from_mapping(flags, cfg, where="flags")


def _parse_score(s: str) -> tuple:
    name, sep, val = s.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name.strip(), float(val)
    except ValueError:
        raise UsageError(f"--min-score: expected DETECTOR=NUMBER (e.g. cnn=0.5), got {s!r}") from None


THRESHOLDS = tuple(f.name for f in dataclasses.fields(FilterConfig) if f.metadata.get("threshold"))
# each threshold as an option: None takes the TOML file's value, else FilterConfig's
Thresholds = overridable(FilterConfig, THRESHOLDS, "Thresholds", group="thresholds")


@dataclass(frozen=True)
class FilterOptions(Thresholds):
    """Options of the filter stage (names of its CLI flags): the thresholds (`Thresholds`,
    made from FilterConfig) and these."""
    source_images: Optional[str] = opt(None, "where source_path resolves", metavar="DIR",
                                       shown="--work")
    faces: Optional[str] = opt(None, "input face list", metavar="JSON",
                               shown="DIR/faces.json")
    config: Optional[str] = opt(None, "thresholds from a TOML file ([filter])",
                                metavar="TOML")
    explain: Optional[str] = opt(None, "print every test of one object; write nothing",
                                 metavar="OBJ_ID")
    skip_bad: bool = skip_bad_opt("reject malformed records (bad_record), go on")
    min_score: Optional[tuple] = opt(None, "min score of a detector (repeatable)",
                                     metavar="DETECTOR=VALUE", repeat=True, group="thresholds",
                                     shown="cnn=0.3, hog=0.0")
    reject_grayscale: bool = opt(False, "reject grayscale faces (else tag them)",
                                 group="thresholds")
    no_crop_tests: bool = opt(False, "skip the tests that decode images", group="thresholds")
    overrides: Optional[str] = opt(None, "a person's keep/reject decisions (review page)",
                                   metavar="JSON")
    workers: int = workers_opt()
    force: bool = force_opt()
    quiet: bool = quiet_opt()

    @staticmethod
    def validate_values(values: dict, where: str) -> None:
        """min_score: DETECTOR=NUMBER strings (infra.stage.check_values calls this)."""
        for s in values.get("min_score") or ():
            if not isinstance(s, str):
                raise UsageError(f"{where}: min_score takes DETECTOR=NUMBER strings (the "
                                 f"API also a dict such as {{'cnn': 0.8}}), got {s!r}")
            _parse_score(s)
