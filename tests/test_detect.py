"""Detect stage: shrink mapping, landmark accuracy, bad images, resume, worker invariance."""
from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REQUIRE_SHARED, SHARED, run_cli_subprocess, skip_unless_required

from metfaces_build.core.metrics import box_iou, rect_edges

from metfaces_build.stages import detect as D
from metfaces_build.infra.faces import load_faces


@pytest.fixture(scope="module")
def models():
    from metfaces_build.infra.models import load_models, resolve_models
    return load_models(resolve_models(need_cnn=True))


def face_photo() -> Image.Image:
    """A real face photo: dlib's Tom Cruise example, else matplotlib's Grace Hopper."""
    p = SHARED / "data" / "dlib-faces" / "Tom_Cruise_avp_2014_4.jpg"
    if p.exists():
        return Image.open(p).convert("RGB")
    try:
        import matplotlib.cbook as cbook
    except ImportError:  # a skip, or a failure where ../shared is required
        skip_unless_required("no face photo available (../shared absent, matplotlib missing)",
                             REQUIRE_SHARED)
    return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")


def to_index_frame(landmarks, shrink: int) -> np.ndarray:
    """Shrunk-frame landmarks -> full-res pixel indices ((p + 0.5) * shrink - 0.5)."""
    return (np.asarray(landmarks, float) + 0.5) * shrink - 0.5


# ---- shrink rule and exact mapping -------------------------------------------------------

def test_shrink_rule():
    assert D.choose_shrink(1024, 800, 1024) == 1
    assert D.choose_shrink(1025, 800, 1024) == 2
    assert D.choose_shrink(800, 4896, 1024) == 5
    assert D.draft_scale(8, 4000, 3000) == 8
    assert D.draft_scale(12, 4000, 3000) == 4
    assert D.draft_scale(6, 4000, 3000) == 2
    assert D.draft_scale(5, 4000, 3000) == 1
    assert D.draft_scale(8, 4000, 40) == 4  # too thin for 1/8


@pytest.mark.parametrize("shrink,fmt", [(4, "JPEG"), (3, "JPEG"), (6, "JPEG"), (3, "PNG")])
def test_shrunk_frame_maps_back_as_p_plus_half_times_shrink(tmp_path, shrink, fmt):
    """A bright square's centroid in the shrunk copy lands on its full-res centroid."""
    w, h = 256 * shrink, 192 * shrink
    a = np.full((h, w, 3), 40, np.uint8)
    x0, y0, side = 101 * shrink // 2, 77 * shrink // 2, 9 * shrink
    a[y0:y0 + side, x0:x0 + side] = 230
    path = tmp_path / ("sq.jpg" if fmt == "JPEG" else "sq.png")
    Image.fromarray(a).save(path, quality=95) if fmt == "JPEG" else Image.fromarray(a).save(path)
    s = D.load_shrunk(path, max_side=256)
    assert s.shrink == shrink and s.pixels.shape == (192, 256, 3)
    if fmt == "JPEG" and shrink % 2 == 0:
        assert s.method.startswith(f"jpeg-draft/{D.draft_scale(shrink, w, h)}")
    g = s.pixels[..., 1].astype(float) - 40
    g[g < 0] = 0
    ys, xs = np.mgrid[:g.shape[0], :g.shape[1]]
    cx, cy = (xs * g).sum() / g.sum(), (ys * g).sum() / g.sum()
    full_cx, full_cy = (cx + 0.5) * shrink - 0.5, (cy + 0.5) * shrink - 0.5
    want = (x0 + (side - 1) / 2, y0 + (side - 1) / 2)
    assert abs(full_cx - want[0]) < 0.1 * shrink and abs(full_cy - want[1]) < 0.1 * shrink


def test_shrunk_detection_matches_full_resolution(tmp_path, models):
    """A big face found on a shrink-4 copy maps back onto the full-res detection."""
    photo = face_photo()
    big = photo.resize((photo.width * 4, photo.height * 4), Image.LANCZOS)
    path = tmp_path / "big.jpg"
    big.save(path, quality=92)
    full = D.detect_faces(Image.open(path), upsample=0, models=models)
    s = D.load_shrunk(path, max_side=max(big.size) // 4)
    ours = D.run_detector(s.pixels, D.DetectOptions(min_face=0), models).detections
    assert s.shrink == 4 and s.method == "jpeg-draft/4" and len(full) == len(ours) == 1
    lm_full = np.asarray(full[0].landmarks, float)
    err = np.hypot(*(to_index_frame(ours[0].landmarks, 4) - lm_full).T).mean()
    iod = np.hypot(*(lm_full[45] - lm_full[36]))
    assert err / iod < 0.03


# ---- accuracy on dlib's annotated photos ------------------------------------------------------

def xml_faces(shared):
    folder = shared("data", "dlib-faces")
    root = ET.parse(folder / "training_with_face_landmarks.xml").getroot()
    for img in root.iter("image"):
        for box in img.iter("box"):
            t, l, w, h = (int(box.get(k)) for k in ("top", "left", "width", "height"))
            pts = np.array([(int(p.get("x")), int(p.get("y"))) for p in box.iter("part")], float)
            yield folder / img.get("file"), (l, t, l + w - 1, t + h - 1), pts


def test_predictor_on_stored_boxes_within_3px(shared, models):
    n = 0
    for path, rect, pts in xml_faces(shared):
        ours = np.asarray(D.predict_landmarks(Image.open(path), rect, models), float)
        assert np.abs(ours - pts).max() <= 3, path.name
        n += 1
    assert n == 18


def test_detected_landmarks_nme_on_dlib_photos(shared, models):
    """Every annotated face is found; mean landmark error < 0.05 inter-ocular (36-45)."""
    cache, nmes = {}, []
    for path, rect, pts in xml_faces(shared):
        if path not in cache:
            s = D.load_shrunk(path)
            cache[path] = (s.shrink, D.run_detector(s.pixels, D.DetectOptions(min_face=0), models).detections)
        shrink, dets = cache[path]
        cands = [to_index_frame(d.landmarks, shrink) for d in dets]
        best = min(cands, key=lambda lm: np.abs(lm.mean(0) - pts.mean(0)).sum())
        iod = np.hypot(*(pts[45] - pts[36]))
        nmes.append(np.hypot(*(best - pts).T).mean() / iod)
    assert len(nmes) == 18 and max(nmes) < 0.2  # every face matched, not a neighbour
    assert np.mean(nmes) < 0.05, np.round(nmes, 3)


def test_several_faces_all_kept_in_documented_order(shared, models):
    img = Image.open(shared("data", "dlib-faces", "2008_001322.jpg"))
    dets = D.detect_faces(img, models=models)
    assert len(dets) == 3
    keys = [(-d.area, d.rect[1], d.rect[0]) for d in dets]
    assert keys == sorted(keys)


def test_no_face_in_the_scream(shared, models):
    assert D.detect_faces(Image.open(shared("data", "dlib-faces", "scream.jpg")), models=models) == []


# ---- MetFaces teaser crops (paintings) ----------------------------------------------------

def crop_framing(landmarks_full: np.ndarray):
    """Centre, side and roll of the MetFaces square (ALIGN.md step 2) from landmarks."""
    lm = landmarks_full
    el, er = lm[36:42].mean(0), lm[42:48].mean(0)
    ea, ma = (el + er) / 2, (lm[48] + lm[54]) / 2
    e2e, e2m = er - el, ma - ea
    x = e2e - np.array([-e2m[1], e2m[0]])
    x = x / np.hypot(*x) * max(np.hypot(*e2e) * 2, np.hypot(*e2m) * 1.8)
    return ea + e2m * 0.1, np.hypot(*x) * 2, np.degrees(np.arctan2(x[1], x[0]))


def teaser(shared, i):
    return Image.open(shared("data", "metfaces-teaser", f"metfaces-teaser-{i}.png")).convert("RGB")


@pytest.mark.parametrize("i", [0, 1, 2])
def test_teaser_crop_gives_one_face_and_its_own_framing(shared, models, i):
    img = teaser(shared, i)
    dets = D.detect_faces(img, models=models)
    assert len(dets) == 1
    centre, qsize, roll = crop_framing(np.asarray(dets[0].landmarks, float) + 0.5)
    n = img.width
    assert np.abs(centre - n / 2).max() < 0.06 * n
    assert abs(qsize / n - 1) < 0.12
    assert abs(roll) < 6


def test_teaser_realigns_to_nearly_the_same_crop(shared, models):
    from metfaces_build.core.records import FaceSpec
    from metfaces_build.stages.align import align_face  # an import error is a failure
    for i in range(3):
        img = teaser(shared, i)
        d = D.detect_faces(img, models=models)[0]
        crop = align_face(img, FaceSpec(rect=d.rect, landmarks=d.landmarks, shrink=1))
        back = np.asarray(crop.resize(img.size, Image.LANCZOS), float)
        mse = ((back - np.asarray(img, float)) ** 2).mean()
        assert 10 * np.log10(255 ** 2 / mse) > 17, i


def test_cascade_runs_cnn_only_when_hog_is_unsure(shared, models):
    sure, unsure = teaser(shared, 0), teaser(shared, 2)  # HOG scores ~2.0 and ~0.4
    opts = D.DetectOptions(detector="cascade", min_face=0)
    r0 = D.run_detector(D.as_rgb_array(sure), opts, models)
    assert not r0.cnn_ran and len(r0.detections) == 1
    r2 = D.run_detector(D.as_rgb_array(unsure), opts, models)
    assert r2.cnn_ran and len(r2.detections) == 1  # CNN's face is HOG's, not a second one
    cnn = D.detect_faces(unsure, detector="cnn", models=models)
    assert len(cnn) == 1 and cnn[0].detector == "cnn" and cnn[0].subdetector is None


def test_min_face_sets_the_finest_scan():
    """Upsampling stops once the detector finds the smallest face worth keeping; 0 = off."""
    box = D.smallest_box(1024, 5)  # a 16 MP photo: shrink 5
    assert box == pytest.approx(1024 / (D.QSIZE_PER_BOX * 5)) and box >= D.HOG_MIN_BOX
    assert D.scan_upsample(1, box, D.HOG_MIN_BOX) == 0
    assert D.scan_upsample(2, D.smallest_box(1024, 8), D.HOG_MIN_BOX) == 1  # 51 px boxes
    assert D.scan_upsample(3, D.smallest_box(0, 5), D.HOG_MIN_BOX) == 3  # no minimum
    assert D.cnn_reduce(D.smallest_box(1024, 2)) == 2 and D.cnn_reduce(0.0) == 1


def coarse_and_old_scan(img, height, models):
    """The face photo scaled to `height` on a 16 MP canvas (shrink 5), detected with the
    old scan (upsample 1, no --min-face) and the default one (--min-face 1024 -> no
    upsampling): (old detection, new detection, mean landmark distance / inter-ocular)."""
    big = img.resize((round(img.width * height / img.height), height), Image.LANCZOS)
    canvas = Image.new("RGB", (4896, 3264), (120, 110, 100))
    canvas.paste(big, (1500, (3264 - height) // 2))
    shrink = D.choose_shrink(*canvas.size, D.DEFAULT_MAX_SIDE)
    arr = np.asarray(canvas.reduce(shrink))
    old = D.run_detector(arr, D.DetectOptions(upsample=1, min_face=0), models, shrink).detections
    new = D.run_detector(arr, D.DetectOptions(upsample=1, min_face=1024), models, shrink).detections
    assert len(old) == len(new) == 1, height
    lm_old, lm_new = np.array(old[0].landmarks, float), np.array(new[0].landmarks, float)
    iod = np.hypot(*(lm_old[45] - lm_old[36]))
    return old[0], new[0], np.hypot(*(lm_old - lm_new).T).mean() / iod


def test_large_photo_same_face_with_the_coarser_scan(models):
    """On a 16 MP-sized photo the default scan (no upsampling) finds the face that the
    old one (upsample 1) found, with nearly the same landmarks (mean within 5% of the
    inter-ocular distance), at most face sizes. Not at every size: the two scans look at
    different pyramid levels, and the predictor's landmarks follow the box; with the
    fallback photo (Grace Hopper, 512x600) filling the canvas's 3264 px height the
    landmarks differ by 9% (a 13% larger crop), while at 2400-3000 px they agree within
    3% (Tom Cruise: within 1% at all four sizes). So: same face at every size, same
    landmarks at 3 of the 4."""
    img = face_photo()
    errors = []
    for height in (2400, 2700, 3000, 3264):
        old, new, err = coarse_and_old_scan(img, height, models)
        assert box_iou(rect_edges(old.rect), rect_edges(new.rect)) > 0.6, height
        errors.append(err)
    assert sum(e < 0.05 for e in errors) >= 3, errors


def test_cascade_cnn_on_a_reduced_copy_finds_the_same_face(shared, models):
    """The cascade's CNN pass on a copy reduced as far as --min-face allows."""
    teaser_big = np.asarray(teaser(shared, 2).resize((1024, 1024), Image.LANCZOS))
    factor = D.cnn_reduce(D.smallest_box(1024, 1))
    assert factor == 4
    full = D.cnn_boxes(teaser_big, 0, models)
    reduced = D.reduced_cnn_boxes(teaser_big, factor, models)
    assert len(full) == len(reduced) == 1 and box_iou(rect_edges(full[0].rect), rect_edges(reduced[0].rect)) > 0.6


# ---- the stage ----------------------------------------------------------------------------

def make_work(tmp_path: Path) -> Path:
    """A work dir with objects.jsonl: good, odd-mode, broken and missing originals."""
    work = tmp_path / "work"
    orig = work / "originals"
    orig.mkdir(parents=True)
    photo = face_photo()
    photo.resize((photo.width // 2, photo.height // 2), Image.LANCZOS).save(orig / "1.jpg", quality=90)
    photo.convert("CMYK").save(orig / "2.jpg", quality=90)
    g16 = (np.asarray(photo.convert("L"), np.uint16) * 257)
    Image.fromarray(g16).save(orig / "3.png")
    photo.quantize(256).save(orig / "4.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(orig / "5.png")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    (orig / "6.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])  # truncated
    (orig / "7.jpg").write_bytes(b"<html><body>Too many requests</body></html>")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(orig / "8.jpg", quality=90, exif=exif)
    Image.new("RGB", (400, 300), (90, 120, 60)).save(orig / "9.png")
    lines = [{"id": i, "status": "ok", "path": f"originals/{i}.{'png' if i in (3, 4, 5, 9) else 'jpg'}",
              "title": f"Portrait {i}", "artist": "Anon", "department": "European Paintings"}
             for i in range(1, 10)]
    lines += [{"id": 10, "status": "ok", "path": "originals/10.jpg"},  # never downloaded
              {"id": 11, "status": "no_image", "path": ""}]
    (work / "objects.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    return work


def journal(work: Path) -> dict:
    return {d["obj_id"]: d for d in map(json.loads, (work / "detect.jsonl").read_text().splitlines())}


def test_stage_records_every_image_and_goes_on(tmp_path, cli):
    work = make_work(tmp_path)
    rc, out, err = cli("detect", "--work", work, "--workers", 1)
    assert rc == 1, err
    j = journal(work)
    status = {k: v["status"] for k, v in j.items()}
    assert status == {"1": "ok", "2": "ok", "3": "ok", "4": "ok", "5": "ok", "6": "bad_content",
                      "7": "bad_content", "8": "ok", "9": "no_face", "10": "missing_source"}
    assert j["2"]["mode"] == "CMYK" and j["3"]["mode"].startswith("I;16")
    assert j["8"]["exif_orientation"] == 6 and "EXIF orientation 6" in err
    assert "bad_content: originals/7.jpg" in err
    faces = load_faces(work / "faces.json").faces
    assert [f.obj_id for f in faces] == ["1", "2", "3", "4", "5", "8"]
    f1 = faces[0]
    assert f1.title == "Portrait 1" and f1.artist_display_name == "Anon"
    assert f1.department == "European Paintings" and f1.detector == "hog"
    assert f1.source_path == "originals/1.jpg" and f1.image_path == "images/1-00.png"
    from metfaces_build.infra.files import file_digest
    assert f1.source_md5 == file_digest(work / "originals" / "1.jpg")
    assert (f1.image_width, f1.image_height) == Image.open(work / "originals/1.jpg").size
    assert "6 ok, 2 bad_content" in out and "1 missing_source" in out and "1 with EXIF orientation" in out


def test_stage_too_large_and_resume(tmp_path, cli):
    work = make_work(tmp_path)
    w, h = Image.open(work / "originals" / "1.jpg").size
    limit = min(w * h, 400 * 300) - 1  # below both 1.jpg (size varies) and 9.png
    rc, out, _ = cli("detect", "--work", work, "--workers", 1, "--quiet", "--max-pixels", limit)
    j = journal(work)
    assert rc == 1 and j["1"]["status"] == j["9"]["status"] == "too_large"
    assert str(limit) in j["9"]["reason"]
    rc, out, _ = cli("detect", "--work", work, "--workers", 1, "--quiet")
    assert "reused" not in out  # failures are retried
    assert journal(work)["9"]["status"] == "no_face"
    before = (work / "faces.json").read_bytes()
    rc, out, _ = cli("detect", "--work", work, "--workers", 1, "--quiet")
    assert "7 images reused" in out and (work / "faces.json").read_bytes() == before
    rc, out, _ = cli("detect", "--work", work, "--workers", 1, "--quiet", "--force")
    assert "reused" not in out and (work / "faces.json").read_bytes() == before
    rc, out, _ = cli("detect", "--work", work, "--workers", 1, "--quiet", "--upsample", 0)
    assert "reused" not in out  # other settings: redone
    assert len((work / "detect.jsonl").read_text().splitlines()) == 10  # compacted


def test_same_output_for_any_worker_count(tmp_path, shared):
    src = shared("data", "dlib-faces")
    outs = []
    for n in (1, 2):
        out = tmp_path / f"w{n}" / "faces.json"
        r = run_cli_subprocess("detect", "--images", src, "--out", out, "--workers", n, "--quiet")
        assert r.returncode == 0, r.stderr
        outs.append((out.read_bytes(), out.with_name("faces.detect.jsonl").read_bytes()))
    assert outs[0] == outs[1]
    faces = json.loads(outs[0][0])
    assert {f["obj_id"] for f in faces} >= {"2008_001322", "bald_guys"}
    assert [f["face_idx"] for f in faces if f["obj_id"] == "2008_001322"] == [0, 1, 2]
    assert next(f for f in faces if f["obj_id"] == "bald_guys")["face_spec"]["shrink"] == 2


def test_images_folder_mode_names(tmp_path, cli):
    folder = tmp_path / "imgs"
    folder.mkdir()
    face_photo().save(folder / "abc.png")
    (folder / "notes.txt").write_text("not an image, ignored")
    rc, out, err = cli("detect", "--images", folder, "--out", tmp_path / "f.json", "--quiet",
                       "--workers", 1)
    assert rc == 0, err
    [face] = json.loads((tmp_path / "f.json").read_text())
    assert face["obj_id"] == "abc" and face["source_path"] == "abc.png"
    assert face["face_spec"]["shrink"] == 1 and face["shrink_method"] == "none"


@pytest.mark.parametrize("argv,msg", [
    (["--images", "."], "--out"),
    (["--work", "/nonexistent-dir"], "work directory not found"),
    (["--images", "/nonexistent-dir", "--out", "x.json"], "image folder not found"),
    (["--detector", "mtcnn"], "invalid choice"),
    (["--upsample", "-1"], ">= 0"),
])
def test_user_mistakes_exit_2(cli, argv, msg):
    rc, out, err = cli("detect", *argv)
    assert rc == 2 and msg in err and "Traceback" not in err


def test_help_is_a_manual(cli):
    rc, out, _ = cli("detect", "--help")
    assert rc == 0
    for word in ("shrink", "cascade", "face_idx", "examples:", "metfaces-build detect --work"):
        assert word in out
