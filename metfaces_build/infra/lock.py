"""One writer per directory: a lock file created with O_EXCL, naming its holder.

Two runs writing one work directory (or one align output folder) at once lose records:
each compacts or rewrites its journal at the end from what it alone saw. So a stage takes
`with work_lock(path, command="fetch"):` before it writes anything; a second run fails at
once with a UsageError naming the holder (pid, host, command, start time).

A run killed with SIGKILL leaves its lock behind. It is *stale* when its pid is dead on
this host (or alive but started at another time: the pid was reused), and the next run
takes it over. A lock from another host cannot be checked from here: the message says
which file to delete once you are sure that run is gone. Taking over is itself guarded
by a short-lived `.break` file, so two runs finding one stale lock do not both win.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..core.errors import UsageError

LOCK_NAME = ".metfaces-build.lock"
BREAK_STALE_S = 10.0  # a .break file older than this was left by a killed breaker


@dataclass(frozen=True)
class LockHolder:
    """What the lock file says about the run holding it."""
    pid: int
    host: str
    command: str
    started: str          # UTC, ISO 8601, for people
    proc_start: str = ""  # /proc/PID/stat start time (Linux), to detect a reused pid

    def describe(self) -> str:
        return f"{self.command or 'a run'} (pid {self.pid} on {self.host}, started {self.started})"


@contextlib.contextmanager
def work_lock(path: str | os.PathLike, command: str = "") -> Iterator[LockHolder]:
    """Hold `path`/.metfaces-build.lock for the duration of the block (creating `path`).

    Raises UsageError when another live run holds it.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot use {folder}: {e}") from None
    lock = folder / LOCK_NAME
    me = LockHolder(os.getpid(), socket.gethostname(), command,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), _proc_start(os.getpid()))
    _acquire(lock, me)
    try:
        yield me
    finally:
        # only remove the lock if it is still ours (never someone else's)
        if _read_holder(lock) == me:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)


def locked(command: str):
    """Decorator: run the function holding the lock of the directory its first argument
    names (a path, or anything with a `.path`, e.g. `Work`); the one way a stage says
    "one writer at a time" (see `work_lock`)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(where, *args, **kwargs):
            with work_lock(getattr(where, "path", where), command=command):
                return fn(where, *args, **kwargs)
        return inner
    return wrap


def _acquire(lock: Path, me: LockHolder) -> None:
    data = (json.dumps(asdict(me)) + "\n").encode()
    for _ in range(50):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        except OSError as e:
            raise UsageError(f"cannot create lock file {lock}: {e}") from None
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return
        holder = _read_holder(lock)
        if holder is None:
            # being written right now, or garbage left by a crash mid-write
            if _age(lock) < 2.0:
                time.sleep(0.05)
                continue
        elif not _is_stale(holder):
            raise UsageError(
                f"{lock.parent} is in use by {holder.describe()}: one writer per directory. "
                f"Wait for it to finish{'' if holder.host == me.host else ', or, if that run is gone, delete ' + str(lock)}.")
        _break(lock, holder)
    raise UsageError(f"could not take the lock {lock} (contended); try again")


def _break(lock: Path, judged: Optional[LockHolder]) -> None:
    """Remove a stale lock, unless someone replaced it since we judged it stale."""
    guard = lock.with_name(lock.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age(guard) > BREAK_STALE_S:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(guard)
        else:
            time.sleep(0.05)
        return
    os.close(fd)
    try:
        if _read_holder(lock) == judged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(guard)


def _read_holder(lock: Path) -> Optional[LockHolder]:
    try:
        d = json.loads(lock.read_bytes())
        return LockHolder(int(d["pid"]), str(d["host"]), str(d.get("command", "")),
                          str(d.get("started", "")), str(d.get("proc_start", "")))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _is_stale(h: LockHolder) -> bool:
    if h.host != socket.gethostname():
        return False  # cannot see that machine's processes: assume alive
    if h.pid <= 0:
        return True
    try:
        os.kill(h.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    except OverflowError:
        return True
    now = _proc_start(h.pid)
    return bool(h.proc_start and now and now != h.proc_start)


def _proc_start(pid: int) -> str:
    """The process start time in clock ticks since boot (Linux), '' elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return 0.0
