"""The review page's data and thumbnails, and a person's overrides applied by filter.

The page in a real browser is tested in test_review_browser.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from metfaces_build.core.errors import UsageError
from metfaces_build.stages import filter as flt
from metfaces_build.stages import review

from synthfaces import face_json, place, save_image, texture, write_faces

GOOD = place(80, 200, 200)      # qsize ~205
SMALL = place(40, 200, 200)     # qsize ~102: fails resolution at --min-size 150
TRICKY_TITLE = "Lady </script><script>window.pwned=1</script> & <b>friend</b>"
FILTER_FLAGS = ("--min-size", 150, "--quiet", "--workers", 1)


def make_review_work(root: Path, cli) -> Path:
    """Six faces of five objects (kept, too small, low score), API records for most of
    them, objects.jsonl for all, and a compare run against jittered 'stored' landmarks."""
    w = root / "work"
    for k in range(100, 105):
        save_image(w / "originals" / f"{k}.png", texture(k, 400, 400))
    faces = [face_json("100", 0, GOOD, score=0.9),
             face_json("101", 0, SMALL, score=0.8),
             face_json("102", 0, GOOD, score=0.1),                     # cnn below 0.3
             face_json("103", 0, place(60, 110, 150), score=0.95),
             face_json("103", 1, place(35, 300, 300), score=0.5),      # too small
             face_json("104", 0, GOOD, score=0.7, detector="hog")]
    write_faces(w / "faces.json", faces)
    depts = {"100": "European Paintings", "101": "Drawings and Prints", "102": "Drawings and Prints",
             "103": "European Paintings", "104": "Photographs"}
    rows = []
    for oid, dept in depts.items():
        rows.append({"id": int(oid), "status": "ok", "department": dept, "title": f"row title {oid}",
                     "artist": f"row artist {oid}", "date": "1900", "path": f"originals/{oid}.png",
                     "width": 400, "height": 400})
        if oid == "104":
            continue  # no stored API record: objects.jsonl is the fallback
        api = {"objectID": int(oid), "title": TRICKY_TITLE if oid == "100" else f"Portrait {oid}",
               "artistDisplayName": f"Artist {oid}", "department": dept, "objectDate": f"ca. 17{oid[1:]}",
               "objectURL": f"https://www.metmuseum.org/art/collection/search/{oid}"}
        (w / "api").mkdir(exist_ok=True)
        (w / "api" / f"{oid}.json").write_text(json.dumps(api))
    (w / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.RandomState(3)
    stored = json.loads(json.dumps(faces))
    for f in stored:
        f["face_spec"]["landmarks"] = (np.array(f["face_spec"]["landmarks"])
                                       + rng.randint(-3, 4, size=(68, 2))).tolist()
    write_faces(w / "stored.json", stored)
    rc, _, err = cli("filter", "--work", w, *FILTER_FLAGS)
    assert rc == 0, err
    rc, _, err = cli("compare", "--stored", w / "stored.json", "--regenerated", w / "faces.json",
                     "--out", w, "--quiet")
    assert rc == 0, err
    return w


def decisions(w: Path) -> dict:
    """face id -> (kept|rejected, reasons) as filter wrote them."""
    out = {}
    for d in json.loads((w / "filtered.json").read_text()):
        out[f"{d['obj_id']}-{d['face_idx']:02d}"] = ("kept", [])
    for line in (w / "rejected.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[f"{r['obj_id']}-{r['face_idx']:02d}"] = ("rejected", r["reasons"])
    return out


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    blob = re.search(r'<script id="face-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(blob.group(1))


@pytest.fixture
def work(tmp_path, cli):
    return make_review_work(tmp_path, cli)


# ---- overrides: pure functions ------------------------------------------------------------

def test_parse_overrides_accepts_the_page_format_and_refuses_mistakes():
    known = ["100-00", "101-00"]
    assert flt.parse_overrides({"faces": {"101-00": "keep", "100-00": "reject"}}, known) == \
        {"100-00": "reject", "101-00": "keep"}
    assert flt.parse_overrides({"faces": {}}, known) == {}
    with pytest.raises(UsageError, match="expected"):
        flt.parse_overrides(["100-00"], known)
    with pytest.raises(UsageError, match='"keep" or "reject"'):
        flt.parse_overrides({"faces": {"100-00": "maybe"}}, known)
    with pytest.raises(UsageError, match="not faces of faces.json: 100-0, 999-00") as e:
        flt.parse_overrides({"faces": {"999-00": "keep", "100-0": "keep", "101-00": "keep"}}, known)
    assert "nothing was changed" in str(e.value)


def test_apply_overrides_decides_over_the_tests_and_keeps_the_measures():
    cfg = flt.FilterConfig(min_size=150)
    from metfaces_build.core.records import FaceRecord
    recs = [FaceRecord.from_json(face_json("1", 0, GOOD)), FaceRecord.from_json(face_json("2", 0, SMALL)),
            FaceRecord.from_json(face_json("3", 0, SMALL))]
    vs = [flt.check_face(r, i, 400, 400, cfg, None) for i, r in enumerate(recs)]
    assert [v.keep for v in vs] == [True, False, False]
    moved = flt.apply_overrides(vs, {"1-00": "reject", "2-00": "keep"})
    assert moved == 2
    assert [v.keep for v in vs] == [False, True, False]
    assert vs[0].reasons == ["override"] and vs[0].failed == []
    assert vs[1].reasons == [] and vs[1].failed == ["resolution"]
    assert vs[2].reasons == ["resolution"] and vs[2].override is None
    assert vs[1].values()["override"] == {"decision": "keep", "tests_failed": ["resolution"],
                                          "limits": {"resolution": "needs >= 150 px"}}
    assert vs[0].rejection().to_json()["reasons"] == ["override"]
    # a decision that agrees with the tests moves nothing but is still recorded
    assert flt.apply_overrides(vs, {"1-00": "keep"}) == 0 and vs[0].values()["override"]["decision"] == "keep"


# ---- overrides through the filter stage -----------------------------------------------------

def test_filter_overrides_move_exactly_those_faces_and_persist(work, cli, tmp_path):
    before = decisions(work)
    assert before["101-00"] == ("rejected", ["resolution"]) and before["100-00"] == ("kept", [])
    rows = [json.loads(line) for line in (work / "rejected.jsonl").read_text().splitlines()]
    assert next(r for r in rows if r["obj_id"] == "101")["limits"] == {"resolution": "needs >= 150 px"}

    ov = tmp_path / "overrides.json"
    ov.write_text(json.dumps({"faces": {"101-00": "keep", "100-00": "reject"}}))
    rc, out, err = cli("filter", "--work", work, "--overrides", ov, *FILTER_FLAGS)
    assert rc == 0, err
    assert "2 decided by a person (1 keep, 1 reject, 2 against the tests" in out
    after = decisions(work)
    assert after["101-00"] == ("kept", []) and after["100-00"] == ("rejected", ["override"])
    assert {k: v for k, v in after.items() if k not in ("100-00", "101-00")} == \
        {k: v for k, v in before.items() if k not in ("100-00", "101-00")}
    kept = {f"{d['obj_id']}-{d['face_idx']:02d}": d for d in json.loads((work / "filtered.json").read_text())}
    assert kept["101-00"]["filter"]["override"]["tests_failed"] == ["resolution"]
    row = next(json.loads(x) for x in (work / "rejected.jsonl").read_text().splitlines()
               if json.loads(x)["obj_id"] == "100")
    assert row["values"]["override"] == {"decision": "reject", "tests_failed": [], "limits": {}}
    summary = json.loads((work / "filter_summary.json").read_text())
    assert summary["overrides"]["keep"] == 1 and summary["overrides"]["reject"] == 1
    assert summary["reasons"]["override"] == 1
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == \
        {"faces": {"100-00": "reject", "101-00": "keep"}}

    # a rerun without the flag keeps the decisions (up to date, and recomputed with --force)
    rc, out, _ = cli("filter", "--work", work, *FILTER_FLAGS)
    assert rc == 0 and "up to date" in out
    rc, out, _ = cli("filter", "--work", work, "--force", *FILTER_FLAGS)
    assert rc == 0 and decisions(work) == after

    # unknown ids: a clear error and nothing changed
    files = {n: (work / n).read_bytes() for n in ("filtered.json", "rejected.jsonl",
                                                  "filter_summary.json", flt.OVERRIDES_FILE)}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"faces": {"100-00": "keep", "555-03": "reject"}}))
    rc, out, err = cli("filter", "--work", work, "--overrides", bad, "--force", *FILTER_FLAGS)
    assert rc == 2 and "555-03" in err and "nothing was changed" in err and "Traceback" not in err
    assert {n: (work / n).read_bytes() for n in files} == files
    rc, _, err = cli("filter", "--work", work, "--overrides", tmp_path / "missing.json", *FILTER_FLAGS)
    assert rc == 2 and "not found" in err

    # decisions in force that faces.json no longer has (e.g. an update re-detected an image):
    # said and recorded (exit 1), kept in the file, not applied; the others still apply
    stored = json.loads((work / flt.OVERRIDES_FILE).read_text())
    stale = {"faces": {**stored["faces"], "100-07": "keep"}}
    (work / flt.OVERRIDES_FILE).write_text(json.dumps(stale))
    rc, _, err = cli("filter", "--work", work, *FILTER_FLAGS)
    assert rc == 1 and "100-07" in err and str(work / flt.OVERRIDES_FILE) in err, err
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == stale
    summary = json.loads((work / "filter_summary.json").read_text())
    assert summary["overrides"]["stale"] == ["100-07"]
    assert decisions(work) == after

    # the file replaces the decisions about faces of faces.json: an empty one drops them,
    # but not the stale one, which no page showed (it stays in force, still reported)
    empty = tmp_path / "none.json"
    empty.write_text('{"faces": {}}')
    rc, _, _ = cli("filter", "--work", work, "--overrides", empty, *FILTER_FLAGS)
    assert rc == 1 and decisions(work) == before
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == {"faces": {"100-07": "keep"}}


# ---- the page's data ------------------------------------------------------------------------

def test_review_page_data_thumbnails_and_provenance(work, cli):
    rc, out, err = cli("review", "--work", work, "--quiet", "--workers", 1)
    assert rc == 0, err
    page = work / "report" / "review.html"
    assert f"-> {page}" in out
    data = page_data(page)
    truth = decisions(work)
    faces = {f["id"]: f for f in data["faces"]}
    assert {k: f["decision"] for k, f in faces.items()} == {k: v[0] for k, v in truth.items()}
    assert [f["id"] for f in data["faces"]] == ["100-00", "101-00", "102-00", "103-00", "103-01", "104-00"]
    # every failed test with its measured value and limit
    small = faces["101-00"]["failed"]
    assert [t["test"] for t in small] == ["resolution"]
    assert small[0]["value"] < 150 and small[0]["limit"] == "needs >= 150 px"
    assert faces["102-00"]["failed"] == [{"test": "score", "value": 0.1, "limit": "needs >= 0.3 (cnn)"}]
    assert faces["100-00"]["failed"] == [] and faces["100-00"]["detector"] == "cnn"
    # provenance: the stored API record, else objects.jsonl
    o = data["objects"]
    assert o["103"] == {"title": "Portrait 103", "artist": "Artist 103", "department": "European Paintings",
                        "date": "ca. 1703", "url": "https://www.metmuseum.org/art/collection/search/103",
                        "width": 400, "height": 400}
    assert o["104"]["title"] == "row title 104" and o["104"]["department"] == "Photographs"
    assert o["104"]["url"] == "https://www.metmuseum.org/art/collection/search/104"
    # the page's text cannot end its own data element
    assert "<script>window.pwned" not in page.read_text() and o["100"]["title"] == TRICKY_TITLE
    # landmarks for the drawing, and compare's stored ones
    assert len(faces["100-00"]["lm"]) == 136 and len(faces["100-00"]["stored"]["lm"]) == 136
    assert faces["100-00"]["stored"]["nme"] > 0
    # the original, relative to the page (opens from disk)
    assert (page.parent / faces["103-01"]["src"]).resolve() == (work / "originals" / "103.png").resolve()
    # thumbnails: small files beside the page, nothing inlined
    for f in data["faces"]:
        t = page.parent / f["thumb"]
        assert t.is_file() and 500 < t.stat().st_size < 40_000
    assert "data:image" not in page.read_text()

    # a rerun makes no thumbnail again; an override shows in the page
    (work / "ov.json").write_text(json.dumps({"faces": {"101-00": "keep"}}))
    assert cli("filter", "--work", work, "--overrides", work / "ov.json", *FILTER_FLAGS)[0] == 0
    paths = review.write_review(work)
    assert paths.thumbs_made == 0
    data = page_data(paths.page)
    f = next(x for x in data["faces"] if x["id"] == "101-00")
    assert f["decision"] == "kept" and f["override"] == "keep"
    assert [t["test"] for t in f["failed"]] == ["resolution"]
    assert data["overrides"] == {"101-00": "keep"}


def test_review_uses_aligned_crops_and_drops_unused_thumbnails(work, cli):
    rc, _, err = cli("align", "--json", work / "filtered.json", "--source-images", work,
                     "--output-dir", work / "images", "--quiet", "--workers", 1)
    assert rc == 0, err
    paths = review.write_review(work)
    data = page_data(paths.page)
    kinds = {f["id"]: Path(f["thumb"]).stem.rsplit("-", 1)[1][0] for f in data["faces"]}
    truth = decisions(work)
    assert kinds == {k: "a" if v[0] == "kept" else "q" for k, v in truth.items()}
    assert len(list(paths.thumbs.glob("*.jpg"))) == len(data["faces"])


def test_review_usage_errors(tmp_path, cli):
    rc, _, err = cli("review", "--work", tmp_path / "nowhere")
    assert rc == 2 and "not a folder" in err
    (tmp_path / "w").mkdir()
    rc, _, err = cli("review", "--work", tmp_path / "w")
    assert rc == 2 and "run `metfaces-build filter" in err and "Traceback" not in err


def test_review_deletes_only_thumbnails_it_made(work, tmp_path, cli):
    """`review --out DIR` into a folder with the person's own pictures in DIR/thumbs/:
    those stay; a thumbnail review made that no face uses any more goes."""
    out = tmp_path / "shared"
    (out / "thumbs").mkdir(parents=True)
    mine = {"holiday.jpg": b"\xff\xd8 a person's photo", "100-00-a0123456789.jpg": b"\xff\xd8 not review's"}
    for name, data in mine.items():
        (out / "thumbs" / name).write_bytes(data)
    rc, _, err = cli("review", "--work", work, "--out", out, "--quiet", "--workers", 1)
    assert rc == 0, err
    first = page_data(out / "review.html")
    made = {Path(f["thumb"]).name for f in first["faces"]}
    assert {p.name for p in (out / "thumbs").glob("*.jpg")} == made | set(mine)
    # an override makes 101-00 kept: its page shows a new thumbnail; the old one is review's
    (work / "ov.json").write_text(json.dumps({"faces": {"101-00": "keep"}}))
    assert cli("filter", "--work", work, "--overrides", work / "ov.json", *FILTER_FLAGS)[0] == 0
    rc, _, err = cli("align", "--json", work / "filtered.json", "--source-images", work,
                     "--output-dir", work / "images", "--quiet", "--workers", 1)
    assert rc == 0, err
    rc, _, err = cli("review", "--work", work, "--out", out, "--quiet", "--workers", 1)
    assert rc == 0, err
    now = {Path(f["thumb"]).name for f in page_data(out / "review.html")["faces"]}
    assert now != made
    assert {p.name for p in (out / "thumbs").glob("*.jpg")} == now | set(mine)
    assert {n: (out / "thumbs" / n).read_bytes() for n in mine} == mine


def _faces_json(w: Path) -> list:
    return json.loads((w / "faces.json").read_text())


def test_decisions_about_absent_faces_survive_save_apply_withdraw_restore(work, cli, tmp_path):
    """A person rejects 100-00; an update withdraws object 100 (its face leaves
    faces.json); the page, made again, shows it no more but carries the decision and
    saves it with a new one; filter applies the file (the absent one stays in force,
    reported); the Met restores the object: the face is rejected again."""
    all_faces = _faces_json(work)
    ov = tmp_path / "ov.json"
    ov.write_text(json.dumps({"faces": {"100-00": "reject"}}))
    assert cli("filter", "--work", work, "--overrides", ov, *FILTER_FLAGS)[0] == 0
    assert decisions(work)["100-00"] == ("rejected", ["override"])

    # withdraw: object 100 has no face any more
    (work / "faces.json").write_text(json.dumps([f for f in all_faces if f["obj_id"] != "100"]))
    rc, _, err = cli("filter", "--work", work, *FILTER_FLAGS)
    assert rc == 1 and "100-00" in err
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == {"faces": {"100-00": "reject"}}
    data = review.collect(work, work, work / "report")
    assert "100-00" not in {f["id"] for f in data["faces"]}
    assert data["overrides"] == {} and data["absent"] == {"100-00": "reject"}

    # the page saves what it carries plus a new mark (as review_page.html's save() does)
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"faces": {**data["absent"], **data["overrides"], "101-00": "keep"}}))
    rc, _, err = cli("filter", "--work", work, "--overrides", saved, *FILTER_FLAGS)
    assert rc == 1 and "100-00" in err and "Traceback" not in err
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == \
        {"faces": {"100-00": "reject", "101-00": "keep"}}
    # a file saved without the absent decision (e.g. by hand) does not drop it either
    only_new = tmp_path / "only_new.json"
    only_new.write_text(json.dumps({"faces": {"101-00": "keep"}}))
    assert cli("filter", "--work", work, "--overrides", only_new, *FILTER_FLAGS)[0] == 1
    assert json.loads((work / flt.OVERRIDES_FILE).read_text())["faces"]["100-00"] == "reject"
    assert review.collect(work, work, work / "report")["absent"] == {"100-00": "reject"}

    # restore: the face is back and the decision applies again
    (work / "faces.json").write_text(json.dumps(all_faces))
    rc, _, err = cli("filter", "--work", work, *FILTER_FLAGS)
    assert rc == 0, err
    after = decisions(work)
    assert after["100-00"] == ("rejected", ["override"]) and after["101-00"] == ("kept", [])
    data = review.collect(work, work, work / "report")
    assert data["absent"] == {} and data["overrides"] == {"100-00": "reject", "101-00": "keep"}


def test_an_absent_face_of_a_fetched_object_is_kept_but_a_typo_is_refused(work, cli, tmp_path):
    """A page saved before an update may name a face that faces.json lost since: its
    object is in objects.jsonl, so the decision is kept (stale, reported); an id of an
    object never fetched, or not of the form OBJ-NN, is still a mistake."""
    (work / "faces.json").write_text(json.dumps([f for f in _faces_json(work) if f["obj_id"] != "103"]))
    assert cli("filter", "--work", work, *FILTER_FLAGS)[0] == 0
    old_page = tmp_path / "old.json"
    old_page.write_text(json.dumps({"faces": {"103-01": "keep", "100-00": "reject"}}))
    rc, _, err = cli("filter", "--work", work, "--overrides", old_page, *FILTER_FLAGS)
    assert rc == 1 and "103-01" in err
    assert json.loads((work / flt.OVERRIDES_FILE).read_text()) == \
        {"faces": {"100-00": "reject", "103-01": "keep"}}
    for typo in ("777-00", "103-1", "103"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"faces": {typo: "keep"}}))
        rc, _, err = cli("filter", "--work", work, "--overrides", bad, *FILTER_FLAGS)
        assert rc == 2 and typo in err and "nothing was changed" in err
