"""Find, verify and load dlib's model files.

Two files matter: the 68-point landmark predictor and the MMOD CNN face detector. Each is
looked for, in order, in `--models-dir`, `$METFACES_MODELS`, the repository's `models/`
folder and the installed `face_recognition_models` package; the first copy found is used
and must match the sha256 in `models/MANIFEST.json`. Hashing 100 MB takes a while, so a
verified (path, size, mtime) is remembered in a small cache file. Models are loaded lazily,
once per process (`load_models`), never at import.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.errors import UsageError
from .files import atomic_write_json, file_digest, read_json_or_none

PREDICTOR = "shape_predictor_68_face_landmarks.dat"
CNN = "mmod_human_face_detector.dat"
ENV_MODELS = "METFACES_MODELS"
MANIFEST_NAME = "MANIFEST.json"
HOW_TO_GET = ("get it with `pip install face_recognition_models`, or download it from dlib's "
              "model files (dlib.net/files, .bz2: decompress it) into a folder given by "
              "--models-dir or $METFACES_MODELS (or the repository's models/ folder)")

# Mirror of models/MANIFEST.json for installs without the repository (a test keeps them equal).
BUILTIN_MANIFEST = {
    PREDICTOR: {"size": 99693937,
                "sha256": "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"},
    CNN: {"size": 729940,
          "sha256": "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6"},
}


@dataclass(frozen=True)
class ModelPaths:
    """Verified model files; `cnn` is None when the detector does not need it."""
    predictor: Path
    cnn: Optional[Path] = None


@dataclass(frozen=True)
class SearchPlace:
    """One folder we look in, with why (for error messages)."""
    folder: Path
    why: str


def repo_models_dir() -> Optional[Path]:
    """The source checkout's `models/` (where a user may drop .dat files), or None for an
    installed copy: there the package's grandparent is site-packages, not our repository."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "models" / MANIFEST_NAME).is_file():
        return root / "models"
    return None


def load_manifest() -> dict:
    """name -> {size, sha256}: the repo's MANIFEST.json when present, else the built-in copy."""
    repo = repo_models_dir()
    data = read_json_or_none(repo / MANIFEST_NAME) if repo is not None else None
    if not isinstance(data, dict):
        return dict(BUILTIN_MANIFEST)
    return {f["name"]: {"size": int(f["size"]), "sha256": f["sha256"]} for f in data["files"]}


def search_places(models_dir: Optional[str | os.PathLike] = None) -> list:
    """The folders to look in, in order. A given --models-dir must exist."""
    places = []
    if models_dir is not None:
        if not Path(models_dir).is_dir():
            raise UsageError(f"--models-dir {models_dir}: no such folder")
        places.append(SearchPlace(Path(models_dir), "--models-dir"))
    env = os.environ.get(ENV_MODELS)
    if env:
        places.append(SearchPlace(Path(env), f"${ENV_MODELS}"))
    repo = repo_models_dir()
    if repo is not None:
        places.append(SearchPlace(repo, "repository models/"))
    pkg = _package_models_dir()
    if pkg is not None:
        places.append(SearchPlace(pkg, "face_recognition_models package"))
    return places


def _package_models_dir() -> Optional[Path]:
    """The models folder of face_recognition_models, found without importing it
    (its import pulls in pkg_resources, slow and deprecated)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def find_model(name: str, models_dir: Optional[str | os.PathLike] = None,
               manifest: Optional[dict] = None) -> Path:
    """Path of the first verified copy of `name`, or a UsageError saying where we looked."""
    manifest = manifest if manifest is not None else load_manifest()
    places = search_places(models_dir)
    for place in places:
        path = place.folder / name
        if path.is_file():
            verify_model(path, manifest[name])
            return path
    looked = "\n".join(f"  {p.folder}  ({p.why})" for p in places)
    raise UsageError(f"model file {name} not found; looked in:\n{looked}\n{HOW_TO_GET}")


def verify_model(path: Path, expected: dict) -> None:
    """Check size and sha256 against the manifest (sha256 cached per path+size+mtime)."""
    st = path.stat()
    if st.st_size != expected["size"]:
        raise UsageError(f"model file {path} has {st.st_size} bytes, expected "
                         f"{expected['size']}: damaged or a different model; {HOW_TO_GET}")
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = _read_cache()
    digest = cache.get(key)
    if digest is None:
        digest = file_digest(path, "sha256")
        cache[key] = digest
        _write_cache(cache)
    if digest != expected["sha256"]:
        raise UsageError(f"model file {path} has sha256 {digest}, expected "
                         f"{expected['sha256']}: damaged or a different model; {HOW_TO_GET}")


def cache_path() -> Path:
    """`$XDG_CACHE_HOME/metfaces-build/model-sha256.json` (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metfaces-build" / "model-sha256.json"


def _read_cache() -> dict:
    data = read_json_or_none(cache_path())
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict) -> None:
    """Best effort: an unwritable cache only costs a re-hash next time."""
    try:
        atomic_write_json(cache_path(), cache)
    except OSError:
        pass


def resolve_models(models_dir: Optional[str | os.PathLike] = None,
                   need_cnn: bool = False) -> ModelPaths:
    """Find and verify what a detector needs (the predictor always, the CNN on request)."""
    manifest = load_manifest()
    predictor = find_model(PREDICTOR, models_dir, manifest)
    cnn = find_model(CNN, models_dir, manifest) if need_cnn else None
    return ModelPaths(predictor=predictor, cnn=cnn)


@dataclass
class Models:
    """dlib objects of one process: HOG detector, landmark predictor, CNN (or None)."""
    hog: object
    predictor: object
    cnn: object = None


_LOADED: dict = {}


def load_models(paths: ModelPaths) -> Models:
    """Load (once per process; later calls reuse) the dlib objects for `paths`."""
    key = (str(paths.predictor), str(paths.cnn))
    models = _LOADED.get(key)
    if models is None:
        import dlib  # deferred: 0.3 s and a big library, only where a model is loaded
        cnn = dlib.cnn_face_detection_model_v1(str(paths.cnn)) if paths.cnn else None
        models = Models(hog=dlib.get_frontal_face_detector(),
                        predictor=dlib.shape_predictor(str(paths.predictor)), cnn=cnn)
        _LOADED[key] = models
    return models
