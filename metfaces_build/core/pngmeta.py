"""The metadata of a PNG file (its ancillary chunks), compared without decoding: how
verify tells "same pixels, only the colour profile differs" from "same pixels, another
zlib". Pure: bytes in, words out."""
from __future__ import annotations

import struct
import zlib
from typing import Optional

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# chunks that carry pixels or structure, not metadata
STRUCTURAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
# the largest colour profile we expand: real ones are a few KB (ICC allows up to a few MB);
# a zlib bomb in an iCCP chunk stays compressed and is compared as bytes
MAX_PROFILE = 16 * 1024 * 1024
NAMES = {b"iCCP": "colour profile (iCCP)", b"sRGB": "sRGB intent", b"gAMA": "gamma",
         b"cHRM": "chromaticities", b"tRNS": "transparency (tRNS)", b"pHYs": "resolution (pHYs)",
         b"eXIf": "EXIF", b"tEXt": "text", b"zTXt": "text", b"iTXt": "text", b"tIME": "time"}


def metadata_chunks(data: bytes) -> Optional[dict]:
    """{chunk type: [payloads]} of the non-structural chunks, an iCCP payload replaced
    by its decompressed profile (the same profile compressed by another zlib is the same
    metadata); None when `data` is not a well-formed PNG."""
    if not data.startswith(SIGNATURE):
        return None
    out: dict = {}
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        payload = data[pos + 8:pos + 8 + length]
        if len(payload) != length:
            return None
        if kind not in STRUCTURAL:
            if kind == b"iCCP":
                name, _, rest = payload.partition(b"\0")
                profile = _inflate(rest[1:], MAX_PROFILE)
                if profile is not None:
                    payload = name + b"\0" + profile
            out.setdefault(kind, []).append(payload)
        pos += 12 + length
        if kind == b"IEND":
            return out
    return None


def _inflate(data: bytes, limit: int) -> Optional[bytes]:
    """`data` decompressed, or None when it is not zlib or expands beyond `limit` bytes."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit)
    except zlib.error:
        return None
    return None if d.unconsumed_tail else out


def _describe(kind: bytes, payloads: Optional[list]) -> str:
    if not payloads:
        return "none"
    if kind == b"iCCP":
        profile = payloads[0].partition(b"\0")[2]
        return f"{len(profile):,} bytes"
    return f"{sum(map(len, payloads)):,} bytes"


def metadata_difference(crop: bytes, reference: bytes) -> str:
    """'' when both files carry the same metadata, else the differing chunks in words,
    e.g. 'colour profile (iCCP): crop none, reference 588 bytes'."""
    a, b = metadata_chunks(crop), metadata_chunks(reference)
    if a is None or b is None:
        return "" if a == b else "not comparable (a file is not a well-formed PNG)"
    parts = []
    for kind in sorted(set(a) | set(b)):
        if a.get(kind) != b.get(kind):
            name = NAMES.get(kind, kind.decode("latin-1"))
            parts.append(f"{name}: crop {_describe(kind, a.get(kind))}, "
                         f"reference {_describe(kind, b.get(kind))}"
                         if bool(a.get(kind)) != bool(b.get(kind)) else f"{name}: differs")
    return "; ".join(parts)
