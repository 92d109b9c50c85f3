"""numba, optional: each kernel compiled lazily, once per process (numba also caches the
machine code on disk), or None where numba is not installed, so the caller falls back to
its numpy/scipy/Pillow path. Every kernel here does the same float operations as that
fallback, so both give the same bits."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional


@lru_cache(maxsize=None)
def compiled(fn: Callable) -> Optional[Callable]:
    """`fn` compiled in nopython mode with the GIL released, or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True, nogil=True)(fn)
