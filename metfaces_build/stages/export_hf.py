"""A Hugging Face dataset folder (--format hf) that `datasets.load_dataset(DIR,
split="train")` opens with no other argument, written without the `datasets` library.

Layout ("imagefolder" with metadata, the Hub's own convention for image sets):
  DIR/README.md                    the dataset card; its YAML header declares the licence,
                                   the task, and a `configs` entry (data files + the column
                                   types, so department loads as a ClassLabel)
  DIR/data/train/{key}.png         the crops, bytes unchanged
  DIR/data/train/metadata.jsonl    one line per image: file_name and the columns
The card is made from the work directory: the tool version, the align recipe (the
manifest's params and library versions), the filter's thresholds and counts
(filter_summary.json) and the export's options; it states the sources' licence and how
to cite MetFaces. Like every export file it holds no time or path, so the same crops give
the same bytes.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..infra.workdir import manifest_path
from .export_provenance import (LICENSE_CC0, ObjectInfo, clean, dumps, face_spec,
                                label_names, write_file)

DATA_DIR = "data/train"
METADATA = "metadata.jsonl"
STRING_COLUMNS = ("title", "artist", "date", "object_url", "license", "credit_line",
                  "source_url", "source_md5", "file_md5", "pixel_md5")
CITATION = """@inproceedings{Karras2020ada,
  title     = {Training Generative Adversarial Networks with Limited Data},
  author    = {Tero Karras and Miika Aittala and Janne Hellsten and Samuli Laine and
               Jaakko Lehtinen and Timo Aila},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020}
}"""


def hf_row(p, info: dict, names: Optional[list], where: str) -> dict:
    """One metadata.jsonl line: flat columns (nested only for face_spec)."""
    c, rec = p.crop, p.crop.record
    return {"file_name": p.name, "obj_id": c.obj_id, "face_idx": c.face_idx,
            "department": names[p.label] if names is not None else (c.department or None),
            **info, "face_spec": face_spec(c, where),
            "source_url": rec.get("source_url") or "", "source_md5": rec.get("source_md5") or "",
            "file_md5": c.file_md5, "pixel_md5": c.pixel_md5}


def features(names: Optional[list]) -> list:
    """The columns in the Hub's YAML form (`datasets.Features._from_yaml_list` reads it)."""
    dept: dict = ({"name": "department", "dtype": {"class_label": {"names": {
        str(i): n for i, n in enumerate(names)}}}} if names is not None
        else {"name": "department", "dtype": "string"})
    return ([{"name": "image", "dtype": "image"}, {"name": "obj_id", "dtype": "string"},
             {"name": "face_idx", "dtype": "int64"}, dept]
            + [{"name": n, "dtype": "string"} for n in STRING_COLUMNS[:6]]
            + [{"name": "face_spec", "struct": [
                {"name": "rect", "sequence": "int64"},
                {"name": "landmarks", "sequence": {"sequence": "int64"}},
                {"name": "shrink", "dtype": "int64"}]}]
            + [{"name": n, "dtype": "string"} for n in STRING_COLUMNS[6:]])


# ---- a YAML writer for the card header (plain data only; no YAML library needed) --------

def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(clean(str(v)))  # a JSON string is a YAML double-quoted scalar


def _key(k: Any) -> str:
    k = str(k)
    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and k not in _YAML_WORDS else _scalar(k)


_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "True", "False",
               "Null", "NULL", "Yes", "No", "On", "Off", "TRUE", "FALSE", "YES", "NO"}


def to_yaml(value: Any, indent: int = 0) -> list:
    """Block-style YAML lines for dicts, lists and scalars."""
    pad, lines = "  " * indent, []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{_key(k)}:")
                lines += to_yaml(v, indent + 1)
            else:
                lines.append(f"{pad}{_key(k)}: {_block_or_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {_block_or_scalar(item)}")
    else:
        lines.append(pad + _scalar(value))
    return lines


def _block_or_scalar(v: Any) -> str:
    return "{}" if v == {} and isinstance(v, dict) else "[]" if v == [] and isinstance(v, list) \
        else _scalar(v)


# ---- the card --------------------------------------------------------------------------

def size_category(n: int) -> str:
    for limit, name in ((1000, "n<1K"), (10 ** 4, "1K<n<10K"), (10 ** 5, "10K<n<100K"),
                        (10 ** 6, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def align_recipe(packed: list) -> tuple:
    """(distinct align params, distinct library versions) of the exported crops."""
    params, versions = [], []
    for p in packed:
        for seen, v in ((params, p.crop.params), (versions, p.crop.versions)):
            if v and v not in seen:
                seen.append(v)
    return params, versions


def card(sel, packed: list, label_map: Optional[dict], resolution: int, opts,
         licensed: int, data_bytes: int) -> str:
    """README.md: the Hub's YAML header, then what the set is, its licence, how it was made
    and how to cite it."""
    n, names = len(packed), label_names(label_map)
    objects = len({p.crop.obj_id for p in packed})
    md = ["---", *to_yaml(card_header(n, names, data_bytes)), "---", "",
          *card_intro(n, objects, resolution), *card_licence(n, licensed),
          *card_columns(names), *card_making(sel, packed, opts, objects),
          *card_filter(sel.work.filter_summary() if sel.work is not None else None)]
    if names:
        md += ["", "## Department labels", "",
               *[f"- {i}: {d} ({sum(1 for p in packed if p.label == i)})"
                 for i, d in enumerate(names)]]
    md += ["", "## Citation", "",
           "MetFaces was introduced with StyleGAN2-ADA; please cite:", "",
           "```bibtex", CITATION, "```", ""]
    return "\n".join(clean(line) for line in md)


def card_header(n: int, names: Optional[list], data_bytes: int) -> dict:
    """The YAML header the Hub reads: licence, task, size, the data files and columns."""
    return {
        "license": "cc0-1.0",
        "pretty_name": "MetFaces (re-derived with metfaces-build)",
        "task_categories": ["unconditional-image-generation"]
        + (["image-classification"] if names else []),
        "tags": ["art", "faces", "portraits", "metfaces", "metropolitan-museum-of-art",
                 "open-access", "metfaces-build"],
        "size_categories": [size_category(n)],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "train", "path": f"{DATA_DIR}/**"}],
                     "features": features(names)}],
        "dataset_info": {"features": features(names),
                         "splits": [{"name": "train", "num_bytes": data_bytes,
                                     "num_examples": n}]},
    }


def card_intro(n: int, objects: int, resolution: int) -> list:
    return [f"# MetFaces, re-derived with metfaces-build {__version__}", "",
            f"{n} aligned face crops ({resolution}x{resolution} PNG) from {objects} artworks "
            "in the collection of The Metropolitan Museum of Art, made the way NVIDIA made "
            "[MetFaces](https://github.com/NVlabs/metfaces-dataset): faces detected with dlib, "
            "filtered, and aligned and cropped as FFHQ (the crops are the aligner's PNG files, "
            "byte for byte; every row carries their md5).", "",
            "```python", "from datasets import load_dataset",
            'ds = load_dataset("path/to/this/folder", split="train")',
            'ds[0]["image"]   # a PIL image; ds[0]["department"], ds[0]["face_spec"], ...',
            "```", ""]


def card_licence(n: int, licensed: int) -> list:
    return ["## Licence", "",
            "The source images are public-domain works that the Met publishes under its "
            "[Open Access](https://www.metmuseum.org/about-the-met/policies-and-documents/open-access) "
            "policy, dedicated to the public domain with "
            "[Creative Commons Zero (CC0 1.0)](https://creativecommons.org/publicdomain/zero/1.0/). "
            "The crops are mechanical transformations of those images and are offered under "
            f"the same CC0 1.0 dedication. {licensed} of {n} faces come from objects whose Met "
            "record says `isPublicDomain: true` (column `license` = `CC0-1.0`)"
            + ("." if licensed == n else "; for the others the record was not available "
               "here (`license` is empty): check them before you publish.")
            + " metfaces-build, the tool that made this folder, is Apache-2.0 licensed; that "
            "licence covers its code, not this data.", ""]


def card_columns(names: Optional[list]) -> list:
    return ["## Columns", "",
            "| column | what |", "| --- | --- |",
            "| image | the aligned crop |",
            "| obj_id, face_idx | the Met object ID and the face's index in its image |",
            "| department | the Met department" + (" (a ClassLabel: classes are the departments "
                                                  "present, sorted by name)" if names else "")
            + " |",
            "| title, artist, date, object_url, credit_line | from the Met's record |",
            "| license | `CC0-1.0` when the Met's record says isPublicDomain |",
            "| face_spec | dlib's rect [l, t, r, b], 68 landmarks and the shrink, in the shrunk "
            "frame detection ran on (full-resolution pixel = (p + 0.5) * shrink) |",
            "| source_url, source_md5 | the original image and its md5 |",
            "| file_md5, pixel_md5 | the crop's file and pixel md5 |", ""]


def card_making(sel, packed: list, opts, objects: int) -> list:
    """How it was made: the tool and options, the faces exported, align's recipe."""
    n = len(packed)
    md = ["## How it was made", "",
          f"- Tool: metfaces-build {__version__}: fetch (Met Collection API) -> detect "
          "(dlib) -> filter -> align -> export `--format hf`"
          + (" `--no-labels`" if opts.no_labels else "")
          + (" `--skip-bad`" if opts.skip_bad else "") + ".",
          f"- Exported: {n} faces from {objects} objects"
          + (f"; {len(sel.bad)} crops skipped (missing or not matching the manifest)"
             if sel.bad else "")
          + (f"; {sel.not_ok} faces failed to align" if sel.not_ok else "") + "."]
    params, versions = align_recipe(packed)
    for prm in params:
        md.append("- Align: " + ", ".join(f"{k} {json.dumps(v)}" for k, v in prm.items()))
    for v in versions:
        md.append("- Libraries: " + ", ".join(f"{k} {v[k]}" for k in v))
    return md


def card_filter(fs: Optional[dict]) -> list:
    """The filter's counts, overrides and thresholds from filter_summary.json."""
    if not fs:
        return ["- Filter: no filter_summary.json (exported from an align output folder)."]
    md = [f"- Filter (filter_summary.json): {fs.get('faces', '?')} faces detected, "
          f"{fs.get('kept', '?')} kept, {fs.get('rejected', '?')} rejected"
          + (" (" + ", ".join(f"{k}: {v}" for k, v in (fs.get("reasons") or {}).items())
             + ")" if fs.get("reasons") else "") + "."]
    ov = fs.get("overrides") if isinstance(fs.get("overrides"), dict) else {}
    if ov.get("keep") or ov.get("reject"):
        md.append(f"- Overruled by a person (review): {ov.get('keep', 0)} kept, "
                  f"{ov.get('reject', 0)} rejected.")
    if isinstance(fs.get("config"), dict):
        md.append("- Filter thresholds: " + ", ".join(
            f"{k} {json.dumps(v)}" for k, v in fs["config"].items()) + ".")
    return md


# ---- writing ---------------------------------------------------------------------------

def write_hf(tmp: Path, sel, packed: list, label_map: Optional[dict], resolution: int,
             opts) -> list:
    """The crops and metadata.jsonl under data/train/ (streamed), then the card."""
    objects = ObjectInfo(sel.work, {p.crop.obj_id for p in packed})
    names, where = label_names(label_map), str(manifest_path(sel.images_dir))
    data = tmp / DATA_DIR
    data.mkdir(parents=True)
    licensed = data_bytes = 0
    with open(data / METADATA, "w", encoding="utf-8") as meta:
        for p in packed:
            png = p.read()
            write_file(data / p.name, png)
            data_bytes += len(png)
            row = hf_row(p, objects.of(p.crop), names, where)
            licensed += row["license"] == LICENSE_CC0
            meta.write(dumps(row) + "\n")
        meta.flush()
        os.fsync(meta.fileno())
    write_file(tmp / "README.md", card(sel, packed, label_map, resolution, opts, licensed,
                                       data_bytes).encode("utf-8"))
    return [f'  datasets.load_dataset("{opts.out}", split="train")'
            + (f"; {len(packed) - licensed} faces without a known licence"
               if licensed < len(packed) else "")]
