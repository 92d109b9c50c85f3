"""What the real Met's records look like, where that differs from what one would assume.

Measured over real recordings of the Met Collection API (2025-2026): the department name
inside a record (and in the open-access catalogue) can differ from the `/departments`
display name of the same department, and names change over the years, so departments
are matched by id and every name a department goes by is kept; `constituents[].name` is
HTML-escaped while top-level strings are plain text; text fields may hold CRLF line
breaks. These helpers turn record fields into text for display; the record itself is
always stored exactly as served.
"""
from __future__ import annotations

import html
from typing import Any

# department id -> other names it goes by in records and MetObjects.csv (the /departments
# display name comes from the API; these are the ones seen besides it)
DEPARTMENT_ALIASES = {
    1: ("The American Wing",),
    3: ("Ancient Near Eastern Art", "Ancient West Asian Art"),  # renamed between 2021 and 2026
    5: ("The Michael C. Rockefeller Wing",),
    8: ("Costume Institute", "The Costume Institute"),
    15: ("Robert Lehman Collection", "The Robert Lehman Collection"),
    21: ("Modern and Contemporary Art", "Modern Art"),
}


def department_aliases(dep_id: int, display_name: str = "") -> tuple:
    """Every name department `dep_id` goes by: its display name first, then the others."""
    names = [display_name] if display_name else []
    names += [n for n in DEPARTMENT_ALIASES.get(int(dep_id), ()) if n not in names]
    return tuple(names)


def display_text(value: Any) -> str:
    """A top-level text field for display: strings as served with CRLF made LF, numbers
    as text, anything else (null, lists, NaN) empty."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value.replace("\r\n", "\n")
    if isinstance(value, int) or (isinstance(value, float) and value == value and abs(value) != float("inf")):
        return str(value)
    return ""


def constituent_names(record: dict) -> list:
    """The constituents' names, unescaped (the API serves them HTML-escaped: `&amp;`)."""
    out = []
    for c in record.get("constituents") or ():
        if isinstance(c, dict) and isinstance(c.get("name"), str) and c["name"].strip():
            out.append(html.unescape(c["name"]).strip())
    return out


def artist_of(record: dict) -> str:
    """The artist for display: artistDisplayName, else the first constituent's name."""
    name = display_text(record.get("artistDisplayName"))
    if name:
        return name
    names = constituent_names(record)
    return names[0] if names else ""
