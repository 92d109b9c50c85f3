"""Shared test fixtures.

`../shared` (read-only design data: vectors, case generators, sample photos) is used in
place when it exists, and tests that need it skip cleanly when it does not.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("METFACES_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not available (../shared is absent)")
    return p


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
