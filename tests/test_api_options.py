"""Issue 19, item 4: the Python API refuses what the CLI refuses (one check of option
values, infra.stage.check_values), its stage functions show their options in
inspect.signature, align_face takes arrays, FaceSpec maps back to full resolution."""
from __future__ import annotations

import inspect
import json
from typing import Optional

import numpy as np
import pytest
from PIL import Image

import metfaces_build as mb
from metfaces_build.core.records import FaceSpec

from synthfaces import face_json, place, texture


def test_detect_refuses_an_unknown_detector_naming_the_valid_ones(tmp_path):
    for bad in ("CNN", "mtcnn"):
        with pytest.raises(mb.UsageError, match=r"detector must be one of hog, cnn, cascade"):
            mb.detect(tmp_path, detector=bad)
    assert not (tmp_path / "faces.json").exists()


def test_cli_and_api_refuse_the_same_values(tmp_path, cli):
    rc, _, err = cli("detect", "--work", tmp_path, "--max-side", "0")
    assert rc == 2 and "max-side" in err
    with pytest.raises(mb.UsageError, match="max_side must be >= 1"):
        mb.detect(tmp_path, max_side=0)
    with pytest.raises(mb.UsageError, match="upsample must be a whole number"):
        mb.detect(tmp_path, upsample=1.5)
    with pytest.raises(mb.UsageError, match="png_level must be from 0 to 9"):
        mb.align(tmp_path, png_level=12)
    with pytest.raises(mb.UsageError, match="workers must be >= 1"):
        mb.align(tmp_path, workers=0)


def test_run_refuses_a_bad_detector_before_fetching(tmp_path):
    with pytest.raises(mb.UsageError, match="detector must be one of"):
        mb.run(tmp_path / "w", api="http://127.0.0.1:9", ids=[1], detector="CNN")
    assert not (tmp_path / "w" / "objects.jsonl").exists()


def test_filter_min_score(tmp_path):
    with pytest.raises(mb.UsageError, match=r"min_score is a threshold per detector.*'cnn': 0.5"):
        mb.filter(tmp_path, min_score=0.5)
    with pytest.raises(mb.UsageError, match="DETECTOR=NUMBER"):
        mb.filter(tmp_path, min_score=["cnn"])
    # the accepted forms get past the check, to the missing faces file
    for ok in ({"cnn": 0.8}, "cnn=0.8", ["cnn=0.8", "hog=0.5"]):
        with pytest.raises(mb.UsageError, match="faces file not found"):
            mb.filter(tmp_path, min_score=ok)


def test_paths_may_be_path_objects(tmp_path):
    from metfaces_build.infra.stage import options_from_kwargs
    from metfaces_build.stages.detect import DetectOptions
    opts = options_from_kwargs(DetectOptions, {"images": tmp_path, "out": tmp_path / "f.json"}, "detect")
    assert opts.images == str(tmp_path) and opts.out == str(tmp_path / "f.json")


def test_detect_image_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(mb.UsageError, match="no such image file"):
        mb.detect_image(tmp_path / "nope.jpg")
    with pytest.raises(mb.UsageError, match="detector must be one of"):
        mb.detect_image(tmp_path / "nope.jpg", detector="mtcnn")


def _face(tmp_path):
    arr = texture(4, 600, 500)
    rec = face_json("a", 0, place(60, 300, 250), source_path="a.png")
    return arr, FaceSpec.from_json(rec["face_spec"])


def test_align_face_checks_size_and_takes_arrays(tmp_path):
    arr, spec = _face(tmp_path)
    for bad in ({"size": 0}, {"supersampling": 0}, {"size": -5}):
        with pytest.raises(mb.UsageError, match=">= 1"):
            mb.align_face(arr, spec, **bad)
    with pytest.raises(mb.UsageError, match="no such image file"):
        mb.align_face(tmp_path / "missing.png", spec)
    from_array = mb.align_face(arr, spec, size=64)
    from_pil = mb.align_face(Image.fromarray(arr), spec, size=64)
    Image.fromarray(arr).save(tmp_path / "a.png")
    from_path = mb.align_face(tmp_path / "a.png", spec, size=64)
    assert from_array.size == (64, 64)
    assert from_array.tobytes() == from_pil.tobytes() == from_path.tobytes()


def test_signatures_list_the_keyword_options():
    sig = inspect.signature(mb.detect)
    p = sig.parameters["detector"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == "hog" and p.annotation is str
    assert sig.parameters["max_pixels"].annotation == Optional[int]
    assert list(sig.parameters)[0] == "work"
    assert "VAR_KEYWORD" not in {p.kind.name for p in sig.parameters.values()}
    align = inspect.signature(mb.align).parameters
    assert align["size"].default == 1024 and align["no_rotation"].default is False
    assert align["json"].default is None          # from the Work when not given
    verify = inspect.signature(mb.verify).parameters
    assert list(verify)[:2] == ["json", "images"] and verify["accept_same_pixels"].default is False
    assert "out" not in list(inspect.signature(mb.export).parameters)[2:]  # positional there
    for name in ("fetch", "detect", "filter", "align", "compare", "report", "review", "export",
                 "verify", "run"):
        fn = getattr(mb, name)
        assert fn.__doc__ and fn.__name__ == name
        assert any(p.kind is p.KEYWORD_ONLY for p in inspect.signature(fn).parameters.values())


def test_align_accepts_none_for_the_paths_its_work_gives(tmp_path):
    """The signature's json=None means "from the Work": passing it says the same."""
    with pytest.raises(mb.UsageError, match="filtered.json"):
        mb.align(mb.Work(tmp_path), json=None, quiet=True)


def test_face_spec_at_full_resolution():
    spec = FaceSpec(rect=(10, 20, 30, 40), landmarks=tuple((i, 2 * i) for i in range(68)), shrink=3)
    assert spec.box_full() == (30.0, 60.0, 93.0, 123.0)
    lm = spec.landmarks_full()
    assert len(lm) == 68 and lm[0] == (1.5, 1.5) and lm[5] == (16.5, 31.5)
    from metfaces_build.core.geometry import landmarks_full, rect_full
    assert np.allclose(lm, landmarks_full(spec.landmarks, spec.shrink))
    assert np.allclose(spec.box_full(), rect_full(spec.rect, spec.shrink))
    one = FaceSpec(rect=(1, 2, 3, 4), landmarks=spec.landmarks, shrink=1)
    assert one.box_full() == (1.0, 2.0, 4.0, 5.0)
