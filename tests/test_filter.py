"""Filter stage: every test passes and fails where it should; the stage CLI end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from metfaces_build.stages import filter as flt
from metfaces_build.core import geometry
from metfaces_build.core.records import FaceRecord
from metfaces_build.infra.faces import load_faces

from synthfaces import TEMPLATE, face_json, place, save_image, texture, write_faces

CFG = flt.FilterConfig(min_size=150)


def rec(lm, **kw) -> FaceRecord:
    return FaceRecord.from_json(face_json(kw.pop("obj_id", "1"), kw.pop("face_idx", 0), lm, **kw))


def verdict(lm, width=400, height=400, cfg=CFG, **kw) -> flt.FaceVerdict:
    return flt.check_face(rec(lm, **kw), 0, width, height, cfg)


def check(v: flt.FaceVerdict, name: str) -> flt.Check:
    return next(c for c in v.checks if c.name == name)


GOOD = place(80, 200, 200)  # qsize ~205, inter-ocular 70


# ---- per-face tests: one passing and one failing case each -------------------------------

def test_good_face_passes_everything():
    v = verdict(GOOD)
    assert v.keep, [c.line() for c in v.checks]
    assert {c.name for c in v.checks} == {"resolution", "score", "roll", "mouth_below_eyes",
                                          "eye_jaw_ratio", "yaw", "landmarks_outside", "padding"}


def test_resolution():
    assert check(verdict(GOOD), "resolution").passed
    small = verdict(place(40, 200, 200))
    assert small.reasons == ["resolution"]
    assert check(small, "resolution").value == pytest.approx(40 * 2.56, abs=1)


def test_score_per_detector():
    assert check(verdict(GOOD, score=0.9), "score").passed
    assert verdict(GOOD, score=0.1).reasons == ["score"]
    assert verdict(GOOD, detector="hog", score=0.1).keep          # hog threshold is 0.0
    assert verdict(GOOD, detector="hog", score=-0.2).reasons == ["score"]
    assert verdict(GOOD, detector="other", score=-5.0).keep       # no threshold: passes
    assert verdict(GOOD, detector=None, score=None).keep
    cfg = flt.config_from_mapping({"min_score": {"other": 0.0}}, CFG)
    assert verdict(GOOD, cfg=cfg, detector="other", score=-5.0).reasons == ["score"]


def test_roll():
    assert check(verdict(place(80, 200, 200, angle=30)), "roll").passed
    v = verdict(place(80, 200, 200, angle=60))
    assert v.reasons == ["roll"] and check(v, "roll").value == pytest.approx(60, abs=0.5)


def test_mouth_below_eyes():
    t = TEMPLATE.copy()
    t[48:68, 1] -= 0.9  # mouth moved above the eyes
    v = verdict(place(80, 200, 200, template=t))
    assert "mouth_below_eyes" in v.reasons and check(v, "mouth_below_eyes").value < 0
    assert check(verdict(GOOD), "mouth_below_eyes").value == pytest.approx(0.71 / 0.62, abs=0.02)


def test_eye_jaw_ratio():
    assert check(verdict(GOOD), "eye_jaw_ratio").value == pytest.approx(0.55, abs=0.01)
    t = TEMPLATE.copy()
    t[0:17, 0] *= 0.5  # jaw narrower than the eyes: a collapsed fit
    v = verdict(place(80, 200, 200, template=t))
    assert v.reasons == ["eye_jaw_ratio"] and check(v, "eye_jaw_ratio").value > 1


def test_yaw_proxy():
    assert check(verdict(GOOD), "yaw").value == pytest.approx(0, abs=0.01)
    t = TEMPLATE.copy()
    t[30] = [0.35, 0.15]  # nose tip far towards the right eye: a turned head
    v = verdict(place(80, 200, 200, template=t))
    assert v.reasons == ["yaw"] and check(v, "yaw").value > 0.35


def test_landmarks_outside_and_padding():
    assert check(verdict(GOOD), "padding").value == 0
    v = verdict(place(80, 20, 200))  # left half of the face beyond the image's left edge
    assert v.reasons == ["landmarks_outside"] and check(v, "landmarks_outside").value > 0.5
    assert 0.3 < check(v, "padding").value <= 0.5
    v = verdict(place(80, -20, 200))
    assert {"landmarks_outside", "padding"} <= set(v.reasons)
    # slightly outside (less than 0.1 inter-ocular) is tolerated
    near = verdict(place(80, 200, 200), width=263)  # right jaw point at x ~ 264
    assert check(near, "landmarks_outside").passed
    assert 0 < check(near, "landmarks_outside").value < 0.1


def test_padding_alone():
    cfg = flt.config_from_mapping({"max_padding": 0.05}, CFG)
    lm = place(80, 200, 90)  # the square's top lies beyond the image, every landmark inside
    v = verdict(lm, cfg=cfg)
    assert v.reasons == ["padding"]
    expected = geometry.outside_fraction(geometry.face_square(np.float32(lm)).quad(), 400, 400)
    assert check(v, "padding").value == pytest.approx(expected, abs=0.01) and expected > 0.05
    assert verdict(lm).keep  # default limit 0.5


def test_overlap_keeps_the_better():
    a = flt.check_face(rec(GOOD, face_idx=0, score=0.8), 0, 800, 400, CFG)
    b = flt.check_face(rec(GOOD + 3, face_idx=1, score=0.9), 1, 800, 400, CFG)
    c = flt.check_face(rec(place(80, 600, 200), face_idx=2, score=0.5), 2, 800, 400, CFG)
    flt.resolve_overlaps([a, b, c], CFG)
    assert b.keep and c.keep and a.reasons == ["overlap"]
    assert check(a, "overlap").value["with_face_idx"] == 1
    assert check(a, "overlap").value["iou"] > 0.8


def test_overlap_prefers_a_face_passing_its_own_tests():
    a = flt.check_face(rec(GOOD, face_idx=0, score=0.9), 0, 400, 400,
                       flt.config_from_mapping({"max_roll": 45}, CFG))
    bad = flt.check_face(rec(GOOD + 2, face_idx=1, score=0.05), 1, 400, 400, CFG)  # fails score
    flt.resolve_overlaps([bad, a], CFG)
    assert a.keep and "overlap" in bad.reasons


def crop_of(arr, lm):
    from metfaces_build.infra.images import quick_crop
    return quick_crop(Image.fromarray(arr), lm - 0.5, 1, size=128)


def test_crop_measures_sharpness_and_grayscale():
    sharp = flt.crop_measures(crop_of(texture(1, 400, 400), GOOD))
    blurry = flt.crop_measures(crop_of(texture(1, 400, 400, blur=4), GOOD))
    gray = flt.crop_measures(crop_of(texture(1, 400, 400, gray=True), GOOD))
    assert sharp.sharpness > 10 * blurry.sharpness
    assert gray.chroma < 0.005 < 0.05 < sharp.chroma
    cfg = flt.config_from_mapping({"min_sharpness": (sharp.sharpness + blurry.sharpness) / 2}, CFG)
    assert all(c.passed for c in flt.check_crop(sharp, cfg))
    assert [c.name for c in flt.check_crop(blurry, cfg) if not c.passed] == ["sharpness"]
    # grayscale: tagged but kept by default, rejected on request
    tags = {c.name: c for c in flt.check_crop(gray, CFG)}
    assert tags["grayscale"].passed and tags["grayscale"].value["grayscale"] is True
    assert not {c.name: c for c in flt.check_crop(sharp, CFG)}["grayscale"].value["grayscale"]
    cfg = flt.config_from_mapping({"reject_grayscale": True}, CFG)
    assert [c.name for c in flt.check_crop(gray, cfg) if not c.passed] == ["grayscale"]
    assert all(c.passed for c in flt.check_crop(sharp, cfg))


def test_perceptual_hash_is_robust_to_scale_and_tells_images_apart():
    a = Image.fromarray(texture(3, 256, 256))
    h1 = flt.perceptual_hash(a)
    h2 = flt.perceptual_hash(a.resize((180, 180), Image.Resampling.BILINEAR))
    h3 = flt.perceptual_hash(Image.fromarray(texture(4, 256, 256)))
    assert flt.hash_distance(h1, h2) <= 4
    assert flt.hash_distance(h1, h3) > 16


def _verdict_with_hash(obj_id, idx, phash, qsize_scale=80):
    v = flt.check_face(rec(place(qsize_scale, 200, 200), obj_id=obj_id), idx, 400, 400, CFG)
    v.measures = flt.CropMeasures(100.0, 0.2, phash)
    return v


def test_near_duplicates_keep_one_deterministically():
    vs = [_verdict_with_hash("1", 0, "ffff0000ffff0000"),
          _verdict_with_hash("2", 1, "ffff0000ffff0003"),   # 2 bits from obj 1
          _verdict_with_hash("3", 2, "0000ffff0000ffff"),   # far from both
          _verdict_with_hash("2", 3, "ffff0000ffff0003")]   # same object as 1: not a duplicate
    vs[1].qsize = vs[0].qsize + 10  # the larger one wins
    flt.resolve_duplicates(vs, CFG)
    assert [v.keep for v in vs] == [False, True, True, True]
    assert check(vs[3], "near_duplicate").value == {"distance": None}  # none within 6 bits
    assert check(vs[3], "near_duplicate").limit == "> 6 bits from other objects"
    assert check(vs[0], "near_duplicate").value == {"distance": 2, "duplicate_of": "2-00"}
    off = [_verdict_with_hash("1", 0, "ffff0000ffff0000"), _verdict_with_hash("2", 1, "ffff0000ffff0000")]
    flt.resolve_duplicates(off, flt.config_from_mapping({"max_hash_distance": -1}, CFG))
    assert all(v.keep for v in off)


# ---- configuration ------------------------------------------------------------------------

def test_config_overlay_and_errors(tmp_path):
    from metfaces_build.core.errors import UsageError
    cfg = flt.config_from_mapping({"min_size": 512, "min_score": {"cnn": 0.8}, "max_hash_distance": 4})
    assert cfg.min_size == 512 and cfg.min_score == {"cnn": 0.8, "hog": 0.0} and cfg.max_hash_distance == 4
    for bad in ({"nope": 1}, {"min_size": "big"}, {"reject_grayscale": 1}, {"max_hash_distance": 2.5},
                {"eye_jaw_min": 2.0}):
        with pytest.raises(UsageError):
            flt.config_from_mapping(bad)
    p = tmp_path / "f.toml"
    p.write_text("[filter]\nmin_size = 300\nreject_grayscale = true\n[filter.min_score]\nhog = 1.5\n")
    table = flt.load_toml_config(str(p))
    cfg = flt.config_from_mapping(table)
    assert cfg.min_size == 300 and cfg.reject_grayscale and cfg.min_score["hog"] == 1.5
    p.write_text("min_size = [")
    with pytest.raises(UsageError, match="not valid TOML"):
        flt.load_toml_config(str(p))



def test_config_file_values_meet_the_flags_limits():
    """A TOML value goes through the flags' own check (FilterConfig's declared limits):
    what `--max-roll -1` or `--crop-size 8` refuses, the file cannot set either."""
    from metfaces_build.core.errors import UsageError
    for bad, words in (({"max_roll": -1}, "max_roll must be >= 0"),
                       ({"crop_size": 8}, "crop_size must be >= 16"),
                       ({"max_padding": -0.5}, "max_padding must be >= 0")):
        with pytest.raises(UsageError, match=words):
            flt.config_from_mapping(bad, where="f.toml")
    cfg = flt.config_from_mapping({"min_mouth_drop": -0.2, "max_hash_distance": -1,
                                   "min_sharpness": None})
    assert cfg.min_mouth_drop == -0.2 and cfg.max_hash_distance == -1 and cfg.min_sharpness is None

# ---- the stage, end to end ----------------------------------------------------------------

@pytest.fixture
def work(tmp_path):
    """Eight objects covering every outcome; min size 150 px."""
    w = tmp_path / "work"
    imgs = {"100": texture(100, 400, 400), "101": texture(101, 400, 400), "102": texture(102, 400, 400),
            "103": texture(103, 400, 400), "104": texture(104, 800, 400),
            "106": texture(106, 400, 400, gray=True), "108": texture(108, 400, 400, blur=5)}
    imgs["105"] = imgs["100"]  # the same picture under another object id
    for k, a in imgs.items():
        save_image(w / "originals" / f"{k}.png", a)
    faces = [face_json("100", 0, GOOD, score=0.9),
             face_json("101", 0, place(40, 200, 200), score=0.9),              # too small
             face_json("102", 0, GOOD, score=0.1),                               # low score
             face_json("103", 0, place(80, 20, 200), score=0.9),                 # off the edge
             face_json("104", 0, place(80, 200, 200), score=0.7),
             face_json("104", 1, place(80, 203, 202), score=0.6),                # same face again
             face_json("104", 2, place(80, 600, 200), score=0.8),
             face_json("105", 0, GOOD, score=0.9),                               # duplicate of 100
             face_json("106", 0, GOOD, score=0.9, size=(400, 400)),              # grayscale
             face_json("108", 0, GOOD, score=0.9)]                               # blurry
    write_faces(w / "faces.json", faces)
    return w


def read_outputs(w):
    kept = json.loads((w / "filtered.json").read_text())
    rej = [json.loads(line) for line in (w / "rejected.jsonl").read_text().splitlines()]
    return kept, rej


def test_stage_end_to_end(work, cli):
    rc, out, err = cli("filter", "--work", work, "--min-size", 150, "--workers", 1, "--quiet")
    assert rc == 0, err
    assert "5 kept, 5 rejected of 10" in out
    kept, rej = read_outputs(work)
    keys = sorted([(d["obj_id"], d["face_idx"]) for d in kept] + [(d["obj_id"], d["face_idx"]) for d in rej])
    assert keys == sorted((d["obj_id"], d["face_idx"]) for d in json.loads((work / "faces.json").read_text()))
    reasons = {(d["obj_id"], d["face_idx"]): d["reasons"] for d in rej}
    assert reasons[("101", 0)] == ["resolution"]
    assert reasons[("102", 0)] == ["score"]
    assert "landmarks_outside" in reasons[("103", 0)]
    assert reasons[("104", 1)] == ["overlap"]
    assert reasons[("105", 0)] == ["near_duplicate"]
    assert rej[0]["values"]["resolution"] < 150
    # filtered.json is metfaces.json-compatible and carries the measured values
    loaded = load_faces(work / "filtered.json")
    assert [f.key for f in loaded.faces] == [("100", 0), ("104", 0), ("104", 2), ("106", 0), ("108", 0)]
    gray = next(d for d in kept if d["obj_id"] == "106")
    assert gray["filter"]["grayscale"]["grayscale"] is True
    assert set(kept[0]) >= {"obj_id", "meta_url", "source_url", "source_path", "source_md5", "image_path",
                            "image_md5", "title", "artist_display_name", "face_spec", "face_idx"}
    blurry = next(d for d in kept if d["obj_id"] == "108")["filter"]["sharpness"]
    sharp = next(d for d in kept if d["obj_id"] == "100")["filter"]["sharpness"]
    assert blurry * 10 < sharp
    summary = json.loads((work / "filter_summary.json").read_text())
    assert summary["kept"] == 5 and summary["reasons"]["near_duplicate"] == 1

    # rerun: up to date; thresholds from flags reject more
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--quiet")
    assert rc == 0 and "up to date" in out
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--quiet", "--reject-grayscale",
                     "--min-sharpness", (blurry * sharp) ** 0.5)
    assert rc == 0 and "3 kept, 7 rejected" in out
    _, rej = read_outputs(work)
    reasons = {(d["obj_id"], d["face_idx"]): d["reasons"] for d in rej}
    assert reasons[("106", 0)] == ["grayscale"] and reasons[("108", 0)] == ["sharpness"]


def test_identical_output_for_any_worker_count(work, cli):
    outs = []
    for n in (1, 2, 3):
        rc, _, err = cli("filter", "--work", work, "--min-size", 150, "--workers", n, "--quiet", "--force")
        assert rc == 0, err
        outs.append(((work / "filtered.json").read_bytes(), (work / "rejected.jsonl").read_bytes()))
    assert outs[0] == outs[1] == outs[2]


def test_toml_config_and_flag_precedence(work, cli, tmp_path):
    cfg = tmp_path / "filter.toml"
    cfg.write_text("[filter]\nmin_size = 500\n")
    rc, out, _ = cli("filter", "--work", work, "--config", cfg, "--quiet", "--workers", 1)
    assert rc == 0 and "0 kept" in out  # every face is below 500 px
    rc, out, _ = cli("filter", "--work", work, "--config", cfg, "--min-size", 150, "--quiet", "--workers", 1)
    assert rc == 0 and "5 kept" in out


def test_explain_prints_every_test(work, cli):
    cli("filter", "--work", work, "--min-size", 150, "--quiet", "--workers", 1)
    before = (work / "filtered.json").read_bytes()
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--explain", "104")
    assert rc == 0
    assert "object 104: 3 face(s)" in out and "face 1: REJECT overlap" in out
    for name in ("resolution", "score", "roll", "mouth_below_eyes", "eye_jaw_ratio", "yaw",
                 "landmarks_outside", "padding", "sharpness", "grayscale", "overlap", "near_duplicate"):
        assert name in out
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--explain", "105")
    assert "REJECT near_duplicate" in out and "FAIL near_duplicate" in out
    assert (work / "filtered.json").read_bytes() == before  # explain writes nothing
    rc, _, err = cli("filter", "--work", work, "--explain", "999")
    assert rc == 2 and "no faces with obj_id '999'" in err


def test_missing_source_is_recorded_and_exit_1(work, cli):
    (work / "originals" / "102.png").unlink()
    rc, out, err = cli("filter", "--work", work, "--min-size", 150, "--quiet", "--workers", 2)
    assert rc == 1
    _, rej = read_outputs(work)
    row = next(d for d in rej if d["obj_id"] == "102")
    assert row["reasons"] == ["missing_source"] and "102.png" in row["values"]["missing_source"]
    assert "unusable" in err


def test_no_crop_tests_reads_only_headers(work, cli):
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--quiet", "--no-crop-tests")
    assert rc == 0 and "6 kept, 4 rejected" in out  # no near-duplicate test without crops
    kept, _ = read_outputs(work)
    assert "sharpness" not in kept[0]["filter"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"a": 1}', "expected a JSON list"),
    ('[{"obj_id": "1"}]', "missing key 'source_path'"),
])
def test_malformed_faces_json_exit_2(tmp_path, cli, content, message):
    (tmp_path / "faces.json").write_text(content)
    rc, out, err = cli("filter", "--work", tmp_path)
    assert rc == 2 and message in err and "Traceback" not in err


def test_usage_errors_exit_2(work, tmp_path, cli):
    rc, _, err = cli("filter", "--work", tmp_path / "nowhere")
    assert rc == 2 and "not found" in err
    rc, _, err = cli("filter", "--work", work, "--min-score", "cnn")
    assert rc == 2 and "DETECTOR=NUMBER" in err
    rc, _, err = cli("filter", "--work", work, "--config", tmp_path / "missing.toml")
    assert rc == 2 and "config file not found" in err
    rc, _, err = cli("filter", "--work", work, "--min-size", "-3")
    assert rc == 2


def test_skip_bad_records_them_as_rejected(work, cli):
    faces = json.loads((work / "faces.json").read_text())
    faces[1]["face_spec"]["landmarks"] = faces[1]["face_spec"]["landmarks"][:10]
    write_faces(work / "faces.json", faces)
    rc, _, err = cli("filter", "--work", work, "--min-size", 150, "--quiet")
    assert rc == 2 and "--skip-bad" in err
    rc, out, _ = cli("filter", "--work", work, "--min-size", 150, "--quiet", "--skip-bad")
    assert rc == 1
    _, rej = read_outputs(work)
    assert any(d["reasons"] == ["bad_record"] and d["obj_id"] == "101" for d in rej)


def test_help_is_a_manual(cli):
    rc, out, _ = cli("filter", "--help")
    assert rc == 0 and "example" in out and "--min-size" in out and "rejected.jsonl" in out
