"""Formats beside StyleGAN's (--format webdataset | hf | folder), with per-face provenance.

Every format writes the same faces as the StyleGAN zip (the same selection and checks),
in the same (obj_id, face_idx) order, each under a stable key `{obj_id}-{face_idx:02d}`
(the crop's name), with the crop's PNG bytes unchanged (the manifest's md5) and its provenance:
obj_id, face_idx, department, title, artist, date, object URL, licence, credit line,
face_spec, the source image's URL and checksums, the crop's md5s and the libraries that
made it. Text comes from the stored Met record (DIR/api/{id}.json), else fetch's
objects.jsonl, else the face record.

  --format webdataset  --out DIR: tar shards DIR/metfaces-000000.tar, ... of
      {key}.png, {key}.json (the provenance) and, with labels, {key}.cls (the class index
      as text). --shard-size N closes a shard at N samples (default 1000), --shard-size
      500MB (kB/MB/GB, or KiB/MiB/GiB) before a sample would take it past that many bytes.
      Shard bytes depend only on the crops: members in key order, mtime 0, uid/gid 0, no
      user names, mode 0644.
  --format hf          --out DIR: a Hugging Face dataset folder. DIR/data/train/ holds the
      PNGs and metadata.jsonl (imagefolder layout: no writer library needed); DIR/README.md
      is the dataset card: the Hub's YAML header (licence, task, configs with the column
      types, department as a ClassLabel when labels are on) and how the set was made.
  --format folder      --out DIR: DIR/{key}.png and DIR/metadata.jsonl (one line per image:
      file_name, then the same provenance as the WebDataset .json).

Each also writes DIR/metfaces-export.json (the same audit trail as the StyleGAN export).
Outputs are built in a temporary folder beside DIR and renamed into place at the end: a
killed export leaves no partial shard or folder under the final name (an existing DIR is
replaced only when it is an earlier export).

examples (a trainer's side):
  metfaces-build export --work W --format webdataset --out shards --shard-size 500MB
    wds.WebDataset("shards/metfaces-{000000..000002}.tar").decode("pil").to_tuple("png", "cls")
  metfaces-build export --work W --format hf --out metfaces-hf
    datasets.load_dataset("metfaces-hf", split="train")
"""
from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from ..core.errors import UsageError
from ..infra.files import atomic_dir
from ..infra.workdir import manifest_path
from .export_hf import write_hf
from .export_provenance import ObjectInfo, dumps, face_row, label_names, write_file
from .export_webdataset import write_shards

DEFAULT_SHARD_SAMPLES = 1000
_UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


# ---- options -------------------------------------------------------------------------

def parse_shard_size(value: Any) -> tuple:
    """(samples, None) for "1000", (None, bytes) for "500MB" / "1.5GiB"; UsageError else."""
    text = str(value).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b)?", text, re.IGNORECASE)
    unit = (m.group(2) or "").lower() if m else ""
    if not m or (unit and unit not in _UNITS) or (not unit and "." in m.group(1)):
        raise UsageError(f"--shard-size {text!r}: give samples (e.g. 1000) or bytes with a "
                         "unit (e.g. 500MB, 1GiB)")
    n = float(m.group(1)) * _UNITS[unit] if unit else int(m.group(1))
    if n < 1:
        raise UsageError(f"--shard-size {text!r} must be at least one sample or byte")
    return (None, int(n)) if unit else (int(n), None)


def check_options(opts) -> None:
    """UsageError for flags that do not apply to `opts.format` (before any work)."""
    if opts.layout is not None:
        raise UsageError("--layout applies to --format stylegan (zip or folder); "
                         f"--format {opts.format} writes a folder")
    if opts.shard_size is not None:
        if opts.format != "webdataset":
            raise UsageError("--shard-size applies to --format webdataset only")
        parse_shard_size(opts.shard_size)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder; --format {opts.format} "
                         "writes a folder")


# ---- writing ---------------------------------------------------------------------------

def write_folder_format(tmp: Path, sel, packed: list, label_map: Optional[dict]) -> list:
    """--format folder: {key}.png + metadata.jsonl, streamed one face at a time."""
    objects = ObjectInfo(sel.work, {p.crop.obj_id for p in packed})
    names, where = label_names(label_map), str(manifest_path(sel.images_dir))
    with open(tmp / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for p in packed:
            write_file(tmp / p.name, p.read())
            row = face_row(p, objects.of(p.crop), names, where)
            meta.write(dumps({"file_name": p.name, **row}) + "\n")
        meta.flush()
        os.fsync(meta.fileno())
    return []


def write_format(fmt: str, sel, packed: list, label_map: Optional[dict], resolution: int,
                 sidecar: tuple, opts) -> list:
    """Write `packed` (export.Packed, names `{key}.png`) at `opts.out` as `fmt`, with
    `sidecar` = (name, bytes) beside (its name marks the folder as an earlier export);
    returns extra summary lines."""
    twice = [n for n, k in Counter(p.name for p in packed).items() if k > 1]
    if twice:  # e.g. folder ids "a.b" and "a_b" (a key holds no dot)
        raise UsageError(f"faces would share the key {twice[0][:-len('.png')]!r}; rename "
                         "the source images so that their ids differ in more than dots")
    out = Path(opts.out)
    with atomic_dir(out, sidecar[0]) as tmp:
        if fmt == "webdataset":
            samples, max_bytes = parse_shard_size(opts.shard_size) \
                if opts.shard_size is not None else (DEFAULT_SHARD_SAMPLES, None)
            lines = write_shards(tmp, sel, packed, label_map, samples, max_bytes, shown=out)
        elif fmt == "hf":
            lines = write_hf(tmp, sel, packed, label_map, resolution, opts)
        elif fmt == "folder":
            lines = write_folder_format(tmp, sel, packed, label_map)
        else:
            raise UsageError(f"--format {fmt!r} is not one of webdataset, hf, folder")
        write_file(tmp / sidecar[0], sidecar[1])
    return lines
