#!/usr/bin/env python3
"""A literal, serial transcription of the MetFaces aligner (ALIGN.md), as NVIDIA's
metfaces.py runs it: one face at a time, the source decoded for every face, the whole
padded image blurred, one global RandomState. Slow on purpose: it is the yardstick that
`tools/bench_align.py` measures `metfaces-build align` against, and a test oracle.

usage: reference_align.py --json J --source-images D --output-dir O
         [--random-shift S] [--retry-crops] [--no-rotation] [--no-padding]
"""
import argparse
import os
import sys

import numpy as np
import scipy.ndimage
from PIL import Image


def rot90(v):
    return np.array([-v[1], v[0]])


def pad_and_blur(rgb, pad, qsize):
    """Step 7 as the reference does it: the whole padded image, float32, scipy."""
    img = np.pad(np.float32(rgb), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), 'reflect')
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                      1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
    blur = qsize * 0.02
    img += (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return np.uint8(np.clip(np.rint(img), 0, 255))


def process_face(item, src_dir, dst_dir, rng, output_size=1024, transform_size=4096,
                 enable_padding=True, rotate_level=True, random_shift=0.0, retry_crops=False):
    lm = (np.float32(item['face_spec']['landmarks']) + 0.5) * item['face_spec']['shrink']
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    mouth_left, mouth_right = lm[48], lm[54]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    if rotate_level:
        x = eye_to_eye - rot90(eye_to_mouth)
        x /= np.hypot(*x)
        x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
        y = rot90(x)
    else:
        x = np.array([1, 0], dtype=np.float64)
        x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
        y = np.flipud(x) * [-1, 1]
    c0 = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c0 - x - y, c0 - x + y, c0 + x + y, c0 + x - y])
    qsize = np.hypot(*x) * 2

    img = Image.open(os.path.join(src_dir, item['source_path'])).convert('RGB')
    if random_shift != 0:
        for _ in range(1000):
            c = (c0 + np.hypot(*x) * 2 * random_shift * rng.normal(0, 1, c0.shape))
            quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
            crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
                    int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
            if not retry_crops or not (crop[0] < 0 or crop[1] < 0 or crop[2] >= img.width
                                       or crop[3] >= img.height):
                break
        else:
            return None  # rejected

    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0), min(crop[2] + border, img.size[0]),
            min(crop[3] + border, img.size[1]))
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    pad = (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
           int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0), max(pad[2] - img.size[0] + border, 0),
           max(pad[3] - img.size[1] + border, 0))
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(pad_and_blur(np.asarray(img), pad, qsize), 'RGB')
        quad += pad[:2]

    img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                        (quad + 0.5).flatten(), Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    os.makedirs(dst_dir, exist_ok=True)
    name = f"{item['obj_id']}-{int(item['face_idx']):02d}.png"
    img.save(os.path.join(dst_dir, name))
    return name


def main(argv=None):
    import json
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--json', required=True)
    p.add_argument('--source-images', required=True)
    p.add_argument('--output-dir', required=True)
    p.add_argument('--random-shift', type=float, default=0.0)
    p.add_argument('--retry-crops', action='store_true')
    p.add_argument('--no-rotation', action='store_true')
    p.add_argument('--no-padding', action='store_true')
    a = p.parse_args(argv)
    rng = np.random.RandomState(12345)
    for item in json.load(open(a.json)):
        name = process_face(item, a.source_images, a.output_dir, rng, enable_padding=not a.no_padding,
                            rotate_level=not a.no_rotation, random_shift=a.random_shift,
                            retry_crops=a.retry_crops)
        print(name or f"{item['obj_id']}-{int(item['face_idx']):02d}: rejected")
    return 0


if __name__ == '__main__':
    sys.exit(main())
