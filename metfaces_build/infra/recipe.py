"""The work directory's recipe (recipe.toml) and its stamps: how it was built.

The recipe is a small TOML file a person may read and edit: one table per stage
(`[fetch]`, `[detect]`, `[filter]`, `[align]`) holding the options that decide that
stage's output. The first `run` or `fetch` writes it; later commands on the directory
read their options from it, and flags given later change it (saying what changed), so
`run --work DIR` alone rebuilds exactly what the recipe says and every single command
agrees with `run`. What goes into each table is the stages' knowledge
(`stages/recipe.py`); this module only reads, writes and compares the file.

Stamps (`.stamps.json`, not for editing) remember what some outputs were made from
(the fetch table in force when fetch last finished; the input files of the report and
the review page), so `status` can say what is stale without redoing any work.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.errors import UsageError
from .files import atomic_write_json, atomic_write_text, file_digest, read_json_or_none

RECIPE_VERSION = 1
SECTIONS = ("fetch", "detect", "filter", "align")
HEADER = """\
# metfaces-build recipe: how this work directory is built (see docs/recipe.md).
# `metfaces-build run --work DIR` alone brings every output up to date with it, and
# every single command on DIR (fetch, detect, filter, align, ...) reads its options
# here. Edit a value and rerun, or give flags: they change this file and say so.
# `metfaces-build status --work DIR` says what is stale and why.
"""


@dataclass
class Recipe:
    """The tables of recipe.toml: {section: {option: value}} (TOML has no null: an
    option that is absent takes the stage's default)."""
    sections: dict = field(default_factory=dict)

    def section(self, name: str) -> dict:
        return dict(self.sections.get(name) or {})

    def digest(self, name: str) -> str:
        """A stable fingerprint of one table (to tell whether it changed since a stamp)."""
        blob = json.dumps(self.section(name), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_recipe(path: Path) -> Optional[Recipe]:
    """The recipe at `path`, None when there is none; a malformed one is a UsageError
    naming the file and the line (a person may have edited it)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, expected the work directory's recipe file") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    toml = _tomllib()
    try:
        data = toml.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except toml.TOMLDecodeError as e:
        raise UsageError(f"{path} is not valid TOML: {e} (fix it, or delete it and give "
                         "the options again)") from None
    version = data.pop("version", RECIPE_VERSION)
    if version != RECIPE_VERSION:
        raise UsageError(f"{path}: recipe version {version!r}, this tool reads version "
                         f"{RECIPE_VERSION}")
    unknown = sorted(k for k in data if k not in SECTIONS)
    if unknown:
        raise UsageError(f"{path}: unknown table(s) {', '.join(unknown)} (known: "
                         f"{', '.join(SECTIONS)})")
    bad = [k for k, v in data.items() if not isinstance(v, dict)]
    if bad:
        raise UsageError(f"{path}: {', '.join(bad)} must be a table ([{bad[0]}])")
    return Recipe({k: data[k] for k in SECTIONS if k in data})


def save_recipe(path: Path, recipe: Recipe) -> bool:
    """Write the recipe atomically; False (nothing written) when the file already says
    exactly this."""
    text = render_recipe(recipe)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return True


def render_recipe(recipe: Recipe) -> str:
    lines = [HEADER, f"version = {RECIPE_VERSION}"]
    for name in SECTIONS:
        table = recipe.sections.get(name)
        if table is None:
            continue
        lines += ["", f"[{name}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def changes(old: dict, new: dict, section: str) -> list:
    """"fetch.rate 10.0 -> 2.0" lines for every option that differs."""
    out = []
    for k in list(old) + [k for k in new if k not in old]:
        a, b = old.get(k), new.get(k)
        if a != b:
            out.append(f"{section}.{k} {_show(a)} -> {_show(b)}")
    return out


def _show(v: Any) -> str:
    return "(default)" if v is None else _value(v)


# ---- a TOML writer for the values a recipe holds ---------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON's string escapes are TOML basic-string escapes; a lone surrogate cannot
        # be written as UTF-8, so it becomes U+FFFD (as everywhere records enter)
        return json.dumps(_SURROGATE.sub("\ufffd", v), ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} into the recipe")


def _tomllib():
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - 3.9/3.10 install tomli (pyproject)
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib


# ---- stamps: what an output was made from ----------------------------------------------

def file_fingerprint(path: Path) -> Optional[list]:
    """[size, mtime_ns, sha256] of a file (None when absent): cheap to re-check, since the
    sha256 is computed again only when size or mtime differ."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return [st.st_size, st.st_mtime_ns, file_digest(path, "sha256")]


def same_file(fp: Any, path: Path) -> bool:
    """Does `path` still hold what fingerprint `fp` describes?"""
    try:
        st = os.stat(path)
    except OSError:
        return fp is None
    if not (isinstance(fp, list) and len(fp) == 3) or not os.path.isfile(path):
        return False
    if [st.st_size, st.st_mtime_ns] == fp[:2]:
        return True
    return st.st_size == fp[0] and file_digest(path, "sha256") == fp[2]


def read_stamps(path: Path) -> dict:
    data = read_json_or_none(path)
    return data if isinstance(data, dict) else {}


def write_stamp(path: Path, stage: str, stamp: dict) -> None:
    """Record what `stage`'s output was made from (atomic; other stages' stamps kept)."""
    stamps = read_stamps(path)
    if stamps.get(stage) == stamp:
        return
    stamps[stage] = stamp
    atomic_write_json(path, stamps)


def inputs_stamp(root: Path, names: tuple) -> dict:
    """{name: fingerprint} of input files under `root`."""
    return {n: file_fingerprint(root / n) for n in names}


def changed_inputs(root: Path, recorded: Any, names: tuple) -> list:
    """The input files that differ from a recorded `inputs_stamp` (all of them when there
    is no stamp)."""
    if not isinstance(recorded, dict):
        return list(names)
    return [n for n in names if not same_file(recorded.get(n), root / n)]
