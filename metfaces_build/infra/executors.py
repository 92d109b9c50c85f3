"""Executors and progress: run one function over many tasks, serially or in a pool.

Results come back in task order whatever the worker count, so a stage that writes them
in the order received gives identical output for any `--workers N`.
"""
from __future__ import annotations

import multiprocessing as mp
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable, Iterator, Optional


from ..core.errors import UsageError
from .stage import default_workers  # noqa: F401 - re-exported: one definition


class LocalExecutor:
    """Serial (workers=1) or a process pool; `imap` yields results in task order."""

    def __init__(self, workers: int = 1, initializer: Optional[Callable] = None,
                 initargs: tuple = ()):
        self.workers = max(1, int(workers))
        self.initializer = initializer
        self.initargs = initargs

    def imap(self, fn: Callable, tasks: Iterable, ordered: bool = True) -> Iterator[Any]:
        if self.workers == 1:
            if self.initializer:
                self.initializer(*self.initargs)
            for t in tasks:
                yield fn(t)
            return
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(self.workers, initializer=self.initializer, initargs=self.initargs,
                      maxtasksperchild=200) as pool:
            it = pool.imap(fn, tasks, chunksize=1) if ordered else \
                pool.imap_unordered(fn, tasks, chunksize=1)
            yield from it


def make_executor(kind: str = "local", workers: int = 1, scheduler: Optional[str] = None,
                  initializer: Optional[Callable] = None, initargs: tuple = ()):
    """`local` (process pool) or `dask` (a distributed cluster at `scheduler`)."""
    if kind == "local":
        if scheduler:
            raise UsageError("--scheduler goes with --executor dask")
        return LocalExecutor(workers, initializer, initargs)
    if kind == "dask":
        from .dask_executor import DaskExecutor  # optional extra
        return DaskExecutor(scheduler, initializer, initargs)
    raise UsageError(f"unknown executor {kind!r} (choose local or dask)")


class Progress:
    """Count, rate and ETA on stderr; silent with quiet=True. On a terminal a tqdm bar;
    otherwise (a log file, a pipe, CI) a plain line every `LOG_INTERVAL` seconds and one
    at the end, no carriage returns. Nothing at all until the first item is done, so a
    rerun with nothing to do prints no empty bar."""

    LOG_INTERVAL = 30.0

    def __init__(self, total: Optional[int], desc: str, quiet: bool = False, unit: str = "it",
                 stream=None, clock: Callable[[], float] = None):
        self.quiet = quiet
        self.total, self.desc, self.unit = total, desc, unit
        self._stream = stream
        self._clock = clock or time.monotonic
        self._bar = None
        self._done = 0
        self._postfix: dict = {}
        self._t0 = self._last = None

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, n: int = 1, **postfix) -> None:
        if self.quiet:
            return
        now = self._clock()
        if self._t0 is None:
            self._t0 = self._last = now
            if self._tty():
                from tqdm import tqdm
                self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit,
                                 file=self.stream, mininterval=0.5, dynamic_ncols=True,
                                 leave=True)
        self._done += n
        self._postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
        elif now - self._last >= self.LOG_INTERVAL:
            self._last = now
            self._line()

    def _line(self) -> None:
        elapsed = self._clock() - self._t0
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self._done / self.total:.0f}%)" if self.total else ""
        rate = f", {self._done / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        extra = "".join(f", {k}={v}" for k, v in self._postfix.items())
        print(f"{self.desc}: {self._done}{of} {self.unit}{pct} in {elapsed:.0f} s{rate}{extra}",
              file=self.stream, flush=True)

    def write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg, file=self.stream)
        elif not self.quiet:
            print(msg, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._t0 is not None and not self.quiet:
            self._line()
            self._t0 = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def library_versions() -> dict:
    """Versions that decide pixels (resampling, filters): recorded with every output."""
    import numpy  # deferred: importing a stage must stay cheap (tests/test_models.py)
    import PIL
    try:  # without importing scipy (0.4 s) where a stage does not use it
        scipy_version = version("scipy")
    except PackageNotFoundError:
        import scipy  # deferred: 0.4 s, only when its metadata is missing
        scipy_version = scipy.__version__
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy_version, "Pillow": PIL.__version__}


def count_items(counts: dict) -> str:
    """`10 ok, 2 missing_source`: ok first, then by count (empty string for no counts)."""
    items = sorted(counts.items(), key=lambda kv: (kv[0] != "ok", -kv[1], kv[0]))
    return ", ".join(f"{v} {k}" for k, v in items)


def summarize(counts: dict, title: str) -> str:
    """One line: `title: 10 ok, 2 missing_source` (ok first, then by count)."""
    return f"{title}: {count_items(counts) or 'nothing to do'}"
