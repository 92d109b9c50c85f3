"""No silent loss: a failed refresh keeps what it could not replace, and a damaged journal
line is never read as "object gone" (each test reproduces a loss the code once had)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from metfaces_build.infra.files import read_jsonl
from metfaces_build.met.emulator import start_emulator

from test_updates import DEPT, FLAGS, faces_by_obj, fetched, manifest, objects, today, with_crops  # noqa: F401

FAST = ["--retries", "0", "--backoff-base", "0.01", "--backoff-max", "0.01"]


def state_of(work: Path, oid: int) -> dict:
    """Everything a person would lose with object `oid`: its journal line, API record,
    original, faces and crops (bytes)."""
    line = {k: v for k, v in objects(work)[oid].items() if k not in ("attempts", "refresh_error")}
    return {"line": line,
            "api": (work / "api" / f"{oid}.json").read_bytes(),
            "originals": {p.name: p.read_bytes() for p in (work / "originals").glob(f"{oid}.*")},
            "faces": faces_by_obj(work).get(str(oid)),
            "filtered": [f for f in json.loads((work / "filtered.json").read_text())
                         if str(f["obj_id"]) == str(oid)],
            "crops": {p.name: p.read_bytes() for p in (work / "images").glob(f"{oid}-*.png")}}


def run(cli, emu, work: Path, *extra) -> tuple:
    emu.reset_requests()
    rc, out, err = cli("run", "--work", work, "--api", emu.api_root, "--departments", DEPT,
                       *extra, *FLAGS, *FAST)
    return rc, out, err


@pytest.mark.parametrize("how", ["404", "corrupt", "elsewhere", "reset"])
def test_a_failed_refresh_keeps_line_record_original_faces_and_crops(cli, fetched, how):
    """The Met re-shoots an object, but its new image cannot be had (a CDN that has not
    got the file yet answers 404; a corrupt file; a host outside the allow-list; a reset
    connection): nothing of the object is lost, the line says why, and the next run,
    --since or not, retries it and takes the new image once it is served."""
    emu, work = fetched
    oid = with_crops(work, 1)[0]
    before = state_of(work, oid)
    assert before["crops"] and before["faces"] and before["originals"]
    emu.reshoot(oid, rename=True)
    emu.break_image(oid, how)

    rc, out, err = run(cli, emu, work, "--since", today())
    assert rc == 1, out + err  # a recorded failure
    assert emu.object_requests() == {oid: 1}
    line = objects(work)[oid]
    assert line["status"] == "ok" and line["refresh_error"]
    assert line["refresh_error"].split(":")[0] == {"404": "not_found", "corrupt": "bad_content",
                                                   "elsewhere": "refused", "reset": "http_error"}[how]
    assert state_of(work, oid) == before   # line, api record, original, faces, crops
    assert "1 refresh(es) failed" in err and str(oid) in err and "refetch failed" in out
    assert not list((work / "originals").glob(".*"))  # no temporary left behind

    # the next run retries it even without --since; still broken: still kept
    rc, out, err = run(cli, emu, work)
    assert rc == 1 and emu.object_requests() == {oid: 1}
    assert state_of(work, oid) == before and objects(work)[oid]["refresh_error"]

    # served at last: the new image replaces the old, with its history; the crops re-made
    emu.mend_image(oid)
    rc, out, err = run(cli, emu, work)
    assert rc == 0, out + err
    after = objects(work)[oid]
    assert "refresh_error" not in after
    assert after["sha256"] != before["line"]["sha256"]
    assert after["previous_sha256"] == before["line"]["sha256"]
    assert json.loads((work / "api" / f"{oid}.json").read_text())["primaryImage"].endswith(
        after["image_url"].rsplit("/", 1)[1])
    assert after["image_url"] != before["line"]["image_url"]
    assert state_of(work, oid)["crops"].keys() == before["crops"].keys()
    assert state_of(work, oid)["crops"] != before["crops"]
    # and then it is settled: a plain rerun asks for nothing
    rc, out, err = run(cli, emu, work)
    assert rc == 0 and emu.object_requests() == {}


def garble(work: Path, oid: int, keep_id: bool) -> int:
    """Damage object `oid`'s line in the middle of objects.jsonl (its id still readable at
    the start, or not at all); returns its 1-based line number."""
    path = work / "objects.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    n = next(i for i, line in enumerate(lines) if json.loads(line)["id"] == oid)
    assert 0 < n < len(lines) - 1  # in the middle
    line = lines[n]
    cut = line.index(b",") + 1 if keep_id else 3
    lines[n] = line[:cut] + b'"status":"o\x00k\xff, "ti' + line[cut + 40:]
    path.write_bytes(b"".join(lines))
    return n + 1


@pytest.mark.parametrize("keep_id", [True, False], ids=["id-readable", "id-garbled"])
def test_a_damaged_journal_line_is_reported_and_never_read_as_object_gone(cli, fetched, keep_id):
    emu, work = fetched
    ids = sorted(objects(work))
    oid = with_crops(work, 2)[1]
    before = state_of(work, oid)
    lineno = garble(work, oid, keep_id)
    damaged = (work / "objects.jsonl").read_bytes().splitlines(keepends=True)[lineno - 1]

    rc, out, err = cli("detect", "--work", work, "--quiet")
    assert rc == 1 and f"objects.jsonl:{lineno}: damaged line" in err, out + err
    assert (f"object {oid}" in err) == keep_id
    assert faces_by_obj(work)[str(oid)] == before["faces"]
    for argv in (("filter", "--work", work, "--quiet"),
                 ("align", "--json", work / "filtered.json", "--source-images", work,
                  "--output-dir", work / "images", "--quiet")):
        rc, out, err = cli(*argv)
        assert rc == 0, out + err
    assert {p.name: p.read_bytes() for p in (work / "images").glob(f"{oid}-*.png")} == before["crops"]
    assert manifest(work)[(str(oid), 0)]["status"] == "ok"

    # a fetch that does not select the object compacts the journal: the line stays verbatim
    other = next(i for i in ids if i != oid)
    rc, out, err = cli("fetch", "--work", work, "--api", emu.api_root, "--ids", str(other),
                       "--force", "--quiet", "--rate", "200")
    assert rc == 0, out + err
    assert damaged in (work / "objects.jsonl").read_bytes().splitlines(keepends=True)
    assert faces_by_obj(work)[str(oid)] == before["faces"]

    # a run that selects it fetches it again: the journal is whole again, nothing was lost
    rc, out, err = cli("run", "--work", work, "--api", emu.api_root, "--departments", DEPT, *FLAGS)
    assert objects(work)[oid]["status"] == "ok"
    assert faces_by_obj(work)[str(oid)] == before["faces"]
    assert {p.name: p.read_bytes() for p in (work / "images").glob(f"{oid}-*.png")} == before["crops"]
    lines = (work / "objects.jsonl").read_bytes().splitlines(keepends=True)
    if keep_id:  # superseded by the new line: gone; the run is clean
        assert rc == 0 and damaged not in lines, out + err
    else:  # whose line it was is unknown: kept, and still reported
        assert rc == 1 and damaged in lines and "damaged line" in err


def test_compaction_keeps_damaged_lines_unless_superseded(tmp_path):
    """Unit: scan_objects names each damaged line by number; compaction keeps it verbatim
    (after the others) until a later readable line of the same object supersedes it."""
    from metfaces_build.infra.workdir import scan_objects
    from metfaces_build.stages.fetch import compact_journal
    p = tmp_path / "objects.jsonl"
    p.write_bytes(b'{"id": 5, "status": "ok"}\n'
                  b'{"id": 7, "status": "o\xff\n'          # damaged, id readable, superseded below
                  b'{"id": 3, "st\x00atus"\n'              # damaged, id readable, the latest of 3
                  b'\x00\x01garbage\n'                      # damaged, no id
                  b'{"id": 7, "status": "not_found"}\n'
                  b'{"id": 1e999999999999999999999}\n'      # a record of no object: dropped
                  b'{"id": 9, "sta')                         # cut by a kill
    rows, damage = scan_objects(p)
    assert sorted(rows) == [5, 7]
    assert damage.lines == [(3, 3), (4, None), (7, 9)]
    assert damage.may_hide(3) and damage.may_hide("9") and damage.may_hide(11)
    assert not damage.may_hide(5) and not damage.may_hide(7)
    assert any(f"{p}:4: damaged line" in n for n in damage.notes())
    assert compact_journal(p) == 2
    assert p.read_bytes() == (b'{"id": 5, "status": "ok"}\n{"id": 7, "status": "not_found"}\n'
                              b'{"id": 3, "st\x00atus"\n\x00\x01garbage\n')
    assert compact_journal(p) == 2 and scan_objects(p)[1].lines == [(3, 3), (4, None)]


def test_a_forced_refetch_that_fails_keeps_the_object_too(cli, fetched):
    """`fetch --force` refetches every object; one whose image now answers 404, or whose
    record request fails, keeps its line, original and record (and so its faces)."""
    emu, work = fetched
    img_gone, rec_fails = with_crops(work, 2)
    before = {i: state_of(work, i) for i in (img_gone, rec_fails)}
    emu.break_image(img_gone, "404")
    emu.set_faults(faults=("5xx",), fault_rate=1.0)
    rc, out, err = cli("fetch", "--work", work, "--api", emu.api_root, "--ids", str(rec_fails),
                       "--force", "--quiet", "--rate", "200", *FAST)
    assert rc == 1 and objects(work)[rec_fails]["refresh_error"].startswith("http_error")
    emu.set_faults(fault_rate=0.0)
    rc, out, err = cli("fetch", "--work", work, "--api", emu.api_root, "--departments", DEPT,
                       "--force", "--quiet", "--rate", "200", *FAST)
    assert rc == 1 and "1 refresh(es) failed" in err, out + err
    assert objects(work)[img_gone]["refresh_error"].startswith("not_found")
    assert "refresh_error" not in objects(work)[rec_fails]  # fetched again: whole again
    for i in (img_gone, rec_fails):
        assert state_of(work, i) == before[i]
    rc, out, err = cli("detect", "--work", work, "--quiet")
    assert rc == 0 and faces_by_obj(work)[str(img_gone)] == before[img_gone]["faces"]
    # served again: the next plain fetch retries it (and only it) and clears the error
    emu.mend_image(img_gone)
    emu.reset_requests()
    rc, out, err = cli("fetch", "--work", work, "--api", emu.api_root, "--departments", DEPT,
                       "--quiet", "--rate", "200", *FAST)
    assert rc == 0 and emu.object_requests() == {img_gone: 1}
    assert "refresh_error" not in objects(work)[img_gone]
    assert state_of(work, img_gone) == before[img_gone]
