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
