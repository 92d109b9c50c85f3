#!/usr/bin/env python3
"""Plain dlib face detection, as a script without our shrink rule would run it: every image
decoded at full resolution, dlib's HOG detector (upsample N, default 0), the 68-point
predictor on each box. The yardstick `tools/bench_detect.py` measures `metfaces-build
detect` against.

usage: reference_detect.py --images DIR --out FILE [--upsample N] [--models-dir DIR]

Writes a JSON list of {"file", "rect", "landmarks"} in full-resolution pixels.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--upsample", type=int, default=0)
    p.add_argument("--models-dir")
    a = p.parse_args(argv)
    import dlib
    from metfaces_build.infra.models import resolve_models
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(resolve_models(a.models_dir).predictor))
    faces = []
    for name in sorted(os.listdir(a.images)):
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            continue
        arr = np.asarray(Image.open(os.path.join(a.images, name)).convert("RGB"))
        for r in detector(arr, a.upsample):
            shape = predictor(arr, r)
            faces.append({"file": name, "rect": [r.left(), r.top(), r.right(), r.bottom()],
                          "landmarks": [[q.x, q.y] for q in shape.parts()]})
    Path(a.out).write_text(json.dumps(faces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
