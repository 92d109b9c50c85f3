"""numba, optional: each kernel compiled lazily, once per process (numba also caches the
machine code on disk), or None where numba is not installed, so the caller falls back to
its numpy/scipy/Pillow path. Every kernel here does the same float operations as that
fallback, so both give the same bits.

numba's own default writes its cache (`.nbi`/`.nbc`) beside the source, i.e. inside
site-packages; files left there by a non-editable install survive its uninstall and shadow
a later editable install. So the cache goes to the user's cache directory instead
(`cache_dir`), and where that is not writable the kernels are compiled without a disk
cache rather than falling back to the package folder."""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import Callable, Mapping, Optional


def cache_dir(env: Optional[Mapping[str, str]] = None) -> str:
    """Where numba's compiled kernels are cached: $NUMBA_CACHE_DIR if the user set it, else
    $METFACES_CACHE_DIR/numba, else the platform's user cache directory (platformdirs-style:
    $XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on
    Windows) + metfaces-build/numba. Never a folder inside the installed package."""
    env = os.environ if env is None else env
    if env.get("NUMBA_CACHE_DIR"):
        return env["NUMBA_CACHE_DIR"]
    if env.get("METFACES_CACHE_DIR"):
        return os.path.join(env["METFACES_CACHE_DIR"], "numba")
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "metfaces-build", "Cache", "numba")
    if sys.platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    else:
        base = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    return os.path.join(base, "metfaces-build", "numba")


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


@lru_cache(maxsize=None)
def compiled(fn: Callable) -> Optional[Callable]:
    """`fn` compiled in nopython mode with the GIL released, or None without numba."""
    try:
        import numba  # deferred: 0.5 s, and the numpy fallback must work without it
        from numba.core import config
    except ImportError:
        return None
    where = cache_dir()
    if not _writable(where):
        return numba.njit(cache=False, nogil=True)(fn)
    # numba picks the cache folder when the dispatcher is made (enable_caching), from
    # config.CACHE_DIR: set it for this call only, so other numba users in the process
    # keep their own setting.
    saved = config.CACHE_DIR
    config.CACHE_DIR = where
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    finally:
        config.CACHE_DIR = saved
