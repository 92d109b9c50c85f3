"""The work directory's recipe, `status`, `report` and the export of current decisions
(issue 17): `run --work DIR` alone brings everything current and, when it already is,
requests no record or image and rewrites no file; single commands agree with `run`."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from metfaces_build.met.emulator import API_PREFIX, start_emulator

FAST = ["--retries", "3", "--timeout", "10", "--backoff-base", "0.02", "--backoff-max", "0.2",
        "--cooldown", "0.1", "--rate", "100", "--workers", "2", "--fetch-workers", "2",
        "--quiet"]


@pytest.fixture(scope="module")
def emu():
    with start_emulator() as h:
        yield h


@pytest.fixture(scope="module")
def built(emu, tmp_path_factory):
    """One `run` on a fresh directory (department 11), shared read-only by the tests that
    copy it before changing anything."""
    from metfaces_build.app.cli import main
    work = tmp_path_factory.mktemp("recipe") / "work"
    assert main(["run", "--work", str(work), "--api", emu.api_root, "--departments", "11",
                 *FAST]) == 0
    return work


def copy_of(built: Path, tmp_path: Path) -> Path:
    import shutil
    dst = tmp_path / "work"
    shutil.copytree(built, dst)
    return dst


def mtimes(work: Path) -> dict:
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}


def kept_keys(work: Path) -> list:
    return sorted((str(d["obj_id"]), d["face_idx"]) for d in
                  json.loads((work / "filtered.json").read_text()))


def test_recipe_records_the_selection_and_options(built):
    import tomllib
    recipe = tomllib.loads((built / "recipe.toml").read_text())
    assert recipe["fetch"]["departments"] == "11" and recipe["fetch"]["rate"] == 100.0
    assert recipe["detect"]["detector"] == "hog"
    assert recipe["filter"]["min_size"] == 1024.0 and recipe["align"]["size"] == 1024
    assert "workers" not in recipe["fetch"] and "quiet" not in recipe["fetch"]  # run-time only


def test_run_alone_when_current_requests_nothing_and_rewrites_nothing(built, emu, cli):
    work = built  # in place: a copy elsewhere is a moved directory (filter checks its root)
    before = mtimes(work)
    emu.reset_requests()
    rc, out, err = cli("run", "--work", work, "--quiet")
    assert rc == 0, err
    assert not emu.object_requests(), "no object record may be requested"
    assert not emu.requested("/CRDImages/"), err
    assert mtimes(work) == before, "no file may be rewritten"
    assert "everything was current: nothing to do" in out
    rc, out, _ = cli("status", "--work", work)
    assert rc == 0 and "everything current" in out
    assert all(line.split()[1] == "current" for line in out.splitlines()[:6])


def test_override_makes_crops_stale_export_refuses_then_run_makes_them_current(built, tmp_path, cli):
    work = copy_of(built, tmp_path)
    first = kept_keys(work)[0]
    decision = tmp_path / "o.json"
    decision.write_text(json.dumps({"faces": {f"{first[0]}-{first[1]:02d}": "reject"}}))
    assert cli("filter", "--work", work, "--overrides", decision, "--quiet")[0] == 0
    assert first not in kept_keys(work)

    rc, out, _ = cli("status", "--work", work)
    assert rc == 1
    align_line = next(ln for ln in out.splitlines() if ln.startswith("align"))
    assert "stale" in align_line and f"{first[0]}-{first[1]:02d}" in align_line
    assert "metfaces-build run --work" in out
    rc, out, _ = cli("status", "--work", work, "--json")
    states = {s["stage"]: s for s in json.loads(out)["stages"]}
    assert rc == 1 and states["align"]["state"] == "stale" and states["filter"]["state"] == "current"

    rc, _, err = cli("export", "--work", work, "--out", tmp_path / "x.zip", "--quiet")
    assert rc == 2 and "not the current decisions" in err and not (tmp_path / "x.zip").exists()

    assert cli("run", "--work", work, "--quiet")[0] == 0
    assert cli("status", "--work", work)[0] == 0
    crops = sorted(p.name for p in (work / "images").glob("*.png"))
    assert crops == sorted(f"{o}-{i:02d}.png" for o, i in kept_keys(work))
    rc, _, err = cli("export", "--work", work, "--out", tmp_path / "x.zip", "--quiet")
    assert rc == 0, err
    side = json.loads(zipfile.ZipFile(tmp_path / "x.zip").read("metfaces-export.json"))
    assert sorted((im["obj_id"], im["face_idx"]) for im in side["images"]) == kept_keys(work)


def test_run_filter_config_is_kept_for_later_single_commands(built, tmp_path, cli):
    work = copy_of(built, tmp_path)
    cfg = tmp_path / "f.toml"
    cfg.write_text("[filter]\nmin_size = 48\nmax_hash_distance = -1\n")
    rc, _, err = cli("run", "--work", work, "--filter-config", cfg, "--quiet")
    assert rc == 0 and "recipe: filter.min_size 1024.0 -> 48.0" in err
    kept = kept_keys(work)
    assert len(kept) > 5  # the small faces pass now
    # a later filter with only overrides keeps the run's thresholds
    one = kept[0]
    decision = tmp_path / "o.json"
    decision.write_text(json.dumps({"faces": {f"{one[0]}-{one[1]:02d}": "reject"}}))
    assert cli("filter", "--work", work, "--overrides", decision, "--quiet")[0] == 0
    assert kept_keys(work) == kept[1:]
    summary = json.loads((work / "filter_summary.json").read_text())
    assert summary["config"]["min_size"] == 48.0
    # a flag on a single command changes the recipe, and says so
    rc, _, err = cli("filter", "--work", work, "--min-size", "64", "--quiet")
    assert rc == 0 and "recipe: filter.min_size 48.0 -> 64.0" in err
    assert "min_size = 64.0" in (work / "recipe.toml").read_text()


def test_flags_change_the_recipe_and_say_what_changed(built, tmp_path, cli):
    work = copy_of(built, tmp_path)
    rc, _, err = cli("run", "--work", work, "--rate", "50", "--quiet")
    assert rc == 0 and "recipe: fetch.rate 100.0 -> 50.0" in err
    assert "rate = 50.0" in (work / "recipe.toml").read_text()
    # a person's edit of the recipe is used, and status says the fetch table changed
    text = (work / "recipe.toml").read_text().replace('departments = "11"', 'departments = "11,9"')
    (work / "recipe.toml").write_text(text)
    rc, out, _ = cli("status", "--work", work)
    assert rc == 1 and "[fetch] table changed" in out
    assert cli("run", "--work", work, "--quiet")[0] == 0
    objects = [json.loads(ln) for ln in (work / "objects.jsonl").read_text().splitlines()]
    assert {o.get("department") for o in objects} >= {"European Paintings", "Drawings and Prints"}
    assert cli("status", "--work", work)[0] == 0


def test_no_recipe_and_no_selection_is_a_usage_error(tmp_path, cli):
    rc, _, err = cli("run", "--work", tmp_path / "new")
    assert rc == 2 and "has no recipe yet" in err and "Traceback" not in err


def test_malformed_recipe_names_file_and_line(built, tmp_path, cli):
    work = copy_of(built, tmp_path)
    (work / "recipe.toml").write_text("version = 1\n[fetch]\nrate = = 3\n")
    rc, _, err = cli("run", "--work", work, "--quiet")
    assert rc == 2 and "recipe.toml is not valid TOML" in err and "line 3" in err
    (work / "recipe.toml").write_text('version = 1\n[fetch]\ndepartments = "11"\nrate = "fast"\n')
    rc, _, err = cli("run", "--work", work, "--quiet")
    assert rc == 2 and "[fetch]: rate must be a number" in err
    # the recipe goes through the same checks as flags and keywords: choices too
    (work / "recipe.toml").write_text('version = 1\n[fetch]\ndepartments = "11"\n'
                                      '[detect]\ndetector = "CNN"\n')
    rc, _, err = cli("run", "--work", work, "--quiet")
    assert rc == 2 and "[detect]: detector must be one of hog, cnn, cascade" in err


def test_an_api_root_that_is_gone_is_said_at_once(built, tmp_path, cli):
    import socket
    work = copy_of(built, tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    text = (work / "recipe.toml").read_text()
    import re
    (work / "recipe.toml").write_text(re.sub(r'api = "http://127\.0\.0\.1:\d+',
                                             f'api = "http://127.0.0.1:{dead}', text))
    rc, _, err = cli("fetch", "--work", work, "--quiet")
    assert rc == 2 and "does not answer (connection refused" in err and "Traceback" not in err
    # run goes on with what is on disk (the other stages are offline) and says why fetch did not
    rc, out, err = cli("run", "--work", work, "--quiet")
    assert rc == 1 and "does not answer" in err
    assert "align   ok" in out


def test_report_subcommand_is_skipped_when_its_inputs_did_not_change(built, tmp_path, cli):
    work = copy_of(built, tmp_path)
    rc, out, _ = cli("report", "--work", work)
    assert rc == 0 and "(up to date)" in out
    (work / "filtered.json").write_text((work / "filtered.json").read_text() + " ")
    rc, out, _ = cli("status", "--work", work)
    assert "report  stale" in out and "filtered.json changed since it was made" in out
    rc, out, _ = cli("report", "--work", work)
    assert rc == 0 and "(up to date)" not in out
    assert "report  current" in cli("status", "--work", work)[1]


def test_status_usage_errors(tmp_path, cli):
    rc, _, err = cli("status", "--work", tmp_path / "nope")
    assert rc == 2 and "work directory not found" in err


def test_python_api_uses_the_recipe(built, tmp_path):
    import metfaces_build as mb
    work = copy_of(built, tmp_path)
    s = mb.status(work)
    assert s.exit_code == 0 and [x.state for x in s.states] == ["current"] * 6
    f = mb.filter(work, min_size=48)
    assert any("filter.min_size 1024.0 -> 48.0" in n for n in f.notes)
    assert mb.status(work).exit_code == 1  # crops now stale
    assert "min_size = 48.0" in (work / "recipe.toml").read_text()


def test_requests_counted_by_the_emulator_are_records(emu):
    """The emulator's counters the tests above rely on see record requests."""
    import requests
    emu.reset_requests()
    requests.get(emu.api_root + "/objects/436008", timeout=10)
    assert emu.object_requests()[436008] == 1
    assert API_PREFIX.endswith("/v1")


# ---- the pieces: unchanged files stay untouched, the recipe file round-trips ------------------

def test_writers_leave_a_file_holding_the_same_bytes_untouched(tmp_path):
    import os

    from metfaces_build.infra.files import atomic_open, atomic_write_bytes, atomic_write_json
    p = tmp_path / "a.json"
    assert atomic_write_json(p, {"x": 1}) is True
    os.utime(p, ns=(1, 1))
    assert atomic_write_json(p, {"x": 1}) is False and p.stat().st_mtime_ns == 1
    with atomic_open(p, "wb") as f:  # a streamed writer: same bytes, same file
        f.write(json.dumps({"x": 1}, indent=1).encode() + b"\n")
    assert p.stat().st_mtime_ns == 1
    assert atomic_write_bytes(p, b"other") is True and p.read_bytes() == b"other"
    assert p.stat().st_mtime_ns != 1
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".tmp-")]


def test_a_compact_journal_is_not_rewritten(tmp_path):
    import os

    from metfaces_build.stages.fetch import compact_journal
    p = tmp_path / "objects.jsonl"
    p.write_text('{"id": 2, "status": "ok"}\n{"id": 1, "status": "ok"}\n{"id": 2, "status": "no_image"}\n')
    assert compact_journal(p) == 2
    assert p.read_text() == '{"id": 1, "status": "ok"}\n{"id": 2, "status": "no_image"}\n'
    os.utime(p, ns=(1, 1))
    assert compact_journal(p) == 2 and p.stat().st_mtime_ns == 1
    p.write_text(p.read_text() + "{garbled\n")  # a damaged line is kept, and kept alone after
    assert compact_journal(p) == 2 and p.read_text().endswith("{garbled\n")
    os.utime(p, ns=(1, 1))
    assert compact_journal(p) == 2 and p.stat().st_mtime_ns == 1


def test_recipe_file_round_trips_any_text(tmp_path):
    from metfaces_build.infra.recipe import Recipe, load_recipe, save_recipe
    table = {"search": 'quote " back \\ tab \t newline \n émoji 🙂', "rate": 2.5, "limit": 3,
             "has_images": True, "allow_host": ["a.example", "b.example"]}
    p = tmp_path / "recipe.toml"
    assert save_recipe(p, Recipe({"fetch": table, "filter": {"min_score": {"cnn": 0.3}}}))
    back = load_recipe(p)
    assert back.sections == {"fetch": table, "filter": {"min_score": {"cnn": 0.3}}}
    assert not save_recipe(p, back)  # the same recipe: nothing written
    lone = Recipe({"fetch": {"search": "bad \ud800"}})
    save_recipe(p, lone)
    assert load_recipe(p).section("fetch")["search"] == "bad \ufffd"


def test_a_moved_work_directory_is_still_current(built, emu, tmp_path, cli):
    work = copy_of(built, tmp_path)  # copytree keeps mtimes: a folder moved as a whole
    rc, out, _ = cli("status", "--work", work)
    assert rc == 0, out
    before = mtimes(work)
    emu.reset_requests()
    rc, out, err = cli("run", "--work", work, "--quiet")
    assert rc == 0 and "everything was current: nothing to do" in out, err
    assert mtimes(work) == before and not emu.object_requests()
