"""Downloading one object: its API record and original image, as a MetObject whose
status says how it went (failures are values).

A refetch of an object fetched before (a --since listing named it, a refresh that failed
before, or --force) downloads to a temporary name and replaces the original only when its
sha256 changed; when it fails, the object keeps its previous line, original and record
(`refresh_failed`), so its faces and crops stay.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ...core.records import MetObject, clean_text
from ...core.status import NO_IMAGE, NOT_FOUND, NOT_PUBLIC_DOMAIN, OK, REFUSED
from ...infra.files import TMP_PREFIX, atomic_write_bytes
from ...infra.workdir import API_DIR, ORIGINALS_DIR
from ...met.client import FetchFailure
from ...met.shapes import artist_of, display_text

MAX_URL = 4096  # characters in an image URL (= records.MAX_TEXT); longer is refused, not cut
IMAGE_EXTENSIONS = ("jpg", "png", "gif", "tif", "bmp", "webp")


def fetch_object(client, work: Path, oid: int, image: str = "original", old: Optional[dict] = None,
                 redo: bool = False) -> MetObject:
    """Record + image of one object, as a MetObject (failures are values). With `old`
    (its objects.jsonl line: a refetch of a changed object, or any with `redo`), the image
    is downloaded to a temporary name and replaces the original only when its sha256
    differs; a refetch that fails keeps `old` (see refresh_failed). `redo` (--force)
    downloads even when the record names the same image as last time."""
    oid = int(oid)
    try:
        answer = client.get_object(oid)
    except FetchFailure as f:
        failed = MetObject(oid, f.status, f.reason, attempts=f.attempts)
        if old and old.get("status") == OK and f.status != NOT_FOUND:  # 404: removed
            return refresh_failed(old, failed)
        return failed
    obj, url = _object_of(answer, oid, image)
    if obj.status == REFUSED:
        return obj  # a failure, not a withdrawal: an earlier original stays
    if obj.status != OK:
        _write_record(work, oid, answer.raw)
        if old and old.get("path"):  # withdrawn: its original must not feed detect any more
            _remove_other_extensions(work / ORIGINALS_DIR, oid, "")
        return obj
    if old and old.get("status") == OK and old.get("sha256") and old.get("path"):
        return _refetch(client, work, obj, url, old, redo, answer.raw)
    obj = download_into(client, work, obj, url)
    _write_record(work, oid, answer.raw)
    return obj


def _object_of(answer, oid: int, image: str) -> tuple:
    """(MetObject, image URL) of an API record: ok, or why it has no image to fetch
    (not_public_domain, no_image, or refused: a URL too long to be one)."""
    rec = answer.data
    public = rec.get("isPublicDomain")
    obj = MetObject(oid, OK, department=display_text(rec.get("department")),
                    title=display_text(rec.get("title")), artist=artist_of(rec),
                    date=display_text(rec.get("objectDate")),
                    is_public_domain=public if isinstance(public, bool) else None,
                    attempts=answer.attempts)
    field = "primaryImage" if image == "original" else "primaryImageSmall"
    url = _s(rec.get(field))
    obj.image_url = url
    if _s(rec.get("objectURL")):
        obj.extra["meta_url"] = _s(rec.get("objectURL"))
    if _s(rec.get("metadataDate")):  # the Met's own change marker (updates compare it)
        obj.extra["metadata_date"] = _s(rec.get("metadataDate"))
    _clip_fields(obj)
    if obj.is_public_domain is False:
        obj.status, obj.reason = NOT_PUBLIC_DOMAIN, "isPublicDomain is false"
    elif not url:
        obj.status, obj.reason = NO_IMAGE, f"{field} is empty"
    elif len(url) > MAX_URL:
        obj.status, obj.reason = REFUSED, f"image URL of {len(url)} characters (more than {MAX_URL})"
    return obj, url


def _refetch(client, work: Path, obj: MetObject, url: str, old: dict, redo: bool,
             raw: bytes) -> MetObject:
    """An object fetched before: its files stay unless a new image is accepted."""
    if not redo and _same_version(old, obj, work):  # the Met changed nothing: keep it as is
        for k in ("path", "bytes", "sha256", "md5", "width", "height"):
            setattr(obj, k, old.get(k) or getattr(obj, k))
        _write_record(work, obj.id, raw)
        return obj
    obj = _refresh_image(client, work, obj, url, old)
    if obj.status != OK:
        # the record still offers an image we could not get (a CDN that has not got the
        # re-shot file yet, a refused host, a corrupt file, the network): the old line,
        # original and API record stand, so its faces and crops do; the next run retries
        return refresh_failed(old, obj)
    _write_record(work, obj.id, raw)  # only now: the record describes the original
    return obj


def refresh_failed(old: dict, failed) -> MetObject:
    """The object's previous line, kept, with `refresh_error` saying why the refresh
    failed (status: reason): a refresh never withdraws what it could not replace."""
    return MetObject.from_json({**old, "refresh_error": f"{failed.status}: {failed.reason}"})


def _write_record(work: Path, oid: int, raw: bytes) -> None:
    """api/{id}.json as served (not rewritten when the bytes are the same)."""
    path = work / API_DIR / f"{oid}.json"
    try:
        if path.read_bytes() == raw:
            return
    except OSError:
        pass
    atomic_write_bytes(path, raw)


def _same_version(old: dict, obj, work: Path) -> bool:
    """The record has the metadataDate and image URL we fetched last time and the
    original is still there: nothing to download (a second identical --since run)."""
    date = obj.extra.get("metadata_date")
    return bool(date) and old.get("metadata_date") == date and old.get("image_url") == obj.image_url \
        and (work / str(old.get("path"))).is_file()


def _refresh_image(client, work: Path, obj, url: str, old: dict):
    """Download into a temp name; keep the old original when the bytes are the same (no
    rewrite), else rename the new one into place."""
    folder = work / ORIGINALS_DIR
    try:
        d = client.download(url, folder, f"{TMP_PREFIX}new-{obj.id}")
    except FetchFailure as f:
        return _failed_download(obj, f)
    final = folder / f"{obj.id}.{d.ext}"
    if d.sha256 == old.get("sha256") and (work / old["path"]).is_file() \
            and old["path"] == f"{ORIGINALS_DIR}/{final.name}":
        os.unlink(d.path)
    else:
        os.replace(d.path, final)
        _remove_other_extensions(folder, obj.id, d.ext)
    return _downloaded(obj, d, final.name)


def download_into(client, work: Path, obj, url: str):
    """`obj` with its image downloaded to originals/{id}.{ext} (or why not)."""
    try:
        d = client.download(url, work / ORIGINALS_DIR, str(obj.id))
    except FetchFailure as f:
        return _failed_download(obj, f)
    _remove_other_extensions(work / ORIGINALS_DIR, obj.id, d.ext)
    return _downloaded(obj, d, d.path.name)


def _failed_download(obj, f: FetchFailure):
    obj.status, obj.reason, obj.attempts = f.status, f.reason, obj.attempts + f.attempts
    obj.width, obj.height = f.width, f.height
    return obj


def _downloaded(obj, d, name: str):
    """`obj` once download `d` is in place as originals/`name`."""
    obj.status, obj.reason = OK, ""
    obj.path = f"{ORIGINALS_DIR}/{name}"
    obj.attempts += d.attempts
    obj.bytes, obj.sha256, obj.md5, obj.width, obj.height = d.bytes, d.sha256, d.md5, d.width, d.height
    return obj


def _remove_other_extensions(folder: Path, oid: int, ext: str) -> None:
    for other in IMAGE_EXTENSIONS:
        if other != ext:
            try:
                os.unlink(folder / f"{oid}.{other}")
            except FileNotFoundError:
                pass


def _clip_fields(obj) -> None:
    """Cut each text field of `obj` at MAX_TEXT characters where it enters; `clipped` says
    what was kept (the whole answer stays once, in DIR/api/{id}.json)."""
    notes = {}
    for k in ("title", "artist", "department", "date", "image_url"):
        text, note = clean_text(getattr(obj, k))
        if note:
            setattr(obj, k, text)
            notes[k] = note
    for k in ("meta_url", "metadata_date"):
        if isinstance(obj.extra.get(k), str):
            text, note = clean_text(obj.extra[k])
            if note:
                obj.extra[k] = text
                notes[k] = note
    if notes:
        obj.extra["clipped"] = notes


def _s(v) -> str:
    """A text field of an API record: strings as served, numbers as text, anything else
    (null, lists, objects, NaN) empty."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        return str(v)
    return ""
