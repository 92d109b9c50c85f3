#!/usr/bin/env python3
"""Benchmark `metfaces-build detect` side by side with its yardsticks, as whole processes.

Default (photos): eight 16 MP JPEGs (4896x3264), each with one large face (dlib's example
photo, the three MetFaces teaser crops and four portrait paintings, from ../shared/data),
  reference: tools/reference_detect.py, plain dlib at full resolution (HOG, upsample 0,
             then the 68-point predictor);
  ours:      `metfaces-build detect --images DIR --out F --workers 1` (default settings);
  old scan:  the same with --min-face 0 (HOG upsample 1 on the shrunk copy, as before).
--cascade: the shared paintings, teaser crops and harder variants of the teasers (21
images, upscaled to 2048 px on the long side), `detect --detector cnn` against
`detect --detector cascade` (and the cascade with --min-face 0).

Runs are interleaved (A B A B ...) --repeat times; each figure is the fastest run, and the
ratios compare runs of the same round. Faces are compared too: every face worth keeping
(crop side qsize >= --min-face at full resolution, ALIGN.md step 2) that the yardstick finds
must be found (box IoU >= 0.5 in the full-resolution frame), and all faces are counted.

usage: python tools/bench_detect.py [--repeat N] [--keep DIR]
       python tools/bench_detect.py --cascade [--repeat N] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("METFACES_SHARED", REPO.parent / "shared")) / "data"
SIZE = (4896, 3264)  # 16 MP, a common camera size
MIN_FACE = 1024
PORTRAITS = ["leonardo-mona-lisa-detail.jpg", "clouet-francis-i.jpg",
             "fayum-portrait-leuropeenne.jpg", "ribera-club-footed-boy.jpg"]


def qsize(landmarks) -> float:
    """ALIGN.md step 2 in short: 2 * max(2 * eye distance, 1.8 * eye-to-mouth)."""
    lm = np.asarray(landmarks, float)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    return 2 * max(2 * np.hypot(*(eye_r - eye_l)), 1.8 * np.hypot(*(mouth - (eye_l + eye_r) / 2)))


def iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


# ---- inputs ----------------------------------------------------------------------------

def photo_sources() -> list:
    srcs = [Image.open(SHARED / "dlib-faces" / "Tom_Cruise_avp_2014_4.jpg")]
    srcs += [Image.open(SHARED / "metfaces-teaser" / f"metfaces-teaser-{i}.png") for i in range(3)]
    srcs += [Image.open(SHARED / "paintings" / name) for name in PORTRAITS]
    return [im.convert("RGB") for im in srcs]


def build_photos(folder: Path) -> None:
    """Eight 16 MP JPEGs: one source each, filling the height, on a plain wall."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(photo_sources()):
        canvas = Image.new("RGB", SIZE, (128 + 9 * i, 120, 110))
        scale = SIZE[1] / im.height
        big = im.resize((round(im.width * scale), SIZE[1]), Image.LANCZOS)
        canvas.paste(big, ((SIZE[0] - big.width) // 2 + (i - 4) * 150, 0))
        canvas.save(folder / f"photo-{i}.jpg", quality=92)


def build_paintings(folder: Path, long_side: int = 2048) -> None:
    """21 images at `long_side` px: the 12 paintings, the 3 teaser crops, and each teaser
    rotated by 25 degrees and as a sepia print."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [(p.stem, Image.open(p).convert("RGB"))
             for p in sorted((SHARED / "paintings").glob("*.jpg"))]
    teasers = [(f"teaser-{i}", Image.open(SHARED / "metfaces-teaser" / f"metfaces-teaser-{i}.png")
                .convert("RGB")) for i in range(3)]
    items += teasers
    for name, im in teasers:
        items.append((name + "-rot25", im.rotate(25, Image.BICUBIC, fillcolor=(128, 120, 110))))
        items.append((name + "-sepia", ImageOps.colorize(
            ImageEnhance.Contrast(im.convert("L")).enhance(0.8), (60, 30, 10), (240, 220, 170))))
    for name, im in items:
        scale = long_side / max(im.size)
        im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS) \
            .save(folder / f"{name}.jpg", quality=95)


# ---- running and comparing --------------------------------------------------------------

def timed(cmd) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr}")
    return time.perf_counter() - t


def ours_cmd(images: Path, out: Path, *flags) -> list:
    return [sys.executable, "-m", "metfaces_build", "detect", "--images", str(images),
            "--out", str(out), "--workers", "1", "--quiet", "--force", *map(str, flags)]


def ours_faces(out: Path) -> list:
    """(file stem, full-res rect, qsize) from faces.json (shrunk frame mapped back)."""
    faces = []
    for f in json.loads(out.read_text()):
        s = f["face_spec"]["shrink"]
        rect = [(v + 0.5) * s - 0.5 for v in f["face_spec"]["rect"]]
        lm = (np.asarray(f["face_spec"]["landmarks"], float) + 0.5) * s
        faces.append((f["obj_id"], rect, qsize(lm)))
    return faces


def reference_faces(out: Path) -> list:
    return [(Path(f["file"]).stem, f["rect"], qsize(np.asarray(f["landmarks"], float) + 0.5))
            for f in json.loads(out.read_text())]


def recall(truth: list, found: list, min_face: float) -> tuple:
    """(found, total) of truth's faces with qsize >= min_face."""
    wanted = [t for t in truth if t[2] >= min_face]
    hit = sum(any(f[0] == t[0] and iou(f[1], t[1]) >= 0.5 for f in found) for t in wanted)
    return hit, len(wanted)


def race(runs: dict, repeat: int) -> dict:
    """name -> list of seconds, the runs interleaved round by round."""
    times = {k: [] for k in runs}
    for _ in range(repeat):
        for name, cmd in runs.items():
            times[name].append(timed(cmd))
    return times


def report(times: dict, base: str, unit: int, what: str) -> None:
    print(f"{'run':<26} {'best s':>8} {'s/' + what:>9} {base + ' / run':>14}  per round")
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(times[base], ts)]
        print(f"{name:<26} {min(ts):8.2f} {min(ts) / unit:9.3f} {min(times[base]) / min(ts):13.2f}x"
              f"  {' '.join(f'{r:.2f}' for r in ratios)}")


def bench_photos(tmp: Path, repeat: int) -> int:
    images = tmp / "photos"
    build_photos(images)
    ref_out, our_out, old_out = tmp / "ref.json", tmp / "ours.json", tmp / "old.json"
    runs = {
        "reference (full-res HOG)": [sys.executable, str(REPO / "tools" / "reference_detect.py"),
                                     "--images", str(images), "--out", str(ref_out)],
        "ours (default)": ours_cmd(images, our_out),
        "ours --min-face 0 (old)": ours_cmd(images, old_out, "--min-face", 0),
    }
    print(f"8 JPEGs of {SIZE[0]}x{SIZE[1]} in {images}; --workers 1; {repeat} rounds")
    times = race(runs, repeat)
    report(times, "reference (full-res HOG)", 8, "image")
    ref, ours, old = reference_faces(ref_out), ours_faces(our_out), ours_faces(old_out)
    print(f"faces: reference {len(ref)}, ours {len(ours)}, old scan {len(old)}")
    for name, found in (("ours", ours), ("old scan", old)):
        hit, n = recall(ref, found, MIN_FACE)
        print(f"  {name}: finds {hit}/{n} of the reference's faces with qsize >= {MIN_FACE}")
    hit, n = recall(old, ours, MIN_FACE)
    print(f"  ours finds {hit}/{n} of the old scan's faces with qsize >= {MIN_FACE}")
    return 0


def bench_cascade(tmp: Path, repeat: int) -> int:
    images = tmp / "paintings"
    build_paintings(images)
    n = len(list(images.glob("*.jpg")))
    outs = {k: tmp / f"{k}.json" for k in ("cnn", "cascade", "cascade0")}
    runs = {
        "cnn": ours_cmd(images, outs["cnn"], "--detector", "cnn"),
        "cascade (default)": ours_cmd(images, outs["cascade"], "--detector", "cascade"),
        "cascade --min-face 0": ours_cmd(images, outs["cascade0"], "--detector", "cascade",
                                         "--min-face", 0),
    }
    print(f"{n} paintings at 2048 px in {images}; --workers 1; {repeat} rounds")
    times = race(runs, repeat)
    report(times, "cnn", n, "image")
    cnn = ours_faces(outs["cnn"])
    for key, name in (("cascade", "cascade (default)"), ("cascade0", "cascade --min-face 0")):
        found = ours_faces(outs[key])
        keep_hit, keep_n = recall(cnn, found, MIN_FACE)
        all_hit, all_n = recall(cnn, found, 0)
        print(f"{name}: {len(found)} faces; of the CNN's {keep_n} faces worth keeping "
              f"(qsize >= {MIN_FACE}) finds {keep_hit}; of all its {all_n} faces {all_hit}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2, help="rounds (default 2)")
    ap.add_argument("--cascade", action="store_true", help="cnn vs cascade on paintings")
    ap.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    a = ap.parse_args()
    if not (SHARED / "paintings").is_dir():
        raise SystemExit(f"{SHARED} has no paintings/ (set METFACES_SHARED)")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(a.keep) if a.keep else Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        return bench_cascade(tmp, a.repeat) if a.cascade else bench_photos(tmp, a.repeat)


if __name__ == "__main__":
    sys.exit(main())
