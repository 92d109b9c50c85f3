"""JSON lists read and written one item at a time, so a face list of 200,000 entries never
sits in memory as text plus parsed objects plus records at once.

`read_json_items` gives an iterator over the items of a top-level JSON list (any other
value, such as `{"faces": [...]}`, which no stage writes, is read whole);
`atomic_write_json_list` writes the same bytes `atomic_write_json(path, list(items))`
would (indent 1), atomically.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

from ..core.errors import UsageError
from ..core.records import scrub
from .files import _SURROGATE_ESCAPE, _finite_float, _no_constant, atomic_open, read_json

CHUNK = 1 << 20  # characters read at a time
_WS = " \t\n\r"


def read_json_items(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """An iterator over the items when the top level of `path` is a list, parsed one at a
    time; otherwise the value, read whole. A missing or malformed file is a UsageError
    as in `read_json` (for a list: raised when the reader reaches the fault)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b" \t\n\r")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} is a directory, expected a file: {path}") from None
    if head.startswith(b"\xef\xbb\xbf") or not head.startswith(b"["):
        return read_json(path, what)
    return _iter_list(path, what)


def _iter_list(path, what) -> Iterator[Any]:
    with open(path, "r", encoding="utf-8") as f:
        try:
            yield from _items(f)
        except RecursionError:
            raise UsageError(f"{what} {path} is not valid JSON: nested too deeply") from None
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise UsageError(f"{what} {path} is not valid JSON: {e}") from None


class _Buffer:
    """A text file read CHUNK characters at a time, with a read position."""

    def __init__(self, f):
        self.f, self.buf, self.pos, self.eof = f, "", 0, False

    def more(self) -> bool:
        """Append the next chunk (dropping what was consumed); False at the end."""
        if self.eof:
            return False
        chunk = self.f.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        return True

    def skip_ws(self) -> str:
        """The next non-blank character ("" at the end of the file), without taking it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def value(self, dec: json.JSONDecoder) -> Any:
        """The JSON value at the position, read whole even across chunk ends."""
        self.skip_ws()
        while True:
            try:
                item, end = dec.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self.more():
                    continue
                raise
            # a number may be cut by the buffer's end ("1." of "1.5"): accept a value
            # only when a ',' or ']' follows it, or the file ends
            nxt = end
            while nxt < len(self.buf) and self.buf[nxt] in _WS:
                nxt += 1
            if (nxt >= len(self.buf) or self.buf[nxt] not in ",]") and self.more():
                continue
            break
        if _SURROGATE_ESCAPE.search(self.buf, self.pos, end):
            item = scrub(item)
        self.pos = end
        return item


def _items(f) -> Iterator[Any]:
    # as files.loads: NaN, Infinity and 1e999 read as null, lone surrogates as U+FFFD
    dec = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
    r = _Buffer(f)
    if r.skip_ws() != "[":
        raise ValueError("expected a list")
    r.pos += 1
    if r.skip_ws() == "]":
        r.pos += 1
        _expect_end(r.skip_ws)
        return
    while True:
        yield r.value(dec)
        c = r.skip_ws()
        if c == ",":
            r.pos += 1
        elif c == "]":
            r.pos += 1
            _expect_end(r.skip_ws)
            return
        else:
            raise json.JSONDecodeError("expected ',' or ']'", r.buf, r.pos)


def _expect_end(skip_ws) -> None:
    if skip_ws() != "":
        raise ValueError("extra data after the list")


def atomic_write_json_list(path: str | os.PathLike, items: Iterable[Any]) -> int:
    """Write `items` as a JSON list (indent 1, the bytes `atomic_write_json` gives),
    encoding one item at a time; returns how many were written."""
    n = 0
    with atomic_open(path, "wb") as f:
        for item in items:
            text = json.dumps(item, indent=1).replace("\n", "\n ")
            f.write(((",\n " if n else "[\n ") + text).encode("utf-8"))
            n += 1
        f.write(b"\n]\n" if n else b"[]\n")
    return n
