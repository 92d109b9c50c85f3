"""verify: crops against image_md5, and pixel comparisons against a reference folder."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _crop(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray(rng.randint(0, 256, size=(size, size, 3)).astype(np.uint8))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _record(obj_id, idx, image_md5):
    return {"obj_id": obj_id, "source_path": f"unprocessed/{obj_id}.png", "face_idx": idx,
            "image_path": f"images/{obj_id}-{idx:02d}.png", "image_md5": image_md5,
            "face_spec": {"rect": [0, 0, 9, 9], "landmarks": [[i, i] for i in range(68)],
                          "shrink": 1}}


@pytest.fixture
def setup(tmp_path):
    """reference/ = the 'published' crops (their md5s in the json); ours/ = crops to check:
    1 identical, 2 same pixels re-encoded, 3 changed pixels, 4 missing, 5 no image_md5,
    6 another size."""
    ref, ours = tmp_path / "reference", tmp_path / "ours"
    ref.mkdir()
    ours.mkdir()
    recs = []
    for i in range(1, 7):
        name = f"{i}-00.png"
        _crop(i).save(ref / name)
        recs.append(_record(str(i), 0, "" if i == 5 else _md5(ref / name)))
    (ours / "1-00.png").write_bytes((ref / "1-00.png").read_bytes())
    _crop(2).save(ours / "2-00.png", compress_level=1)  # same pixels, other bytes
    changed = np.asarray(_crop(3)).copy()
    changed[10:20, 10:20] = np.clip(changed[10:20, 10:20].astype(int) + 7, 0, 255)
    Image.fromarray(changed).save(ours / "3-00.png")
    _crop(5).save(ours / "5-00.png")
    _crop(6, 32).save(ours / "6-00.png")
    j = tmp_path / "metfaces.json"
    j.write_text(json.dumps(recs))
    assert _md5(ours / "2-00.png") != _md5(ref / "2-00.png")
    return j, ours, ref, changed


def test_statuses_psnr_versions(setup, tmp_path, cli):
    j, ours, ref, changed = setup
    out = tmp_path / "verify.json"
    rc, stdout, err = cli("verify", "--json", j, "--images", ours, "--reference", ref,
                          "--out", out, "--quiet", "--workers", 1)
    assert rc == 1, err
    doc = json.loads(out.read_text())
    faces = {f["obj_id"]: f for f in doc["faces"]}
    assert {k: f["status"] for k, f in faces.items()} == {
        "1": "match", "2": "same_pixels", "3": "pixels_differ", "4": "missing",
        "5": "no_md5", "6": "size_differs"}
    assert faces["1"]["file_md5_match"] is True and faces["1"]["pixels_equal"] is True
    assert faces["2"]["file_md5_match"] is False and faces["2"]["pixels_equal"] is True
    assert faces["2"]["pixel_md5"] == faces["2"]["reference_pixel_md5"] == \
        hashlib.md5(_crop(2).tobytes()).hexdigest()
    f3 = faces["3"]
    d = changed.astype(float) - np.asarray(_crop(3), float)
    assert f3["max_abs_diff"] == 7
    assert f3["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / np.mean(d ** 2)), abs=1e-3)
    assert f3["differing_pixels"] == pytest.approx(np.mean(np.any(d != 0, axis=2)), abs=1e-6)
    assert faces["6"]["width"] == 32 and "vs reference 64x64" in faces["6"]["reason"]
    assert faces["4"]["file"] == "4-00.png" and faces["4"]["file_md5"] == ""
    v = doc["versions"]
    assert {"numpy", "scipy", "Pillow", "zlib"} <= set(v)
    assert doc["counts"] == {"match": 1, "same_pixels": 1, "pixels_differ": 1, "missing": 1,
                             "no_md5": 1, "size_differs": 1}
    assert "pixels vs reference: 3 of 5 identical" in stdout
    assert "pixels_differ: 3-00.png (PSNR" in stdout and f"Pillow {v['Pillow']}" in stdout
    # deterministic output for any worker count
    out2 = tmp_path / "verify2.json"
    cli("verify", "--json", j, "--images", ours, "--reference", ref, "--out", out2, "--quiet",
        "--workers", 2)
    assert out2.read_bytes() == out.read_bytes()


def test_without_reference_md5_differs_is_reported_as_such(setup, cli):
    j, ours, ref, _ = setup
    rc, stdout, _ = cli("verify", "--json", j, "--images", ours, "--quiet")
    assert rc == 1
    assert "md5_differs: 2-00.png (file md5" in stdout
    assert "md5 of a PNG file" in stdout  # says what a differing md5 does and doesn't mean


def test_all_match_exits_0_and_same_pixels_can_be_accepted(setup, tmp_path, cli):
    j, ours, ref, _ = setup
    recs = [r for r in json.loads(j.read_text()) if r["obj_id"] in ("1", "2")]
    j2 = tmp_path / "two.json"
    j2.write_text(json.dumps(recs))
    assert cli("verify", "--json", j2, "--images", ref, "--quiet")[0] == 0
    assert cli("verify", "--json", j2, "--images", ours, "--reference", ref, "--quiet")[0] == 1
    rc, stdout, _ = cli("verify", "--json", j2, "--images", ours, "--reference", ref,
                        "--accept-same-pixels", "--quiet")
    assert rc == 0 and "1 match, 1 same_pixels" in stdout


def test_image_path_basename_is_the_fallback_name(tmp_path, cli):
    _crop(1).save(tmp_path / "portrait.png")
    rec = _record("9", 0, _md5(tmp_path / "portrait.png"))
    rec["image_path"] = "images/portrait.png"
    j = tmp_path / "m.json"
    j.write_text(json.dumps([rec]))
    rc, stdout, _ = cli("verify", "--json", j, "--images", tmp_path, "--quiet")
    assert rc == 0 and "1 match" in stdout


def test_unreadable_crop(tmp_path, cli):
    (tmp_path / "1-00.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    j = tmp_path / "m.json"
    j.write_text(json.dumps([_record("1", 0, "0" * 32)]))
    rc, stdout, _ = cli("verify", "--json", j, "--images", tmp_path, "--quiet")
    assert rc == 1 and "unreadable: 1-00.png" in stdout


@pytest.mark.parametrize("argv, msg", [
    (["--json", "{t}/none.json", "--images", "{t}"], "--json not found"),
    (["--json", "{t}/m.json", "--images", "{t}/nope"], "is not a folder"),
    (["--json", "{t}/m.json", "--images", "{t}", "--reference", "{t}/nope"], "--reference"),
    (["--json", "{t}/bad.json", "--images", "{t}"], "invalid record"),
])
def test_usage_errors(tmp_path, cli, argv, msg):
    (tmp_path / "m.json").write_text(json.dumps([_record("1", 0, "")]))
    (tmp_path / "bad.json").write_text(json.dumps([{"obj_id": "1"}]))
    rc, _, err = cli("verify", *[a.format(t=tmp_path) for a in argv])
    assert rc == 2 and msg in err and "Traceback" not in err


def test_help_is_a_manual(cli):
    rc, out, _ = cli("verify", "--help")
    assert rc == 0
    for word in ("image_md5", "same_pixels", "PSNR", "Pillow", "examples:", "--reference"):
        assert word in out
