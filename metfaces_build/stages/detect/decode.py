"""Decoding an original at the detection size: the integer shrink, JPEG DCT scaling, an
exact box reduction for the rest, and 8-bit RGB as the aligner sees it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ...core.status import BAD_CONTENT
from .options import DEFAULT_MAX_SIDE, JPEG_DRAFT_SCALES

# numpy and PIL (and infra.images, which loads both) are imported where used:
# `import stages.detect` stays light (--help; test_models)


@dataclass
class ShrunkImage:
    """The copy detection runs on, and how it was made from the original."""
    pixels: object  # HxWx3 uint8 numpy array
    shrink: int
    method: str
    width: int  # the original's size
    height: int
    mode: str  # the original's PIL mode
    format: str
    exif_orientation: int


def choose_shrink(width: int, height: int, max_side: int) -> int:
    """Smallest integer factor that brings the long side to at most `max_side`."""
    return max(1, math.ceil(max(width, height) / max_side))


def draft_scale(shrink: int, width: int, height: int) -> int:
    """The JPEG DCT scale (8, 4, 2 or 1) to decode at: the largest that divides shrink."""
    for s in JPEG_DRAFT_SCALES:
        if shrink % s == 0 and min(width, height) >= 8 * s:
            return s
    return 1


def load_shrunk(path, max_side: int = DEFAULT_MAX_SIDE, max_pixels: Optional[int] = None) -> ShrunkImage:
    """Decode `path` reduced by the integer shrink; raises images.ImageProblem."""
    from ...infra.images import DEFAULT_MAX_PIXELS, ImageProblem, exif_orientation, open_image
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    head = open_image(path, max_pixels, load=False)
    w, h, fmt, mode, orient = head.width, head.height, head.format or "", head.mode, exif_orientation(head)
    head.close()
    shrink = choose_shrink(w, h, max_side)
    scale = draft_scale(shrink, w, h) if fmt == "JPEG" else 1
    draft = ("RGB", (w // scale, h // scale)) if scale > 1 else None
    im = open_image(path, max_pixels, draft=draft)
    steps = []
    if scale > 1:
        if im.size != (-(-w // scale), -(-h // scale)):
            im.close()
            raise ImageProblem(BAD_CONTENT, f"JPEG draft gave {im.size}, expected 1/{scale} of {w}x{h}")
        steps.append(f"jpeg-draft/{scale}")
    import numpy as np
    try:
        rgb = to_rgb8(im)
        rest = shrink // scale
        if rest > 1:
            rgb = rgb.reduce(rest)
            steps.append(f"reduce/{rest}")
        pixels = np.asarray(rgb)
    except (OSError, ValueError) as e:  # a decoder error surfacing late
        raise ImageProblem(BAD_CONTENT, f"cannot convert {path} ({mode}) to RGB: {e}") from None
    finally:
        im.close()
    return ShrunkImage(pixels=pixels, shrink=shrink, method="+".join(steps) or "none",
                       width=w, height=h, mode=mode, format=fmt, exif_orientation=orient)


def to_rgb8(im):
    """8-bit RGB as the aligner sees it (Pillow's convert('RGB')), except that 16-bit and
    float greyscale are scaled to 0-255 first rather than clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np
        from PIL import Image
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")
