"""Seconds per face and peak memory of every stage, run as whole processes, at 5,000 to
200,000 faces: does the bookkeeping around the per-image work stay flat per face?

    python tools/bench_scale.py                          # N = 5,000 and 20,000
    python tools/bench_scale.py --sizes 200000 --root /tmp/scale --keep
    python tools/bench_scale.py --sizes 5000 --stages filter,align

For each N it builds a synthetic work directory (written directly, not fetched): N Met
objects with one small original each (a 160x160 JPEG, a smooth random colour field, so
every face's crop and hash differ), their API records, objects.jsonl with each
original's sha256, and faces.json with one synthetic 68-point face per original (qsize
about 100-150 px, some tilted or too small, so the filter rejects a share). Then it runs
each stage as `python -m metfaces_build ...` in a fresh process and reads its wall time
CPU time and peak RSS (GNU time: the process and the pool workers it waited for; on a
shared machine the CPU time is the steadier figure):

  fetch   N image-less filler records from the loopback emulator (in this process, no
          pacing: --rate 100000), into a scratch directory: listing, records, journal
          (no image bytes: the emulator's fillers have none); only N <= --fetch-max
  detect  dlib HOG on the N originals (they hold no faces: this is per-image cost plus
          journal bookkeeping); faces.json is then replaced by the synthetic faces;
          only N <= --detect-max
  filter  every test, crop tests included (decodes every original), --min-size 64;
          with --no-crop-tests only the record tests and the bookkeeping
  align   every kept face at --size (default 64), PNG level 1
  report  report/ (markdown, HTML, stats, contact sheets) via stages.report.report
  review  report/review.html and its thumbnails
  export  dataset.zip of the aligned crops
  status  `metfaces-build status`, when the command exists

Rows give seconds per input face (N), so a stage that does less per face (align on the
kept faces only) still compares across N. --results FILE appends one JSON line per row,
so a long run keeps what it measured.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synthfaces: the tests' 68-point template

STAGES = ("fetch", "detect", "filter", "align", "report", "review", "export", "status")
SIDE = 160
DEPARTMENTS = ["European Paintings", "Drawings and Prints", "Photographs",
               "American Paintings and Sculpture", "The Robert Lehman Collection"]


def build_work(work: Path, n: int, seed: int = 1) -> float:
    """The work directory for n objects and faces; returns seconds spent."""
    import numpy as np
    from PIL import Image

    from synthfaces import face_json, place
    t0 = time.perf_counter()
    rng = np.random.RandomState(seed)
    for d in ("originals", "api"):
        (work / d).mkdir(parents=True, exist_ok=True)
    faces = work / "faces.json.tmp"
    with open(work / "objects.jsonl", "w") as rows, open(faces, "w") as ff:
        ff.write("[")
        for i in range(n):
            oid = str(100000 + i)
            field = rng.randint(0, 256, size=(5, 5, 3)).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(field).resize((SIDE, SIDE), Image.Resampling.BICUBIC).save(
                buf, format="JPEG", quality=80)
            data = buf.getvalue()
            rel = f"originals/{oid}.jpg"
            (work / rel).write_bytes(data)
            dept = DEPARTMENTS[i % len(DEPARTMENTS)]
            api = {"objectID": int(oid), "title": f"Portrait no. {i}", "artistDisplayName": f"Painter {i % 97}",
                   "department": dept, "objectDate": str(1500 + i % 400), "isPublicDomain": True,
                   "objectURL": f"https://www.metmuseum.org/art/collection/search/{oid}"}
            (work / "api" / f"{oid}.json").write_text(json.dumps(api))
            sha = hashlib.sha256(data).hexdigest()
            rows.write(json.dumps({"id": int(oid), "status": "ok", "department": dept, "title": api["title"],
                                   "path": rel, "bytes": len(data), "sha256": sha,
                                   "md5": hashlib.md5(data).hexdigest(), "width": SIDE, "height": SIDE,
                                   "is_public_domain": True}) + "\n")
            scale = rng.uniform(30, 58)  # qsize 77..148; below 64 px: none
            face = face_json(oid, 0, place(scale, SIDE / 2, SIDE / 2 + 4, angle=rng.uniform(-12, 12)),
                             source_path=rel, detector="hog", score=round(float(rng.uniform(-0.1, 2)), 4),
                             size=(SIDE, SIDE))
            face["source_sha256"] = sha
            ff.write(("," if i else "") + "\n" + json.dumps(face))
        ff.write("\n]\n")
    os.replace(faces, work / "synthetic_faces.json")
    return time.perf_counter() - t0


BUILT = {"originals", "api", "objects.jsonl", "synthetic_faces.json"}


def reset_work(work: Path) -> None:
    """A kept work directory back to what build_work wrote (every stage's output gone),
    so each stage measures a first run, not a skip."""
    import shutil
    for p in work.iterdir():
        if p.name not in BUILT:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def timed(cmd: list, log: Path, env: dict) -> tuple:
    """(wall seconds, CPU seconds, peak RSS in MB, exit status) of one command in a fresh
    process (CPU: user + system of it and the workers it waited for)."""
    stats = log.with_suffix(".time")
    with open(log, "w") as out:
        rc = subprocess.call(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(stats)] + cmd,
                             stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    parts = stats.read_text().strip().splitlines()[-1].split()
    return float(parts[0]), float(parts[1]) + float(parts[2]), int(parts[3]) / 1024.0, rc


def has_status(env: dict) -> bool:
    return subprocess.call([sys.executable, "-m", "metfaces_build", "status", "--help"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO) == 0


def stage_commands(work: Path, args) -> dict:
    py = [sys.executable, "-m", "metfaces_build"]
    w = str(work)
    wk = ["--workers", str(args.workers)]
    return {
        "detect": py + ["detect", "--work", w, "--quiet"] + wk,
        "filter": py + ["filter", "--work", w, "--min-size", "64", "--quiet"] + wk
        + (["--no-crop-tests"] if args.no_crop_tests else []),
        "align": py + ["align", "--json", f"{w}/filtered.json", "--source-images", w, "--output-dir",
                       f"{w}/images", "--size", str(args.size), "--png-level", "1", "--quiet"] + wk,
        "report": [sys.executable, "-c", "import sys; from metfaces_build.stages.report import report, "
                   "ReportOptions; s = report(sys.argv[1], ReportOptions(source_images=sys.argv[1])); "
                   "print(*s.lines, sep='\\n'); sys.exit(s.exit_code)", w],
        "review": py + ["review", "--work", w, "--quiet"] + wk,
        "export": py + ["export", "--work", w, "--out", f"{w}/dataset.zip", "--quiet"],
        "status": py + ["status", "--work", w],
    }


def run_fetch(n: int, scratch: Path, args, env: dict) -> tuple:
    from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator
    ids = scratch / "ids.txt"
    ids.write_text("".join(f"{SYNTHETIC_BASE + i}\n" for i in range(1, n + 1)))
    with start_emulator(synthetic=n) as h:
        cmd = [sys.executable, "-m", "metfaces_build", "fetch", "--work", str(scratch / "work"),
               "--api", h.api_root, "--ids-file", str(ids), "--rate", "100000", "--workers", "4",
               "--quiet"]
        return timed(cmd, scratch / "fetch.log", env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000])
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in pipeline order")
    ap.add_argument("--root", type=Path, default=None, help="where work directories go (default: temp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directories (reused when present)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="align output side")
    ap.add_argument("--fetch-max", type=int, default=20_000)
    ap.add_argument("--detect-max", type=int, default=20_000)
    ap.add_argument("--results", type=Path, default=None, help="append one JSON line per row")
    ap.add_argument("--no-crop-tests", action="store_true",
                    help="filter without the crop tests (no original decoded: the bookkeeping alone)")
    ap.add_argument("--no-reset", action="store_true",
                    help="run the stages on a kept work directory as it is (e.g. review after an "
                         "earlier run's filter and align), not from scratch")
    args = ap.parse_args()
    stages = [s for s in STAGES if s in args.stages.split(",")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if "status" in stages and not has_status(env):
        print("status: no such command in this version; skipped", flush=True)
        stages.remove("status")
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-scale-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    print("| faces | stage | wall s | wall ms/face | CPU ms/face | peak RSS MB | exit |\n"
          "|---:|---|---:|---:|---:|---:|---:|", flush=True)
    try:
        for n in args.sizes:
            work = root / f"w{n}"
            if not (work / "synthetic_faces.json").exists():
                took = build_work(work, n)
                print(f"<!-- built {n} objects in {took:.0f} s: {work} -->", flush=True)
            elif not args.no_reset:
                reset_work(work)
            logs = root / f"logs{n}"
            logs.mkdir(exist_ok=True)
            cmds = stage_commands(work, args)
            for stage in stages:
                if stage == "fetch":
                    if n > args.fetch_max:
                        continue
                    scratch = Path(tempfile.mkdtemp(prefix="fetch-", dir=root))
                    secs, cpu, rss, rc = run_fetch(n, scratch, args, env)
                    subprocess.call(["rm", "-rf", str(scratch)])
                else:
                    if stage == "detect" and n > args.detect_max:
                        continue
                    if stage == "filter" or (stage != "detect" and not (work / "faces.json").exists()):
                        synth = (work / "synthetic_faces.json").read_bytes()  # after detect
                        if not (work / "faces.json").exists() or (work / "faces.json").read_bytes() != synth:
                            (work / "faces.json").write_bytes(synth)
                    secs, cpu, rss, rc = timed(cmds[stage], logs / f"{stage}.log", env)
                row = {"faces": n, "stage": stage, "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                       "ms_per_face": round(1000 * secs / n, 3), "cpu_ms_per_face": round(1000 * cpu / n, 3),
                       "peak_rss_mb": round(rss), "exit": rc,
                       "workers": args.workers, "align_size": args.size,
                       "crop_tests": not args.no_crop_tests,
                       "when": time.strftime("%Y-%m-%d %H:%M:%S")}
                print(f"| {n:,} | {stage} | {secs:.1f} | {row['ms_per_face']:.2f} | "
                      f"{row['cpu_ms_per_face']:.2f} | {rss:.0f} | {rc} |",
                      flush=True)
                if args.results:
                    with open(args.results, "a") as f:
                        f.write(json.dumps(row) + "\n")
            if not args.keep:
                subprocess.call(["rm", "-rf", str(work), str(logs)])
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
