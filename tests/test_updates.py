"""Updates flow through every stage: the Met changes its collection, `run --since DATE`
refreshes exactly the changed objects, and each stage redoes exactly their work; a
second identical run does none (measured on the emulator's request log and each stage's
work counters)."""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from metfaces_build.infra.files import read_jsonl
from metfaces_build.met.emulator import start_emulator

DEPT = "11"  # European Paintings: 10 public-domain objects with images, 2 not
FLAGS = ["--rate", "200", "--workers", "2", "--fetch-workers", "2", "--quiet"]


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def crops_state(work: Path) -> dict:
    """{crop file name: mtime_ns}: a rewritten crop has a new mtime."""
    return {p.name: p.stat().st_mtime_ns for p in (work / "images").glob("*.png")}


def manifest(work: Path) -> dict:
    return {(str(e["record"]["obj_id"]), e["record"]["face_idx"]): e
            for e in json.loads((work / "images" / "aligned.json").read_text())}


def objects(work: Path) -> dict:
    return {r["id"]: r for r in read_jsonl(work / "objects.jsonl")}


def faces_by_obj(work: Path) -> dict:
    out: dict = {}
    for f in json.loads((work / "faces.json").read_text()):
        out.setdefault(str(f["obj_id"]), []).append(f)
    return out


def with_crops(work: Path, n: int) -> list:
    """n objects with aligned crops (faces the filter kept)."""
    ids = sorted({int(k[0]) for k, e in manifest(work).items() if e["status"] == "ok"})
    assert len(ids) >= n
    return ids[:n]


@pytest.fixture
def fetched(cli, tmp_path):
    """A work directory with department 11 run end to end, and the emulator serving it."""
    with start_emulator() as emu:
        work = tmp_path / "work"
        rc, out, err = cli("run", "--work", work, "--api", emu.api_root, "--departments", DEPT, *FLAGS)
        assert rc == 0, out + err
        yield emu, work


def run_since(cli, emu, work: Path) -> tuple:
    emu.reset_requests()
    rc, out, err = cli("run", "--work", work, "--api", emu.api_root, "--departments", DEPT,
                       "--since", today(), *FLAGS)
    assert rc == 0, out + err
    return out, emu.object_requests(), emu.requested("/CRDImages/")


def test_reshoot_correct_add_then_run_since_redoes_exactly_that(cli, fetched):
    emu, work = fetched
    reshot, corrected, template = with_crops(work, 3)
    before_objects, before_crops, before_faces = objects(work), crops_state(work), faces_by_obj(work)
    before_manifest = manifest(work)
    before_rejected = list(read_jsonl(work / "rejected.jsonl"))
    emu.reshoot(reshot)
    emu.correct(corrected, title="Portrait (title corrected)")
    new = emu.add_object(department_id=11, like=template).id  # its faces: copies of template's

    out, records, images = run_since(cli, emu, work)

    # exactly the three changed objects were requested: records, and each image once
    assert set(records) == {reshot, corrected, new} and all(n == 1 for n in records.values())
    assert len(images) == 3 and all(n == 1 for n in images.values())
    # fetch: the re-shot original replaced, with its history; the corrected one kept
    after = objects(work)
    assert after[reshot]["sha256"] != before_objects[reshot]["sha256"]
    assert after[reshot]["previous_sha256"] == before_objects[reshot]["sha256"]
    assert after[reshot]["history"][-1]["sha256"] == before_objects[reshot]["sha256"]
    assert after[reshot]["changed_at"].startswith(today())
    assert after[corrected]["sha256"] == before_objects[corrected]["sha256"]
    assert after[corrected]["title"] == "Portrait (title corrected)"
    assert "previous_sha256" not in after[corrected]
    assert after[new]["status"] == "ok"
    untouched = set(before_objects) - {reshot, corrected}
    assert all(after[i] == before_objects[i] for i in untouched)
    # detect: re-shot image and new object detected (2 detector calls), the rest reused
    assert "detect changes:" in out
    faces = faces_by_obj(work)
    assert [f["source_sha256"] for f in faces[str(reshot)]] == [after[reshot]["sha256"]] * len(faces[str(reshot)])
    assert faces[str(new)] and faces[str(corrected)][0]["title"] == "Portrait (title corrected)"
    assert {k: v for k, v in faces.items() if k not in {str(reshot), str(corrected), str(new)}} == \
        {k: v for k, v in before_faces.items() if k not in {str(reshot), str(corrected)}}
    # align: the re-shot object's crops re-made (and say why), the corrected one's kept
    # (its manifest record updated), every other existing crop untouched unless the
    # near-duplicate test now rejects it (the new object copies the template's faces, and
    # the sample collection repeats faces across objects): then deleted and superseded.
    # New crops: the new object's kept faces, and faces the near-duplicate test now keeps
    crops = crops_state(work)
    m = manifest(work)
    was_rejected = {(str(r["obj_id"]), r["face_idx"]) for r in before_rejected}
    now_rejected = {(str(r["obj_id"]), r["face_idx"]): r["reasons"]
                    for r in read_jsonl(work / "rejected.jsonl")}
    for key, e in m.items():
        name = f"{key[0]}-{key[1]:02d}.png"
        if key[0] == str(reshot):
            assert e["status"] == "ok" and crops[name] != before_crops[name]
            assert e["supersedes"]["reason"] == "source image changed"
            assert e["supersedes"]["file_md5"] == before_manifest[key]["file_md5"]
        elif name not in before_crops:
            assert e["status"] == "ok" and (key[0] == str(new) or key in was_rejected)
        elif e["status"] == "superseded":
            assert key[0] != str(corrected) and name not in crops
            assert "near_duplicate" in now_rejected[key]
        else:
            assert e["status"] == before_manifest[key]["status"] == "ok" and "supersedes" not in e
            assert crops[name] == before_crops[name]
            if key[0] == str(corrected):
                assert e["record"]["title"] == "Portrait (title corrected)"
    # run's updates block
    n_reshot = len([k for k in m if k[0] == str(reshot) and m[k]["status"] == "ok"])
    n_new = len(set(crops) - set(before_crops))
    assert "updates:" in out
    assert "objects  3 updated (1 new, 1 new image, 1 record only)" in out
    assert "work     2 detector calls" in out
    remade = sum(1 for k, e in m.items() if k[0] == str(reshot) and "supersedes" in e)
    n_removed = sum(1 for e in m.values() if e["status"] == "superseded")
    assert remade == n_reshot > 0
    assert f"crops    {remade} re-made, {n_new} new, {n_removed} removed, " in out

    # a second identical run: the same three records asked (the listing names them), no
    # image, no detector call, no crop written, nothing rewritten
    before2 = (crops_state(work), (work / "faces.json").stat().st_mtime_ns, objects(work))
    out2, records2, images2 = run_since(cli, emu, work)
    assert set(records2) == {reshot, corrected, new}
    assert images2 == {}
    assert "objects  0 updated (3 unchanged)" in out2
    assert "faces    0 added, 0 removed, 0 moved" in out2
    assert "work     0 detector calls, 0 images measured by filter, 0 crops written" in out2
    assert (crops_state(work), (work / "faces.json").stat().st_mtime_ns) == before2[:2]
    assert {i: {k: v for k, v in r.items() if k != "attempts"} for i, r in objects(work).items()} == \
        {i: {k: v for k, v in r.items() if k != "attempts"} for i, r in before2[2].items()}


def test_withdrawn_object_loses_original_faces_and_crops(cli, fetched, tmp_path):
    from metfaces_build import export
    emu, work = fetched
    gone = with_crops(work, 3)[2]
    before = manifest(work)
    mine = [k for k, e in before.items() if k[0] == str(gone) and e["status"] == "ok"]
    assert mine
    n_faces = len(faces_by_obj(work)[str(gone)])
    emu.withdraw(gone, "rights")

    out, records, images = run_since(cli, emu, work)

    assert set(records) == {gone} and images == {}
    row = objects(work)[gone]
    assert row["status"] == "not_public_domain" and row["previous_sha256"]
    assert not list((work / "originals").glob(f"{gone}.*"))
    assert str(gone) not in faces_by_obj(work)
    assert str(gone) not in {str(f["obj_id"]) for f in json.loads((work / "filtered.json").read_text())}
    m = manifest(work)
    for k in mine:
        assert m[k]["status"] == "withdrawn" and "source image" in m[k]["reason"]
        assert not (work / "images" / f"{k[0]}-{k[1]:02d}.png").exists()
    assert "objects  1 updated (1 withdrawn)" in out
    assert f"faces    0 added, {n_faces} removed, 0 moved" in out
    assert f"0 new, {len(mine)} removed" in out
    # withdrawn crops are not failures and are not exported
    s = export(work, tmp_path / "export", layout="folder")
    assert s.exit_code == 0 and "not ok" not in s.line()
    names = json.loads((tmp_path / "export" / "metfaces-export.json").read_text())
    assert str(gone) not in json.dumps(names)


def test_dry_run_since_counts_changed_objects_as_to_request(tmp_path):
    """A settled object the --since listing names is requested again, so the dry run
    counts it (and requests no record or image)."""
    from metfaces_build import fetch
    with start_emulator() as emu:
        work = tmp_path / "work"
        assert fetch(work, api=emu.api_root, departments=DEPT, rate=200, quiet=True).exit_code == 0
        oid = objects(work)
        some = next(i for i, r in oid.items() if r["status"] == "ok")
        emu.correct(some, title="Corrected")
        emu.reset_requests()
        s = fetch(work, api=emu.api_root, departments=DEPT, since=today(), dry_run=True, quiet=True)
        assert s.plan.selected == 1 and s.plan.to_request == 1
        assert emu.object_requests() == {} and emu.requested("/CRDImages/") == {}
        assert objects(work) == oid


def test_a_failed_refetch_keeps_the_object_and_history_is_kept():
    """Unit: a network failure on a changed object never withdraws it; a new image adds
    to the history; update kinds."""
    from metfaces_build.stages.fetch import UpdateJournal as _UpdateJournal
    from metfaces_build.stages.fetch import carry_history, update_kind
    old = {"id": 1, "status": "ok", "sha256": "a" * 64, "image_url": "u1", "title": "T",
           "path": "originals/1.jpg"}
    written: list = []

    class Sink:
        def write(self, row):
            written.append(row)
    updates: dict = {}
    j = _UpdateJournal(Sink(), {1: old}, frozenset({1, 2}), updates, "2026-01-01T00:00:00Z")
    j.write({"id": 1, "status": "http_error", "reason": "503"})
    j.write({"id": 3, "status": "ok"})  # not listed: written as is, not classified
    assert written[0] == {**old, "refresh_error": "http_error: 503"}
    assert written[1] == {"id": 3, "status": "ok"} and updates == {"failed": [1]}

    new = {**old, "sha256": "b" * 64, "image_url": "u2"}
    row = carry_history(old, new, "2026-02-02")
    assert row["previous_sha256"] == "a" * 64 and row["changed_at"] == "2026-02-02"
    assert row["history"] == [{"sha256": "a" * 64, "image_url": "u1", "until": "2026-02-02"}]
    again = carry_history(row, {**row, "sha256": "c" * 64, "history": None}, "2026-03-03")
    assert [h["sha256"] for h in again["history"]] == ["a" * 64, "b" * 64]
    assert carry_history(row, {**new}, "2026-04-04")["changed_at"] == "2026-02-02"  # same image

    assert update_kind(None, {"status": "ok"}) == "new"
    assert update_kind(old, new) == "new_image"
    assert update_kind(old, {**old, "title": "T2"}) == "record"
    assert update_kind(old, {"id": 1, "status": "not_public_domain"}) == "withdrawn"
    assert update_kind(old, {**old}) == "unchanged"


def test_detect_on_a_folder_redoes_only_changed_files(tmp_path):
    """--images folders are keyed by size and mtime: a rerun makes no detector call; a
    changed file is detected again, a deleted one leaves the journal."""
    import os

    import numpy as np
    from PIL import Image

    from metfaces_build.stages.detect import DetectOptions, detect
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    opts = DetectOptions(images=str(folder), out=str(tmp_path / "faces.json"), workers=1, quiet=True)
    assert detect(None, opts).detector_calls == 3
    assert detect(None, opts).detector_calls == 0
    Image.fromarray(rng.integers(0, 255, (80, 64, 3), dtype=np.uint8)).save(folder / "b.png")
    os.unlink(folder / "c.png")
    s = detect(None, opts)
    assert s.detector_calls == 1 and s.dropped == 1
    assert [r["obj_id"] for r in read_jsonl(tmp_path / "faces.detect.jsonl")] == ["a", "b"]
