"""filter's thresholds: FilterConfig (every default), the TOML file and the flags
(FilterOptions), overlaid in that order by `build_config`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from ...core.errors import UsageError
from ...infra.stage import default_workers

DEFAULT_MIN_SCORE = {"cnn": 0.3, "hog": 0.0}


@dataclass
class FilterConfig:
    """Thresholds of every test. Units are in each field's comment."""
    min_size: float = 1024.0             # qsize, source pixels (the output size: no upsampling)
    min_score: dict = field(default_factory=lambda: dict(DEFAULT_MIN_SCORE))  # per detector
    max_roll: float = 45.0               # degrees
    min_mouth_drop: float = 0.4          # eye-centre distances
    eye_jaw_min: float = 0.4             # outer-eye distance / jaw width
    eye_jaw_max: float = 0.95
    max_yaw: float = 0.35                # |d_l - d_r| / (d_l + d_r)
    max_landmark_outside: float = 0.1    # inter-ocular distances
    max_padding: float = 0.5             # share of the crop square's area
    max_overlap: float = 0.3             # rect IoU
    max_hash_distance: int = 6           # bits of 64; negative disables the test
    min_sharpness: Optional[float] = None  # variance of Laplacian; None: tag only
    grayscale_chroma: float = 0.02       # mean (max - min) channel spread / 255
    reject_grayscale: bool = False
    crop_tests: bool = True              # decode images for sharpness/grayscale/hash
    crop_size: int = 128                 # side of the measurement crop, pixels

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(FilterConfig)}


def config_from_mapping(values: dict, base: Optional[FilterConfig] = None,
                        where: str = "config") -> FilterConfig:
    """Overlay `values` (TOML table or flags) on `base`, checking names and types."""
    cfg = dataclasses.replace(base or FilterConfig())
    changes: dict[str, Any] = {}
    for k, v in values.items():
        if k not in CONFIG_FIELDS:
            raise UsageError(f"{where}: unknown setting {k!r} (known: {', '.join(CONFIG_FIELDS)})")
        default = getattr(FilterConfig(), k)
        if k == "min_score":
            if not isinstance(v, dict) or not all(_is_number(x) for x in v.values()):
                raise UsageError(f"{where}: min_score must map detector names to numbers")
            merged = dict(cfg.min_score)
            merged.update({str(n): float(x) for n, x in v.items()})
            changes[k] = merged
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise UsageError(f"{where}: {k} must be true or false, got {v!r}")
            changes[k] = v
        elif k == "min_sharpness" and v is None:
            changes[k] = None
        elif isinstance(default, int) and not isinstance(default, bool) and k != "min_size":
            if not isinstance(v, int) or isinstance(v, bool):
                raise UsageError(f"{where}: {k} must be a whole number, got {v!r}")
            changes[k] = v
        else:
            if not _is_number(v):
                raise UsageError(f"{where}: {k} must be a number, got {v!r}")
            changes[k] = float(v)
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.crop_size < 16:
        raise UsageError(f"{where}: crop_size must be at least 16")
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
    flags: dict[str, Any] = {}
    for name in ("min_size", "max_roll", "min_mouth_drop", "eye_jaw_min", "eye_jaw_max", "max_yaw",
                 "max_landmark_outside", "max_padding", "max_overlap", "max_hash_distance",
                 "min_sharpness", "grayscale_chroma", "crop_size"):
        v = getattr(opts, name)
        if v is not None:
            flags[name] = v
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


@dataclass(frozen=True)
class FilterOptions:
    """Options of the filter stage (names of its CLI flags). A threshold left None takes
    the TOML file's value, else FilterConfig's default."""
    source_images: Optional[str] = None
    faces: Optional[str] = None
    config: Optional[str] = None
    explain: Optional[str] = None
    skip_bad: bool = False
    min_size: Optional[float] = None
    min_score: Optional[tuple] = None  # ("cnn=0.8", ...)
    max_roll: Optional[float] = None
    min_mouth_drop: Optional[float] = None
    eye_jaw_min: Optional[float] = None
    eye_jaw_max: Optional[float] = None
    max_yaw: Optional[float] = None
    max_landmark_outside: Optional[float] = None
    max_padding: Optional[float] = None
    max_overlap: Optional[float] = None
    max_hash_distance: Optional[int] = None
    min_sharpness: Optional[float] = None
    grayscale_chroma: Optional[float] = None
    reject_grayscale: bool = False
    crop_size: Optional[int] = None
    no_crop_tests: bool = False
    overrides: Optional[str] = None    # a person's decisions: replaces DIR/overrides.json
    workers: int = field(default_factory=default_workers)
    force: bool = False
    quiet: bool = False

    @staticmethod
    def validate_values(values: dict, where: str) -> None:
        """min_score: DETECTOR=NUMBER strings (infra.stage.check_values calls this)."""
        for s in values.get("min_score") or ():
            if not isinstance(s, str):
                raise UsageError(f"{where}: min_score takes DETECTOR=NUMBER strings (the "
                                 f"API also a dict such as {{'cnn': 0.8}}), got {s!r}")
            _parse_score(s)
