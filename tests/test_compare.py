"""Compare: known perturbations give known errors; matching handles missing, extra and
shuffled faces; crop folders; CLI errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from metfaces_build.core import metrics
from metfaces_build.stages import compare as cmp
from metfaces_build.core.records import FaceRecord

from synthfaces import face_json, place, save_image, texture, write_faces


def rec(obj_id, idx, lm, shrink=1, **kw) -> FaceRecord:
    return FaceRecord.from_json(face_json(obj_id, idx, lm, shrink=shrink, **kw))


def shifted(r: FaceRecord, dx: int, dy: int, points=slice(0, 68), face_idx=None) -> FaceRecord:
    """The same record with some landmarks moved by whole pixels (shrink 1)."""
    d = r.to_json()
    lm = np.array(d["face_spec"]["landmarks"])
    lm[points] += [dx, dy]
    d["face_spec"]["landmarks"] = lm.tolist()
    if face_idx is not None:
        d["face_idx"] = face_idx
    return FaceRecord.from_json(d)


BASE = rec("1", 0, place(100, 300, 300))
IOD = cmp.geometry.inter_ocular(cmp._full(BASE))


def test_uniform_shift_gives_known_nme():
    m = cmp.match_object("1", [BASE], [shifted(BASE, 3, 4)])
    assert [x.status for x in m] == ["matched"]
    assert m[0].nme == pytest.approx(5 / IOD, rel=1e-9)
    assert all(v == pytest.approx(5 / IOD, rel=1e-9) for v in m[0].regions.values())
    assert m[0].eye_distance == pytest.approx(5.0)


def test_region_perturbation_shows_in_that_region_only():
    m = cmp.match_object("1", [BASE], [shifted(BASE, 6, 0, points=slice(48, 68))])[0]
    assert m.regions["mouth"] == pytest.approx(6 / IOD)
    assert m.regions["jaw"] == m.regions["eyes"] == m.regions["nose"] == m.regions["brows"] == 0
    assert m.nme == pytest.approx(6 * 20 / 68 / IOD)
    assert m.iou == 1.0  # rects untouched


def test_shrinks_are_brought_to_full_resolution():
    # stored at shrink 3 with landmarks q: full-res (q + 0.5) * 3 = 3q + 1.5, which is
    # (p + 0.5) * 1 for p = 3q + 1 at shrink 1: the same points, so NME 0 and IoU 1.
    q = np.array(rec("1", 0, place(100, 300, 300), shrink=3).face_spec.landmarks)
    d3 = face_json("1", 0, np.zeros((68, 2)), shrink=3)
    d3["face_spec"]["landmarks"] = q.tolist()
    d3["face_spec"]["rect"] = [10, 20, 50, 70]
    d1 = face_json("1", 0, np.zeros((68, 2)), shrink=1)
    d1["face_spec"]["landmarks"] = (3 * q + 1).tolist()
    d1["face_spec"]["rect"] = [30, 60, 152, 212]  # edges (3l, 3t, 3r+3, 3b+3)
    m = cmp.match_object("1", [FaceRecord.from_json(d3)], [FaceRecord.from_json(d1)])[0]
    assert m.nme == pytest.approx(0, abs=1e-6) and m.iou == pytest.approx(1.0)
    assert (m.stored_shrink, m.regen_shrink) == (3, 1)


def test_rect_iou_known():
    a = cmp.geometry.rect_full([0, 0, 9, 9], 1)
    b = cmp.geometry.rect_full([5, 0, 14, 9], 1)
    assert metrics.box_iou(a, b) == pytest.approx(1 / 3)
    assert metrics.box_iou(a, cmp.geometry.rect_full([20, 20, 29, 29], 1)) == 0


def three_faces(obj="7"):
    return [rec(obj, i, place(60, 150 + 250 * i, 300)) for i in range(3)]


def test_shuffled_missing_and_extra_faces_are_matched_right():
    stored = three_faces()
    # regenerated: stored face 2 as index 0 (moved 2 px), face 0 as index 1, face 1 lost,
    # plus a face nowhere near any stored one
    regen = [shifted(stored[2], 2, 0, face_idx=0), shifted(stored[0], 0, 1, face_idx=1),
             rec("7", 2, place(60, 400, 800))]
    m = cmp.match_object("7", stored, regen)
    got = {(x.status, x.stored_face_idx, x.regen_face_idx) for x in m}
    assert got == {("matched", 0, 1), ("missed", 1, None), ("matched", 2, 0), ("extra", None, 2)}
    assert [x.status for x in m] == ["matched", "missed", "matched", "extra"]


def test_optimal_assignment_beats_greedy():
    # stored A, B close together; greedy would give A its nearest (b) and leave B far off
    a = rec("1", 0, place(60, 300, 300))
    b = rec("1", 1, place(60, 320, 300))
    ra = shifted(a, -12, 0, face_idx=0)   # 12 px from A, 32 from B
    rb = shifted(a, 8, 0, face_idx=1)     # 8 px from A, 12 from B
    m = cmp.match_object("1", [a, b], [ra, rb], gate=1.0)
    pairs = {(x.stored_face_idx, x.regen_face_idx) for x in m if x.status == "matched"}
    assert pairs == {(0, 0), (1, 1)}      # total 12 + 12, not 8 + 32


def test_gate_in_inter_ocular_units():
    near = shifted(BASE, int(0.4 * IOD), 0)
    far = shifted(BASE, int(0.6 * IOD), 0)
    assert [x.status for x in cmp.match_object("1", [BASE], [near])] == ["matched"]
    assert [x.status for x in cmp.match_object("1", [BASE], [far])] == ["missed", "extra"]
    assert [x.status for x in cmp.match_object("1", [BASE], [far], gate=0.7)] == ["matched"]


def test_objects_only_on_one_side():
    stored = three_faces("1") + [rec("2", 0, place(60, 300, 300))]
    regen = three_faces("1") + [rec("3", 0, place(60, 300, 300))]
    m = cmp.compare_faces(stored, regen)
    s = cmp.run_stats(m)
    assert (s.matched, s.missed, s.extra, s.objects, s.objects_missing) == (3, 1, 1, 2, 1)
    assert [x.obj_id for x in m] == ["1", "1", "1", "2", "3"]


def test_run_stats_median_p90_within():
    ms = [cmp.FaceMatch("1", "matched", i, i, nme, {r: nme for r in cmp.geometry.REGIONS}, 1.0, 1, 1)
          for i, nme in enumerate([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.20])]
    ms.append(cmp.FaceMatch("1", "missed", 10))
    s = cmp.run_stats(ms).to_json()
    assert s["matched"] == 10 and s["missed"] == 1 and s["extra"] == 0
    assert s["median_nme"] == pytest.approx(0.055)
    assert s["p90_nme"] == pytest.approx(np.percentile([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08,
                                                        0.09, 0.20], 90))
    assert s["within_0.05"] == pytest.approx(0.5) and s["within_0.10"] == pytest.approx(0.9)
    assert s["region_median_nme"]["mouth"] == pytest.approx(0.055)
    empty = cmp.run_stats([]).to_json()
    assert empty["median_nme"] is None and empty["within_0.05"] is None


# ---- CLI ------------------------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    """A stored list and a regenerated one (another shrink, a shifted face, a lost and an
    extra face), with the source images."""
    stored, regen = [], []
    for k in range(4):
        obj = str(500 + k)
        save_image(tmp_path / "work" / "originals" / f"{obj}.png", texture(k, 600, 600))
        lm = place(120, 300, 300)
        stored.append(face_json(obj, 0, lm, shrink=1))
        if k == 1:
            continue  # lost
        regen.append(face_json(obj, 0, lm + [k * 3, 0], shrink=2 if k == 2 else 1))
    regen.append(face_json("503", 1, place(50, 100, 500)))
    write_faces(tmp_path / "metfaces.json", stored)
    write_faces(tmp_path / "work" / "faces.json", regen)
    return tmp_path


def test_cli_landmarks_end_to_end(pair, cli):
    out = pair / "out"
    rc, stdout, err = cli("compare", "--stored", pair / "metfaces.json", "--regenerated",
                          pair / "work" / "faces.json", "--out", out)
    assert rc == 0, err
    assert "3 matched, 1 missed, 1 extra" in stdout
    s = json.loads((out / "compare.json").read_text())
    for k in ("matched", "missed", "extra", "median_nme", "p90_nme", "within_0.05", "within_0.10",
              "region_median_nme", "median_iou", "gate"):
        assert k in s
    assert (s["matched"], s["missed"], s["extra"]) == (3, 1, 1)
    rows = [json.loads(x) for x in (out / "compare_faces.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    shifted9 = next(r for r in rows if r["obj_id"] == "503" and r["status"] == "matched")
    iod = 120 * 0.88
    assert shifted9["nme"] == pytest.approx(9 / iod, rel=0.03)
    shrunk = next(r for r in rows if r["obj_id"] == "502")
    assert (shrunk["stored_shrink"], shrunk["regen_shrink"]) == (1, 2)
    assert shrunk["nme"] == pytest.approx(6 / iod, abs=0.01)  # 6 px shift, +-1 px of shrink rounding
    for name in ("report.md", "report.html", "stats.json", "mismatch.png"):
        assert (out / "report" / name).is_file()


def test_cli_usage_errors(pair, cli, tmp_path):
    rc, _, err = cli("compare", "--stored", pair / "metfaces.json")
    assert rc == 2 and "--regenerated" in err
    rc, _, err = cli("compare", "--stored", tmp_path / "nope.json", "--regenerated", pair / "metfaces.json")
    assert rc == 2 and "not found" in err and "Traceback" not in err
    (tmp_path / "bad.json").write_text('[{"obj_id": "1", "source_path": "a.jpg", "face_idx": 0, '
                                       '"face_spec": {"rect": [0, 0, 1, 1], "landmarks": [], "shrink": 1}}]')
    rc, _, err = cli("compare", "--stored", tmp_path / "bad.json", "--regenerated", pair / "metfaces.json")
    assert rc == 2 and "record 0" in err and "landmarks" in err
    rc, _, err = cli("compare", "--crops", tmp_path, tmp_path, "--stored", pair / "metfaces.json")
    assert rc == 2 and "not both" in err
    rc, _, err = cli("compare", "--crops", tmp_path / "x", tmp_path)
    assert rc == 2 and "not a folder" in err


def test_psnr_known():
    a = np.full((8, 8, 3), 100, np.uint8)
    psnr, mx = metrics.psnr_and_max(a, a + 5)
    assert psnr == pytest.approx(10 * math.log10(255 ** 2 / 25)) and mx == 5
    assert metrics.psnr_and_max(a, a) == (float("inf"), 0)


def test_cli_crops(tmp_path, cli):
    a, b = tmp_path / "a", tmp_path / "b"
    img = texture(1, 64, 64)
    save_image(a / "1-00.png", img)
    save_image(b / "1-00.png", img)                                   # identical
    save_image(a / "2-00.png", img)
    save_image(b / "2-00.png", np.clip(img.astype(int) + 5, 0, 255).astype(np.uint8))
    rc, out, err = cli("compare", "--crops", a, b, "--out", tmp_path, "--workers", 1, "--quiet")
    assert rc == 0, err
    s = json.loads((tmp_path / "compare_crops.json").read_text())
    assert s["compared"] == 2 and s["identical"] == 1 and s["max_diff"] == 5
    assert 34.1 < s["median_psnr"] < 35  # 34.15 dB for +5 everywhere; clipping at 255 adds a little
    save_image(a / "3-00.png", img)                                   # only in A
    save_image(b / "4-00.png", img[:32])                              # only in B
    save_image(a / "5-00.png", img)
    save_image(b / "5-00.png", img[:, :32])                           # other size
    rc, out, err = cli("compare", "--crops", a, b, "--out", tmp_path, "--workers", 2, "--quiet")
    assert rc == 1 and "only_in_a: 3-00.png" in err
    rows = {json.loads(x)["name"]: json.loads(x) for x in (tmp_path / "compare_crops.jsonl").read_text().splitlines()}
    assert rows["3-00.png"]["status"] == "only_in_a" and rows["4-00.png"]["status"] == "only_in_b"
    assert rows["5-00.png"]["status"] == "size_mismatch" and rows["1-00.png"]["identical"]


def test_help_is_a_manual(cli):
    rc, out, _ = cli("compare", "--help")
    assert rc == 0 and "example" in out and "--gate" in out and "inter-ocular" in out
