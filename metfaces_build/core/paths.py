"""Pure checks of relative paths found in records (no file system access)."""
from __future__ import annotations


def check_relative_path(rel: str) -> str | None:
    """Why `rel` is not a safe relative path (absolute, `..`, empty), or None if it is."""
    if not isinstance(rel, str) or not rel.strip():
        return "empty path"
    if "\x00" in rel:
        return "path contains a NUL byte"
    p = rel.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":"):
        return f"absolute path {rel!r}"
    if ".." in p.split("/"):
        return f"path {rel!r} escapes its root ('..')"
    return None
