"""Shared test fixtures.

`../shared` (read-only design data: vectors, case generators, sample photos) is used in
place when it exists, and tests that need it skip cleanly when it does not, except where
$METFACES_REQUIRE_SHARED=1 (CI sets it): there a missing ../shared fails the test, so the
exact-reproduction claims can never pass by being skipped. Import helpers from here as
`from conftest import ...` (pytest puts tests/ on sys.path), never `tests.conftest`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("METFACES_SHARED", REPO.parent / "shared"))
REQUIRE_SHARED = "METFACES_REQUIRE_SHARED"


def skip_unless_required(reason: str, env: str) -> None:
    """Skip with `reason`, or fail when $`env` is 1: CI requires what the README claims."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason} (${env}=1 requires it)", pytrace=False)
    pytest.skip(reason)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is absent (fail under CI)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        skip_unless_required(f"{p} not available (../shared is absent)", REQUIRE_SHARED)
    return p


@pytest.fixture(autouse=True, scope="session")
def _pace_cache(tmp_path_factory):
    """Learned paces (met/pacing.py) go to a folder of this session, never ~/.cache
    (session scope: module fixtures that fetch come first)."""
    from metfaces_build.core.jit import cache_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NUMBA_CACHE_DIR", cache_dir())  # compiled kernels: the user's cache, kept
        mp.setenv("METFACES_CACHE_DIR", str(tmp_path_factory.mktemp("pace-cache")))
        yield


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from metfaces_build.app.cli import main

    def run(*argv):
        rc = main([str(a) for a in argv])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def run_cli_subprocess(*argv, timeout=600, **kw) -> subprocess.CompletedProcess:
    """Run `python -m metfaces_build ...` as a separate process (kill tests, real exit codes)."""
    return subprocess.run([sys.executable, "-m", "metfaces_build", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, **kw)


def _reads_shared(item) -> bool:
    """Whether a test can behave differently without ../shared: it takes the `shared`
    fixture, or its module names SHARED / shared_path (fallback photos, skips)."""
    if "shared" in getattr(item, "fixturenames", ()):
        return True
    module = getattr(item, "module", None)
    try:
        source = Path(module.__file__).read_text() if module is not None else ""
    except OSError:
        return False
    return "SHARED" in source or "shared_path" in source


def pytest_configure(config):
    config.addinivalue_line("markers", "reads_shared: can behave differently without ../shared "
                            "(marked automatically; CI's run without ../shared selects these)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _reads_shared(item):
            item.add_marker(pytest.mark.reads_shared)
