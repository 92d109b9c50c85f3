#!/usr/bin/env python3
"""Time and peak memory of `metfaces-build export` per format, on a synthetic work directory.

usage: bench_export.py [--faces 10000,1000] [--size 128] [--from DIR] [--formats ...]
                       [--keep DIR]

Builds a work directory of N faces (two per object; objects.jsonl, api/{id}.json with a
Met-like record, filter_summary.json, images/aligned.json and N crop files). The crops are
the PNGs of an align output folder (--from, e.g. a demo's work/images) resized to --size,
or random images, hard-linked under each face's name, so 10,000 faces cost little disk.
Then for each format runs `python -m metfaces_build export --format F` as a process of its
own and prints wall seconds and its peak RSS (os.wait4's ru_maxrss), per N.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DEPTS = ["European Paintings", "Drawings and Prints", "Photographs", "Robert Lehman Collection",
         "Asian Art"]


def crops(source, size, n=7):
    """n distinct PNGs (bytes) of size x size."""
    out = []
    if source:
        for p in sorted(Path(source).glob("*.png"))[:n]:
            im = Image.open(p).convert("RGB").resize((size, size), Image.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "PNG")
            out.append(buf.getvalue())
    rng = np.random.RandomState(0)
    while len(out) < n:
        small = rng.randint(0, 256, size=(16, 16, 3)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def make_work(root, faces, size, source):
    """A work directory with `faces` aligned crops (as align would leave it)."""
    work = Path(root)
    images, api = work / "images", work / "api"
    images.mkdir(parents=True)
    api.mkdir()
    pngs = crops(source, size)
    masters = []
    for i, data in enumerate(pngs):
        p = work / f"master-{i}.png"
        p.write_bytes(data)
        masters.append((p, hashlib.md5(data).hexdigest(),
                        hashlib.md5(Image.open(io.BytesIO(data)).tobytes()).hexdigest()))
    lm = [[60 + (i % 17) * 4, 60 + (i // 17) * 16] for i in range(68)]
    manifest = []
    with open(work / "objects.jsonl", "w") as objects:
        for k in range(faces):
            oid, idx = 100000 + k // 2, k % 2
            dept = DEPTS[oid % len(DEPTS)]
            if idx == 0:
                objects.write(json.dumps({"id": oid, "status": "ok", "department": dept,
                                          "title": f"Portrait {oid}", "artist": "Unknown",
                                          "date": "ca. 1800", "is_public_domain": True}) + "\n")
                (api / f"{oid}.json").write_text(json.dumps({
                    "objectID": oid, "title": f"Portrait {oid}", "artistDisplayName": "Unknown",
                    "objectDate": "ca. 1800", "isPublicDomain": True, "department": dept,
                    "creditLine": "Bequest of Someone, 1900",
                    "objectURL": f"https://www.metmuseum.org/art/collection/search/{oid}"}))
            name = f"{oid}-{idx:02d}.png"
            src, file_md5, pixel_md5 = masters[k % len(masters)]
            os.link(src, images / name)
            manifest.append({
                "record": {"obj_id": str(oid), "face_idx": idx, "department": dept,
                           "title": f"Portrait {oid}", "source_path": f"originals/{oid}.jpg",
                           "source_url": f"https://images.example/{oid}.jpg",
                           "source_md5": "0" * 32,
                           "face_spec": {"rect": [50, 50, 140, 140], "landmarks": lm,
                                         "shrink": 1}},
                "output": name, "status": "ok", "reason": "", "file_md5": file_md5,
                "pixel_md5": pixel_md5, "params": {"size": size},
                "versions": {"numpy": np.__version__}})
    (images / "aligned.json").write_text(json.dumps(manifest))
    (work / "filter_summary.json").write_text(json.dumps({
        "faces": faces + 10, "kept": faces, "rejected": 10, "reasons": {"resolution": 10},
        "config": {"min_size": 1024.0}}))
    return work


def run_export(work, fmt, out):
    """(seconds, peak RSS in MB) of one export process."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "metfaces_build", "export", "--work", str(work), "--format",
            fmt, "--out", str(out), "--quiet"]
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"export --format {fmt} failed ({proc.returncode}):\n{stdout}{stderr}")
    return dt, usage.ru_maxrss / 1024, stdout.splitlines()[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", default="10000,1000")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--from", dest="source", default=None,
                    help="align output folder whose PNGs become the crops")
    ap.add_argument("--formats", default="stylegan,webdataset,hf,folder")
    ap.add_argument("--keep", default=None, help="build the work directories here and keep them")
    ap.add_argument("--make", default=None, help=argparse.SUPPRESS)  # build one, in a child
    args = ap.parse_args(argv)
    if args.make:
        make_work(args.make, int(args.faces), args.size, args.source)
        return 0
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        print(f"{'faces':>6} {'format':<11} {'seconds':>8} {'peak RSS MB':>12}")
        for n in (int(x) for x in args.faces.split(",")):
            t = time.perf_counter()
            # built in a child process: ru_maxrss of a spawned export counts its parent's
            # memory from before exec, so this process must stay small
            work = root / f"work-{n}"
            subprocess.run([sys.executable, __file__, "--make", str(work), "--faces", str(n),
                            "--size", str(args.size)]
                           + (["--from", args.source] if args.source else []), check=True)
            print(f"# work directory of {n} faces built in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr)
            for fmt in args.formats.split(","):
                out = root / f"out-{n}-{fmt}" / ("d.zip" if fmt == "stylegan" else "d")
                dt, rss, line = run_export(work, fmt, out)
                print(f"{n:>6} {fmt:<11} {dt:>8.1f} {rss:>12.0f}   {line}", flush=True)
                shutil.rmtree(out.parent)
            if not args.keep:
                shutil.rmtree(work)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
