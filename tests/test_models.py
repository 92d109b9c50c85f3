"""Model files: search order, manifest checks, the sha256 cache, lazy loading."""
from __future__ import annotations

import json
from pathlib import Path
import os
import subprocess
import sys

import pytest

from metfaces_build.infra import models as M
from metfaces_build.core.errors import UsageError


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test gets its own hash cache (never the user's)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(M.ENV_MODELS, raising=False)


def package_file(name):
    folder = M._package_models_dir()
    if folder is None or not (folder / name).is_file():
        pytest.skip("face_recognition_models is not installed")
    return folder / name


def test_manifest_file_matches_builtin_copy():
    assert M.repo_models_dir() is not None  # tests run from the source checkout
    data = json.loads((M.repo_models_dir() / M.MANIFEST_NAME).read_text())
    assert {f["name"]: {"size": f["size"], "sha256": f["sha256"]} for f in data["files"]} \
        == M.BUILTIN_MANIFEST
    assert all(f["source"] for f in data["files"])


def test_resolves_and_verifies_package_files():
    paths = M.resolve_models(need_cnn=True)
    assert paths.predictor.name == M.PREDICTOR and paths.cnn.name == M.CNN
    assert M.resolve_models().cnn is None


def test_sha256_is_computed_once_then_cached(monkeypatch):
    src = package_file(M.CNN)
    M.find_model(M.CNN)
    cache = json.loads(M.cache_path().read_text())
    assert any(k.startswith(str(src.resolve())) for k in cache)
    monkeypatch.setattr(M, "file_digest", lambda *a: pytest.fail("hashed again"))
    M.find_model(M.CNN)


def test_models_dir_comes_first_then_env(tmp_path, monkeypatch):
    src = package_file(M.CNN)
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / M.CNN).symlink_to(src)
    monkeypatch.setenv(M.ENV_MODELS, str(b))
    assert M.find_model(M.CNN, models_dir=a) == a / M.CNN
    assert M.find_model(M.CNN) == b / M.CNN


def test_wrong_content_is_a_usage_error(tmp_path):
    (tmp_path / M.CNN).write_bytes(b"\0" * M.BUILTIN_MANIFEST[M.CNN]["size"])
    with pytest.raises(UsageError, match="sha256.*face_recognition_models"):
        M.find_model(M.CNN, models_dir=tmp_path)


def test_wrong_size_is_a_usage_error(tmp_path):
    (tmp_path / M.PREDICTOR).write_bytes(b"<html>not found</html>")
    with pytest.raises(UsageError, match="22 bytes"):
        M.find_model(M.PREDICTOR, models_dir=tmp_path)


def test_missing_everywhere_names_the_places(tmp_path, monkeypatch):
    (tmp_path / "repo-models").mkdir()
    monkeypatch.setattr(M, "repo_models_dir", lambda: tmp_path / "repo-models")
    monkeypatch.setattr(M, "_package_models_dir", lambda: None)
    monkeypatch.setenv(M.ENV_MODELS, str(tmp_path / "env"))
    with pytest.raises(UsageError) as e:
        M.find_model(M.PREDICTOR, models_dir=tmp_path)
    msg = str(e.value)
    for place in (str(tmp_path), "--models-dir", "$METFACES_MODELS", "repo-models",
                  "pip install face_recognition_models"):
        assert place in msg


def test_missing_models_dir_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such folder"):
        M.resolve_models(models_dir=tmp_path / "nope")


def test_load_models_once_per_process():
    paths = M.resolve_models()
    first = M.load_models(paths)
    assert M.load_models(paths) is first
    assert first.cnn is None and first.predictor is not None


def test_no_dlib_at_import():
    code = ("import sys, metfaces_build.stages.detect, metfaces_build.infra.models, metfaces_build.app.cli; "
            "print('dlib' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ), check=True).stdout
    assert out.split() == ["False", "False"]


def test_installed_copy_has_no_repo_models(tmp_path):
    """A non-editable install: the package's grandparent is site-packages, which holds no
    pyproject.toml, so no `models/` there is searched (it used to be)."""
    import shutil
    site = tmp_path / "site-packages"
    shutil.copytree(Path(M.__file__).parents[1], site / "metfaces_build",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "models").mkdir()
    (site / "models" / M.MANIFEST_NAME).write_text("{}")
    code = "import metfaces_build.infra.models as M; print(M.repo_models_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=site, check=True).stdout
    assert out.strip() == "None"
