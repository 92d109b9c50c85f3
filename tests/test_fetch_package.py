"""The fetch package's shape (issue 23): modules by role under 600 lines, functions of at
most 60 lines (met/client.py too), imports at module level except the heavy libraries
deferred on purpose, and the names other modules and tests use still exported."""
import ast
import dataclasses
import importlib
from pathlib import Path

import metfaces_build

PACKAGE = Path(metfaces_build.__file__).parent
FETCH = PACKAGE / "stages" / "fetch"
MINE = sorted(FETCH.glob("*.py")) + [PACKAGE / "met" / "client.py"]
# deferred on purpose (each with a comment saying so): slow to import, and the CLI and
# `--help` must start without them
HEAVY = {"numpy", "requests", "requests.adapters", "requests.models", "tenacity", "urllib3",
         "urllib3.util"}


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_fetch_is_a_package_of_small_modules():
    names = {p.stem for p in FETCH.glob("*.py")}
    assert {"__init__", "options", "select", "objects", "from_json", "dry_run", "journal",
            "stage"} <= names
    assert not (PACKAGE / "stages" / "fetch.py").exists()
    long = {p.name: n for p in MINE if (n := len(p.read_text(encoding="utf-8").splitlines())) >= 600
            and p.parent == FETCH}
    assert not long, long


def test_no_function_over_60_lines():
    long = [f"{p.name}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for p in MINE for f in _functions(p) if f.end_lineno - f.lineno + 1 > 60]
    assert not long, long


def test_imports_inside_functions_are_only_the_heavy_ones():
    inner = []
    for p in MINE:
        for f in _functions(p):
            for node in ast.walk(f):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = ["." * node.level + (node.module or "")]
                else:
                    continue
                inner += [f"{p.name}:{node.lineno} {m}" for m in mods if m not in HEAVY]
    assert not inner, inner


def test_the_package_exports_what_its_users_import():
    fetch = importlib.import_module("metfaces_build.stages.fetch")
    assert callable(fetch.fetch) and dataclasses.is_dataclass(fetch.FetchOptions)
    for name in fetch.__all__:
        assert hasattr(fetch, name), name
    assert {"STATUSES", "JournalIndex", "compact_journal", "dedupe_ids", "fetch_object",
            "UpdateJournal", "run_pool", "check_options", "FetchSummary"} <= set(fetch.__all__)
