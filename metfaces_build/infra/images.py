"""Image decoding at the edge: pixel limits, full decode checks, modes, EXIF.

Failures are returned as `ImageProblem(status, reason)` exceptions that stages turn into
recorded statuses; nothing here prints or exits.
"""
from __future__ import annotations

import os
import stat
from typing import Optional

from PIL import Image

from ..core.geometry import face_square, landmarks_full

# Default pixel limit: 40,000 x 40,000 would be 1.6 Gpx; the Met's largest scans are around
# 10-15k px a side (~200 Mpx). Above this we refuse rather than risk memory.
DEFAULT_MAX_PIXELS = 250_000_000
# verify and compare --crops decode crops and references: MetFaces crops are 1024x1024, so
# a "crop" beyond 8192x8192 is not one (a 140 KB PNG can declare 12000x12000 = 432 MB RGB).
MAX_CROP_PIXELS = 8192 * 8192

MAGIC = [
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
    (b"BM", "bmp"),
]


class ImageProblem(Exception):
    """An image we cannot use; `status` is a record status, `reason` says why."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sniff_image_type(head: bytes) -> Optional[str]:
    """File extension from magic bytes, or None (HTML error pages, garbage)."""
    for magic, ext in MAGIC:
        if head.startswith(magic):
            return ext
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def pil_image():
    """PIL's Image module with its own decompression-bomb limit off: this project enforces
    `max_pixels` itself, from the header, before decoding. Set once per process and never
    toggled, so threads opening images at the same time (fetch) cannot race on it."""
    if Image.MAX_IMAGE_PIXELS is not None:
        Image.MAX_IMAGE_PIXELS = None
    return Image


def open_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               draft: Optional[tuple] = None, load: bool = True, limit_name: str = "--max-pixels"):
    """Open and fully decode an image, refusing decompression bombs before decoding.

    `draft=(mode, (w, h))` lets JPEG decode at a reduced scale (DCT scaling), which is much
    faster for detection on large originals; never used by the exact aligner.
    Raises ImageProblem: missing_source, bad_content (not an image, truncated, corrupt),
    too_large (over `max_pixels`).
    """
    Image = pil_image()
    if isinstance(path, (str, os.PathLike)):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageProblem("missing_source", f"file not found: {path}") from None
        except OSError as e:  # name too long, permission, loop...
            raise ImageProblem("missing_source", f"cannot open {path}: {e.strerror or e}") from None
        if not stat.S_ISREG(st.st_mode):
            # a FIFO or device would block or never end; a folder is not an image either
            raise ImageProblem("missing_source", f"not a regular file: {path}")
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise ImageProblem("missing_source", f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImageProblem("missing_source", f"is a directory: {path}") from None
    except Exception as e:  # PIL.UnidentifiedImageError, OSError, SyntaxError ...
        raise ImageProblem("bad_content", f"not a readable image: {path}: {e}") from None
    w, h = im.size
    if max_pixels and w * h > max_pixels:
        im.close()
        raise ImageProblem("too_large", f"{w}x{h} = {w * h} pixels exceeds the limit of "
                                        f"{max_pixels} ({limit_name})")
    if draft is not None and im.format == "JPEG":
        im.draft(*draft)
    if load:
        try:
            im.load()
        except Exception as e:  # truncated or corrupt data
            im.close()
            raise ImageProblem("bad_content", f"cannot decode {path}: {e}") from None
    return im


def exif_orientation(im) -> int:
    """The EXIF orientation tag (1 = normal). We never transpose: coordinates stay in the
    frame the aligner loads, as NVIDIA's script did; detect warns when this is not 1."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def quick_crop(image, landmarks, shrink: int, size: int = 128, rotate: bool = True):
    """A fast, approximate aligned crop (no padding, no supersampling) for measurements
    such as sharpness or perceptual hashes; `image` is a full-resolution PIL image."""
    quad = face_square(landmarks_full(landmarks, shrink), rotate=rotate).quad()
    return image.convert("RGB").transform((size, size), Image.Transform.QUAD,
                                          (quad + 0.5).flatten().tolist(),
                                          Image.Resampling.BILINEAR)
