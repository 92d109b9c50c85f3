#!/usr/bin/env python3
"""Make a small synthetic alignment case set: source images + a metfaces.json.

usage: make_align_cases.py OUTDIR [--seed N]

numpy-made textures (no third-party images) with one 68-point face shape placed by a
random similarity transform: a plain face, one near a corner (the aligner pads), one
large enough that the aligner shrinks, two faces in one image, and grayscale, RGBA and
palette sources. Used by the README's quick start and by tools/bench_align.py.
"""
import argparse
import hashlib
import json
import os

import numpy as np
from PIL import Image

# A mean 68-point face (iBUG order), unit inter-ocular-ish scale, centred at the origin.
MEAN_SHAPE = np.array([
    [-1.00, -0.55], [-0.99, -0.30], [-0.96, -0.05], [-0.91, 0.20], [-0.82, 0.44], [-0.67, 0.65],
    [-0.48, 0.82], [-0.25, 0.94], [0.00, 0.98], [0.25, 0.94], [0.48, 0.82], [0.67, 0.65],
    [0.82, 0.44], [0.91, 0.20], [0.96, -0.05], [0.99, -0.30], [1.00, -0.55], [-0.80, -0.78],
    [-0.65, -0.88], [-0.47, -0.90], [-0.30, -0.86], [-0.14, -0.80], [0.14, -0.80], [0.30, -0.86],
    [0.47, -0.90], [0.65, -0.88], [0.80, -0.78], [0.00, -0.58], [0.00, -0.40], [0.00, -0.22],
    [0.00, -0.05], [-0.18, 0.06], [-0.09, 0.09], [0.00, 0.11], [0.09, 0.09], [0.18, 0.06],
    [-0.62, -0.55], [-0.52, -0.61], [-0.40, -0.61], [-0.30, -0.54], [-0.41, -0.50], [-0.52, -0.50],
    [0.30, -0.54], [0.40, -0.61], [0.52, -0.61], [0.62, -0.55], [0.52, -0.50], [0.41, -0.50],
    [-0.35, 0.36], [-0.22, 0.30], [-0.09, 0.27], [0.00, 0.29], [0.09, 0.27], [0.22, 0.30],
    [0.35, 0.36], [0.22, 0.46], [0.10, 0.50], [0.00, 0.51], [-0.10, 0.50], [-0.22, 0.46],
    [-0.30, 0.36], [-0.09, 0.34], [0.00, 0.35], [0.09, 0.34], [0.30, 0.36], [0.09, 0.41],
    [0.00, 0.42], [-0.09, 0.41]])

# (image w,h, [(face half-width px, angle deg, centre as fraction of w,h)], stored shrink, mode)
CASES = [
    ((1600, 2000), [(220, 4.0, (0.5, 0.45))], 1, 'RGB'),
    ((1400, 1800), [(250, -12.0, (0.2, 0.17))], 1, 'RGB'),
    ((2600, 3000), [(700, 8.0, (0.5, 0.5))], 2, 'RGB'),
    ((2400, 1600), [(210, 25.0, (0.3, 0.5)), (170, -5.0, (0.75, 0.55))], 2, 'RGB'),
    ((1200, 1500), [(300, 0.0, (0.5, 0.88))], 1, 'L'),
    ((1500, 1500), [(240, 40.0, (0.85, 0.5))], 4, 'RGBA'),
    ((1300, 1700), [(200, -3.0, (0.45, 0.4))], 1, 'P'),
]


def texture(rng, h, w, k):
    coarse = rng.randint(0, 256, size=(h // k + 2, w // k + 2, 3)).astype(np.float32)
    img = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((xx * 5 + yy * 3) % 19 < 2)[..., None] * 35
    return np.clip(img.astype(np.int32) + stripes, 0, 255).astype(np.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('outdir')
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args(argv)
    rng = np.random.RandomState(a.seed)
    os.makedirs(os.path.join(a.outdir, 'unprocessed'), exist_ok=True)
    records = []
    for n, ((w, h), faces, shrink, mode) in enumerate(CASES):
        obj_id = str(a.seed * 100 + n)
        img = Image.fromarray(texture(rng, h, w, int(rng.randint(10, 40))), 'RGB')
        img = img.convert(mode) if mode != 'P' else img.quantize(64)
        rel = f'unprocessed/image-{obj_id}.png'
        path = os.path.join(a.outdir, rel)
        img.save(path)
        md5 = hashlib.md5(open(path, 'rb').read()).hexdigest()
        for idx, (half, angle, (fx, fy)) in enumerate(faces):
            t = np.deg2rad(angle + rng.uniform(-2, 2))
            rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            full = MEAN_SHAPE @ rot.T * half * rng.uniform(0.95, 1.05) + [fx * w, fy * h]
            full += rng.normal(0, 1.0, full.shape)
            stored = np.rint(full / shrink - 0.5).astype(int)
            x0, y0 = stored.min(axis=0)
            x1, y1 = stored.max(axis=0)
            records.append({
                'obj_id': obj_id, 'meta_url': '', 'source_url': '', 'source_path': rel,
                'source_md5': md5, 'image_path': f'images/{obj_id}-{idx:02d}.png', 'image_md5': '',
                'title': f'Synthetic case {n}', 'artist_display_name': 'make_align_cases.py',
                'face_spec': {'rect': [int(x0), int(y0), int(x1), int(y1)],
                              'landmarks': stored.tolist(), 'shrink': shrink},
                'face_idx': idx})
    with open(os.path.join(a.outdir, 'metfaces.json'), 'w') as f:
        json.dump(records, f, indent=1)
    print(f'{len(records)} faces in {len(CASES)} images -> {a.outdir}')


if __name__ == '__main__':
    main()
