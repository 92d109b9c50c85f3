"""File I/O at the edges: atomic writes, JSON/JSONL, checksums and safe paths.

Every file a stage produces goes through `atomic_write*`: written to a temp file in the
same directory, flushed, fsynced and renamed, so a crash or SIGKILL never leaves a
partial file under its final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, IO, Iterable, Iterator

from ..core.errors import UsageError
from ..core.paths import check_relative_path  # noqa: F401 - re-exported
from ..core.records import clean_text, scrub

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside `path`; on clean exit fsync and rename it over `path`, unless
    `path` already holds exactly those bytes (then it is left untouched, mtime and all, so
    a rerun with nothing to do rewrites no file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; final files get normal modes
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if _same_bytes(tmp, path):
            os.unlink(tmp)
            return
        try:
            os.replace(tmp, path)
        except IsADirectoryError:  # a directory in its place: never deleted by us
            raise UsageError(f"cannot write {path}: a directory is in its place") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _same_bytes(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Do two files hold the same bytes (False when either cannot be read)?"""
    try:
        if os.path.getsize(a) != os.path.getsize(b) or not os.path.isfile(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def default_file_mode() -> int:
    """The mode `open()` would give a new file under the process umask (0644 under 022):
    temp files from mkstemp are 0600, and renaming must not make outputs private."""
    return 0o666 & ~_umask()


def _umask() -> int:
    if not _UMASK:
        old = os.umask(0o022)
        os.umask(old)
        _UMASK.append(old)
    return _UMASK[0]


_UMASK: list = []


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> bool:
    """Write `data` atomically; False (the file left untouched, mtime and all) when it
    already holds exactly these bytes, so a rerun with nothing to do rewrites no file."""
    if _holds(path, data):
        return False
    with atomic_open(path, "wb") as f:
        f.write(data)
    return True


def _holds(path: str | os.PathLike, data: bytes) -> bool:
    try:
        if os.path.getsize(path) != len(data) or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except OSError:
        return False


def atomic_write_text(path: str | os.PathLike, text: str) -> bool:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> bool:
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temp files a killed run left behind in `folder` (not recursive)."""
    n = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(TMP_PREFIX) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    n += 1
    return n


def loads(data: bytes | str) -> Any:
    """Parse JSON as we trust it, from any source (files or the network).

    Only ValueError escapes (nesting deeper than Python's recursion limit would raise
    RecursionError, a 5000-digit number ValueError); NaN and +-Infinity, which are not
    JSON, become null instead of floats that would turn into the strings "nan"/"inf", and
    so do numbers too large for a float (1e999). Lone surrogates ("\\ud800", which UTF-8
    cannot encode, so every later write would fail) become U+FFFD.
    Invalid UTF-8 is a ValueError here; network answers are decoded with replacement
    before they get here.
    """
    try:
        obj = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # a lone surrogate can only come from a "\\ud800" escape: scan only when one may be there
    pattern = _SURROGATE_ESCAPE if isinstance(data, str) else _SURROGATE_ESCAPE_B
    if pattern.search(data):
        obj = scrub(obj)
    return obj


_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")
_SURROGATE_ESCAPE_B = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _no_constant(_name: str) -> None:
    return None


def _finite_float(text: str) -> float | None:
    """1e999 overflows to inf: like Infinity, it is read as null."""
    v = float(text)
    return v if v - v == 0 else None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing or malformed file into a clear UsageError."""
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} is a directory, expected a file: {path}") from None
    except ValueError as e:  # incl. UnicodeDecodeError, JSONDecodeError, too deep
        raise UsageError(f"{what} {path} is not valid JSON: {e}") from None


def duplicate_keys(path: str | os.PathLike) -> list:
    """Keys that appear twice in one JSON object of the file at `path` (JSON lets the last
    win silently; a hand-edited decision file should say so), at most 10; [] when the file
    cannot be read."""
    dups: list = []

    def pairs(items):
        seen = set()
        for k, _ in items:
            if k in seen and k not in dups and len(dups) < 10:
                dups.append(k)
            seen.add(k)
        return dict(items)
    try:
        with open(path, "rb") as f:
            json.loads(f.read(), object_pairs_hook=pairs, parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError):
        return []
    return [clean_text(k, 80)[0] for k in dups]


def read_json_or_none(path: str | os.PathLike) -> Any:
    """A stage's own earlier output, or None when it is missing or unreadable (then the
    caller redoes or leaves out what depended on it)."""
    try:
        with open(path, "rb") as f:
            return loads(f.read())
    except (OSError, ValueError):
        return None


class JsonlAppender:
    """Append-only JSONL journal: one complete line per record, flushed per write.

    A kill can at worst leave a truncated last line, which `read_jsonl` skips.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._f = open(self.path, "ab")
        # a previous run killed mid-line: start on a fresh line
        if self._f.tell() > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._f.write(b"\n")

    def write(self, obj: Any) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n")
        self._f.flush()
        if self._fsync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the records of a JSONL file, skipping blank and truncated/garbled lines."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as e:  # a directory in its place, no permission
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = loads(line)
            except ValueError:  # truncated, garbled, not UTF-8, too deep
                continue
            if isinstance(obj, dict):
                yield obj


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Atomically (re)write a whole JSONL file; returns the number of rows."""
    n = 0
    with atomic_open(path, "wb") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")).encode("utf-8") + b"\n")
            n += 1
    return n


def file_digest(path: str | os.PathLike, algo: str = "md5", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def safe_join(root: str | os.PathLike, rel: str) -> Path:
    """Join `rel` under `root`, refusing anything that resolves outside `root`."""
    why = check_relative_path(rel)
    if why:
        raise ValueError(why)
    root_r = Path(root).resolve()
    full = (root_r / rel).resolve()
    if full != root_r and root_r not in full.parents:
        raise ValueError(f"path {rel!r} resolves outside {root}")
    return full


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Build a folder beside `path` (yielded) and swap it in on clean exit, so a killed or
    failed build never leaves a partial folder under the final name (only a `.tmp-dir-`
    one beside it, removed on error). An existing `path` is replaced only when it is empty
    or holds the file `marker` (an earlier output of the same tool): never someone's files."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a folder")
        if any(path.iterdir()) and not (path / marker).is_file():
            raise UsageError(f"--out {path} is a non-empty folder that is not an earlier "
                             "export; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "dir-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = path.parent / f"{TMP_PREFIX}old-{os.getpid()}-{path.name}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
