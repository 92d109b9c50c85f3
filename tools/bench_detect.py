#!/usr/bin/env python3
"""Time face detection on a 16 MP JPEG: our shrunk path vs full-resolution HOG.

Builds a 4896x3264 JPEG from sample photos (dlib's example faces in ../shared/data when
present, else matplotlib's grace_hopper.jpg / scikit-image's astronaut.png), then times
  full-res: decode at full size + HOG (upsample 0) + landmarks
  ours:     metfaces_build.stages.detect (load_shrunk + run_detector), default settings
and checks that every face large enough for a 1024 crop (qsize >= 1024 at full resolution,
ALIGN.md step 2) in the full-res run is found by ours, with the landmark difference.

With --cascade, instead compares hog / cascade / cnn on a small set of images (the shared
sample photos and teaser crops, plus harder variants: rotated 25 degrees, greyscale with low
contrast, sepia): recall of CNN's faces and seconds per image.

usage: python tools/bench_detect.py [--repeat N] [--max-side PX] [--upsample N] [--keep FILE]
       python tools/bench_detect.py --cascade
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("METFACES_SHARED", REPO.parent / "shared")) / "data"
SIZE = (4896, 3264)  # 16 MP, a common camera size


def sample_photos() -> list:
    """(image, box) pastes: one very large face, three painted faces at crop size ~1088 px
    (MetFaces teaser crops, when present), and a group photo of small faces."""
    faces, teaser = SHARED / "dlib-faces", SHARED / "metfaces-teaser"
    if faces.is_dir():
        big = Image.open(faces / "Tom_Cruise_avp_2014_4.jpg").convert("RGB")
        group = Image.open(faces / "bald_guys.jpg").convert("RGB")
    else:
        import matplotlib.cbook as cbook
        from skimage import data
        big = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
        group = Image.fromarray(data.astronaut())
    pastes = [(big, (0, 0, 2300, 3264)), (group, (3388, 1088, 4896, 3264))]
    if teaser.is_dir():
        boxes = [(2300, 0, 3388, 1088), (3388, 0, 4476, 1088), (2300, 1088, 3388, 2176)]
        pastes += [(Image.open(teaser / f"metfaces-teaser-{i}.png").convert("RGB"), box)
                   for i, box in enumerate(boxes)]
    return pastes


def build_jpeg(path: Path) -> None:
    canvas = Image.new("RGB", SIZE, (128, 120, 110))
    for im, (l, t, r, b) in sample_photos():
        scale = min((r - l) / im.width, (b - t) / im.height)
        size = (round(im.width * scale), round(im.height * scale))
        canvas.paste(im.resize(size, Image.LANCZOS), (l, t))
    canvas.save(path, quality=92)


def qsize(landmarks_full: np.ndarray) -> float:
    """ALIGN.md step 2 in short: 2 * max(2 * eye distance, 1.8 * eye-to-mouth)."""
    lm = landmarks_full
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    e2e, e2m = np.hypot(*(eye_r - eye_l)), np.hypot(*(mouth - (eye_l + eye_r) / 2))
    return 2 * max(2 * e2e, 1.8 * e2m)  # hypot(x) * 2 with x of length max(...)


def full_res(path: Path, models, repeat: int):
    from metfaces_build.stages.detect import DetectOptions, run_detector
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        arr = np.asarray(Image.open(path).convert("RGB"))
        dets = run_detector(arr, DetectOptions(upsample=0), models).detections
        times.append(time.perf_counter() - t)
    return min(times), dets


def ours(path: Path, models, repeat: int, max_side: int, upsample: int):
    from metfaces_build.stages.detect import DetectOptions, load_shrunk, run_detector
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        shrunk = load_shrunk(path, max_side)
        dets = run_detector(shrunk.pixels, DetectOptions(upsample=upsample, max_side=max_side),
                            models).detections
        times.append(time.perf_counter() - t)
    return min(times), dets, shrunk


def cascade_set() -> list:
    """(name, RGB image) pairs: sample photos, teaser crops and harder variants of them."""
    from PIL import ImageEnhance, ImageOps
    base = [(p.stem, Image.open(p).convert("RGB"))
            for folder in ("dlib-faces", "metfaces-teaser") if (SHARED / folder).is_dir()
            for p in sorted((SHARED / folder).iterdir()) if p.suffix in (".jpg", ".png")]
    if not base:
        raise SystemExit(f"{SHARED} has no sample images")
    hard = []
    for name, im in base:
        if name.startswith("metfaces-teaser") or name in ("Tom_Cruise_avp_2014_4", "2008_001009"):
            hard.append((name + "-rot25", im.rotate(25, Image.BICUBIC, fillcolor=(128, 120, 110))))
            grey = ImageEnhance.Contrast(im.convert("L")).enhance(0.45).convert("RGB")
            hard.append((name + "-lowcontrast", grey))
            hard.append((name + "-sepia", ImageOps.colorize(im.convert("L"), (60, 30, 10), (240, 220, 170))))
    return base + hard


def cascade_report() -> int:
    from metfaces_build.stages.detect import DetectOptions, load_shrunk, run_detector, same_face
    from metfaces_build.infra.models import load_models, resolve_models
    models = load_models(resolve_models(need_cnn=True))
    totals = {k: 0.0 for k in ("hog", "cascade", "cnn")}
    found = {k: 0 for k in totals}
    n_cnn_faces = cnn_runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, im in cascade_set():
            path = Path(tmp) / f"{name}.png"
            im.save(path)
            arr = load_shrunk(path).pixels
            runs = {}
            for det in totals:
                t = time.perf_counter()
                runs[det] = run_detector(arr, DetectOptions(detector=det), models)
                totals[det] += time.perf_counter() - t
            ref = runs["cnn"].detections
            n_cnn_faces += len(ref)
            cnn_runs += runs["cascade"].cnn_ran
            for det in totals:
                found[det] += sum(any(same_face(r.rect, d.rect) for d in runs[det].detections) for r in ref)
            print(f"{name:34s} cnn {len(ref):2d}  hog {len(runs['hog'].detections):2d}  cascade "
                  f"{len(runs['cascade'].detections):2d}{'  (cnn ran)' if runs['cascade'].cnn_ran else ''}")
    n = len(cascade_set())
    print(f"\n{n} images, {n_cnn_faces} faces found by the CNN; cascade ran the CNN on {cnn_runs}")
    for det in totals:
        print(f"{det:8s} recall of CNN's faces {found[det]}/{n_cnn_faces} = "
              f"{found[det] / max(1, n_cnn_faces):.2f}; {totals[det] / n:.3f} s/image "
              f"({totals[det] / totals['cnn']:.2f} of CNN's time)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-side", type=int, default=None)
    ap.add_argument("--upsample", type=int, default=None)
    ap.add_argument("--keep", help="also save the 16 MP test JPEG here")
    ap.add_argument("--cascade", action="store_true", help="compare hog / cascade / cnn instead")
    a = ap.parse_args()
    if a.cascade:
        return cascade_report()
    from metfaces_build.core.metrics import box_iou, rect_edges
    from metfaces_build.stages.detect import DEFAULT_MAX_SIDE, DEFAULT_UPSAMPLE

    def iou(a, b):
        return box_iou(rect_edges(a), rect_edges(b))
    from metfaces_build.infra.models import load_models, resolve_models
    max_side = a.max_side or DEFAULT_MAX_SIDE
    upsample = DEFAULT_UPSAMPLE if a.upsample is None else a.upsample
    models = load_models(resolve_models())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.keep) if a.keep else Path(tmp) / "16mp.jpg"
        build_jpeg(path)
        t_full, full = full_res(path, models, a.repeat)
        t_ours, mine, shrunk = ours(path, models, a.repeat, max_side, upsample)
    s = shrunk.shrink
    print(f"image: {SIZE[0]}x{SIZE[1]} JPEG; ours: shrink {s} ({shrunk.method}), "
          f"max-side {max_side}, HOG upsample {upsample}")
    print(f"full-res HOG (upsample 0): {t_full:.3f} s/image, {len(full)} faces")
    print(f"ours:                      {t_ours:.3f} s/image, {len(mine)} faces "
          f"({t_full / t_ours:.1f}x faster)")
    big = [d for d in full if qsize(np.array(d.landmarks, float) + 0.5) >= 1024]
    missing, errs = 0, []
    for d in big:
        scaled = [tuple(int(round((v + 0.5) * s - 0.5)) for v in m.rect) for m in mine]
        j = max(range(len(mine)), key=lambda k: iou(d.rect, scaled[k]), default=None)
        if j is None or iou(d.rect, scaled[j]) < 0.5:
            missing += 1
            continue
        ours_full = (np.array(mine[j].landmarks, float) + 0.5) * s - 0.5
        e = np.hypot(*(ours_full - np.array(d.landmarks, float)).T)
        iod = np.hypot(*np.subtract(d.landmarks[45], d.landmarks[36]))
        errs.append((e.mean(), e.mean() / iod))
    print(f"faces with qsize >= 1024 at full res: {len(big)}; found by ours: {len(big) - missing}")
    for px, rel in errs:
        print(f"  landmark difference vs full-res: {px:.1f} px mean ({rel:.3f} of inter-ocular)")
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
