"""WebDataset shards (--format webdataset): plain tar files, written with the standard
library only (no `webdataset` needed to write them).

A sample is `{key}.png` (the crop, bytes unchanged), `{key}.json` (its provenance, see
export_formats) and, with labels, `{key}.cls` (the class index as decimal text, which
`.decode()` turns into an int). Shards are `metfaces-000000.tar`, ... in key order; a shard
is closed at the sample bound, or before a sample that would take it past the byte bound
(a sample bigger than the bound gets a shard of its own). Tar headers carry no clock and
no host: mtime 0, uid/gid 0, empty user and group names, mode 0644, so the same crops give
the same shard bytes anywhere.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Optional

from ..infra.workdir import manifest_path
from .export_provenance import ObjectInfo, dumps, face_row, label_names

SHARD_PREFIX = "metfaces"
TAR_FORMAT = tarfile.PAX_FORMAT  # USTAR for short ASCII names; PAX headers only when needed
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE      # a closed tar file is padded to a multiple of this


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}-{index:06d}.tar"


def header(name: str, size: int) -> bytes:
    """The tar header of a member with fixed metadata (no clock, no host)."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti.tobuf(TAR_FORMAT, tarfile.ENCODING, "surrogateescape")


def padding(size: int, unit: int) -> bytes:
    return tarfile.NUL * (-size % unit)


def closed_size(content: int) -> int:
    """Bytes of a tar file whose members take `content` bytes, once closed (two zero
    blocks, then padding to a whole record)."""
    return -(-(content + 2 * BLOCK) // RECORD) * RECORD


class ShardWriter:
    """Samples into consecutive shards under `folder`, bounded by count and/or bytes. The
    tar stream is written here (as tarfile does: header, data, zero padding to a block; two
    zero blocks and padding to a record at the end), so each sample's size is known
    before it is written."""

    def __init__(self, folder: Path, max_samples: Optional[int], max_bytes: Optional[int]):
        self.folder, self.max_samples, self.max_bytes = folder, max_samples, max_bytes
        self.shards: list = []   # (name, samples, bytes)
        self._file = None
        self._count = self._size = 0

    def add(self, files: list) -> None:
        """One sample: [(name, bytes)], kept together in one shard."""
        chunks = []
        for name, data in files:
            chunks += [header(name, len(data)), data, padding(len(data), BLOCK)]
        size = sum(len(c) for c in chunks)
        if self._file is not None and (
                (self.max_samples is not None and self._count >= self.max_samples)
                or (self.max_bytes is not None
                    and closed_size(self._size + size) > self.max_bytes)):
            self._close()
        if self._file is None:
            self._open()
        for c in chunks:
            self._file.write(c)
        self._count += 1
        self._size += size

    def _open(self) -> None:
        name = shard_name(len(self.shards))
        self._file = open(self.folder / name, "wb")
        self.shards.append((name, 0, 0))
        self._count = self._size = 0

    def _close(self) -> None:
        end = closed_size(self._size)
        self._file.write(tarfile.NUL * (end - self._size))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.shards[-1] = (self.shards[-1][0], self._count, end)
        self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._close()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_shards(folder: Path, sel, packed: list, label_map: Optional[dict],
                 max_samples: Optional[int], max_bytes: Optional[int], shown: Path) -> list:
    """Every face of `packed` as one sample, streamed (one crop in memory at a time);
    returns the summary lines (the shard pattern a trainer passes to WebDataset, under the
    folder's final name `shown`)."""
    objects = ObjectInfo(sel.work, {p.crop.obj_id for p in packed})
    names, where = label_names(label_map), str(manifest_path(sel.images_dir))
    writer = ShardWriter(folder, max_samples, max_bytes)
    try:
        for p in packed:
            key = p.name[:-len(".png")]
            files = [(f"{key}.png", p.read()),
                     (f"{key}.json", dumps(face_row(p, objects.of(p.crop), names, where))
                      .encode("utf-8"))]
            if names is not None:
                files.append((f"{key}.cls", str(p.label).encode("ascii")))
            writer.add(files)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    last = len(writer.shards) - 1
    pattern = shard_name(0) if last == 0 else \
        f"{SHARD_PREFIX}-{{{0:06d}..{last:06d}}}.tar"
    total = sum(s[2] for s in writer.shards)
    return [f"  {len(writer.shards)} shard(s), {total / 1e6:.1f} MB: "
            f"webdataset.WebDataset(\"{shown / pattern}\")"]
