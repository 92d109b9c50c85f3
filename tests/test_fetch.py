"""The fetch stage against the emulator: faults, resume, SIGKILL, --from-json, usage errors."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metfaces_build.met.emulator import FAULT_KINDS, start_emulator
from metfaces_build.stages.fetch import STATUSES, JournalIndex, compact_journal, dedupe_ids
from metfaces_build.infra.images import open_image
from metfaces_build.infra.files import read_jsonl

ALL_DEPTS = "11,9,15,1,19"
# short timeouts and backoffs so faults cost milliseconds, not minutes
FAST = ["--rate", "200", "--workers", "4", "--quiet", "--timeout", "0.5", "--backoff-base", "0.01",
        "--backoff-max", "0.05", "--cooldown", "0.1"]


def journal(work: Path) -> dict:
    return {r["id"]: r for r in read_jsonl(work / "objects.jsonl")}


def assert_consistent(work: Path, expected_ids) -> dict:
    """Every object has a final status; every original decodes fully and matches its sha256;
    no temp or stray file anywhere; the journal is compacted (one line per id, sorted)."""
    lines = list(read_jsonl(work / "objects.jsonl"))
    ids = [r["id"] for r in lines]
    assert ids == sorted(set(ids))
    rows = {r["id"]: r for r in lines}
    assert set(expected_ids) <= set(rows)
    assert all(r["status"] in STATUSES for r in rows.values())
    ok_files = {r["path"] for r in rows.values() if r["status"] == "ok"}
    on_disk = {f"originals/{p.name}" for p in (work / "originals").iterdir()}
    assert on_disk == ok_files, "a file under originals/ without an ok record, or vice versa"
    for r in rows.values():
        if r["status"] == "ok":
            p = work / r["path"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == r["sha256"]
            with open_image(p) as im:
                assert im.size == (r["width"], r["height"])
            assert (work / "api" / f"{r['id']}.json").exists()
    return rows


@pytest.fixture(scope="module")
def clean_emu():
    with start_emulator() as h:
        yield h


def expected_ids(h):
    return {o.id for o in h.collection.objects}


def test_all_faults_then_rerun_completes(cli, tmp_path):
    """Every fault kind plus a per-client rate limit and a front-end block, all at once."""
    work = tmp_path / "w"
    with start_emulator(faults=FAULT_KINDS, fault_rate=0.3, seed=7, retry_after=0, slow_delay=0.8,
                        rate_limit=15, block=(20, 1.0, 0.3)) as h:
        args = ["fetch", "--work", work, "--api", h.api_root, "--departments", ALL_DEPTS,
                "--retries", "8", *FAST]
        rc, out, err = cli(*args)
        assert "Traceback" not in err
        stats = h.stats()
        assert set(stats["faults"]) == set(FAULT_KINDS), stats
        assert stats["blocked"] > 0, stats  # the front-end block fired (rate limiting may too)
        rows = assert_consistent(work, expected_ids(h))
        assert rc == 1  # the 300-Mpx image is refused: too_large is a recorded failure
        assert rows[max(o.id for o in h.collection.objects if o.kind == "huge")]["status"] == "too_large"
        # whatever ran out of retries is retried, and only that
        retry = {i for i, r in rows.items() if r["status"] in ("http_error", "bad_content")}
        h.set_faults(fault_rate=0.0, rate_limit=0, block=None)
        before = h.stats()["requests"]
        rc, out, _ = cli(*args)
        rows = assert_consistent(work, expected_ids(h))
    counts = {s: sum(r["status"] == s for r in rows.values()) for s in STATUSES}
    assert counts["ok"] == 26 and counts["no_image"] == 4 and counts["not_public_domain"] == 4
    assert counts["too_large"] == 1 and counts["http_error"] == counts["bad_content"] == 0
    # rerun: 2 listing calls + at most 2 requests per object that had failed
    assert h.stats()["requests"] - before <= 2 + 2 * len(retry)
    assert "already done" in out


def test_failures_recorded_then_rerun_completes(cli, tmp_path, clean_emu):
    work = tmp_path / "w"
    with start_emulator(faults=["5xx", "truncate", "html200"], fault_rate=0.5, seed=3) as h:
        rc, out, _ = cli("fetch", "--work", work, "--api", h.api_root, "--departments", "11",
                         "--retries", "0", *FAST)
        rows = assert_consistent(work, [])
        failed = [r for r in rows.values() if r["status"] in ("http_error", "bad_content")]
        assert rc == 1 and failed and all(r["reason"] for r in failed)
        h.set_faults(fault_rate=0.0)
        rc, out, _ = cli("fetch", "--work", work, "--api", h.api_root, "--departments", "11", *FAST)
        rows = assert_consistent(work, [])
    assert rc == 0 and {r["status"] for r in rows.values()} <= {"ok", "no_image", "not_public_domain"}


def test_sigkill_midway_then_rerun_is_complete_and_consistent(cli, tmp_path):
    work = tmp_path / "w"
    with start_emulator(faults=["slow", "5xx"], fault_rate=0.2, slow_delay=0.3) as h:
        cmd = [sys.executable, "-m", "metfaces_build", "fetch", "--work", str(work), "--api", h.api_root,
               "--departments", ALL_DEPTS, "--rate", "6", "--workers", "3", "--quiet",
               "--backoff-base", "0.01", "--backoff-max", "0.05"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for _ in read_jsonl(work / "objects.jsonl")) >= 6:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = journal(work)
        assert 6 <= len(partial) < len(expected_ids(h)), "the kill should land midway"
        rc, _, err = cli("fetch", "--work", work, "--api", h.api_root, "--departments", ALL_DEPTS, *FAST)
        assert "Traceback" not in err
        rows = assert_consistent(work, expected_ids(h))
    assert sum(r["status"] == "ok" for r in rows.values()) == 26
    assert not [p for p in work.rglob(".tmp-*")]


def test_ids_dedup_limit_and_small_images(cli, tmp_path, clean_emu):
    work = tmp_path / "w"
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# two repeats and a comment\n436008\n436001 , 436015\n436008\n")
    rc, out, _ = cli("fetch", "--work", work, "--api", clean_emu.api_root, "--ids", "436001,436001",
                     "--ids-file", ids_file, "--limit", "2", "--image", "small", *FAST)
    rows = assert_consistent(work, [436001, 436008])
    assert rc == 0 and set(rows) == {436001, 436008}
    assert all(max(r["width"], r["height"]) <= 800 for r in rows.values())


def test_search_null_and_unknown_id(cli, tmp_path, clean_emu):
    work = tmp_path / "w"
    rc, out, _ = cli("fetch", "--work", work, "--api", clean_emu.api_root, "--search", "zzz-nothing", *FAST)
    assert rc == 0 and "nothing to do" in out
    rc, out, _ = cli("fetch", "--work", work, "--api", clean_emu.api_root, "--ids", "1", *FAST)
    assert rc == 1 and journal(work)[1]["status"] == "not_found"
    rc, out, _ = cli("fetch", "--work", work, "--api", clean_emu.api_root, "--search", "portrait",
                     "--departments", "european paintings", "--has-images", "--date-begin", "1400",
                     "--date-end", "1900", *FAST)
    assert rc == 0 and all(r["department"] == "European Paintings" for i, r in journal(work).items() if i != 1)


def write_catalog_of(h, path) -> dict:
    """A MetObjects.csv describing the emulator's objects (hostile titles), plus rows of
    objects the API does not have; returns {id: row}."""
    import csv
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from make_catalog import HEADER
    rows = {}
    for rec in h.records().values():
        rows[rec["objectID"]] = {"Object ID": str(rec["objectID"]), "Department": rec["department"],
                                 "Is Public Domain": str(rec["isPublicDomain"]),
                                 "Classification": rec["classification"], "Object Name": rec["objectName"],
                                 "Artist Display Name": rec["artistDisplayName"],
                                 "Title": rec["title"] + ', "a study",\nverso',
                                 "Object Begin Date": str(rec["objectBeginDate"]),
                                 "Object End Date": str(rec["objectEndDate"])}
    rows[1] = {"Object ID": "1", "Department": "European Paintings", "Is Public Domain": "False",
               "Classification": "Paintings", "Artist Display Name": "X"}
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for r in rows.values():
            w.writerow([r.get(c, "") for c in HEADER])
    return rows


def test_from_csv_requests_only_the_selected_objects(cli, tmp_path, clean_emu):
    csv_path = tmp_path / "MetObjects.csv"
    write_catalog_of(clean_emu, csv_path)
    want = {o.id for o in clean_emu.collection.objects if o.is_public_domain
            and o.classification == "Paintings" and o.department_id in (11, 15) and o.artist}
    with_image = {o.id for o in clean_emu.collection.objects if o.id in want and o.image_file}
    assert 0 < len(with_image) < len(want) < len(clean_emu.collection.objects) / 2
    work = tmp_path / "w"
    before = clean_emu.stats()["requests"]
    rc, out, _ = cli("fetch", "--work", work, "--api", clean_emu.api_root, "--from-csv", csv_path,
                     "--public-domain", "--classification", "paintings", "--departments",
                     "European Paintings,15", "--has-artist", *FAST)
    rows = assert_consistent(work, want)
    assert rc == 0 and set(rows) == want
    # one record per selected object and one image per object with one: no listing at all
    assert clean_emu.stats()["requests"] - before == len(want) + len(with_image)


def test_dry_run_requests_no_record_or_image(cli, tmp_path, clean_emu):
    csv_path = tmp_path / "MetObjects.csv"
    write_catalog_of(clean_emu, csv_path)
    work = tmp_path / "w"
    api = ["--work", work, "--api", clean_emu.api_root]
    assert cli("fetch", *api, "--ids", "436001,1", *FAST)[0] == 1  # 1 is not_found (settled)
    journal_before = (work / "objects.jsonl").read_bytes()
    before = clean_emu.stats()["requests"]
    rc, out, _ = cli("fetch", *api, "--from-csv", csv_path, "--departments", "11", "--rate", "2",
                     "--dry-run", "--quiet")
    n11 = sum(o.department_id == 11 for o in clean_emu.collection.objects) + 1  # + the catalogue-only id 1
    assert rc == 0 and clean_emu.stats()["requests"] == before
    assert f"dry run: {n11} objects selected, {n11 - 2} would be requested" in out
    lines = {" ".join(ln.split()[:-2]): ln.split()[-2:] for ln in out.splitlines()[1:-1]}
    assert lines["European Paintings"] == [str(n11), str(n11 - 2)]
    assert lines["ok"] == ["1", "0"] and lines["not_found"] == ["1", "0"]
    assert lines["new"] == [str(n11 - 2)] * 2
    secs = (n11 - 2) / 2
    # the first fetch learned 200/s for this host; --rate 2 is the ceiling now
    assert f"estimated time at 2 req/s (learned; at most 2/s): {secs:.0f} s to {2 * secs:.0f} s" in out
    assert (work / "objects.jsonl").read_bytes() == journal_before
    # a department source lists (departments + one listing per department), nothing more
    fresh = tmp_path / "fresh"
    rc, out, _ = cli("fetch", "--work", fresh, "--api", clean_emu.api_root, "--departments", "11,9",
                     "--dry-run", "--quiet")
    assert rc == 0 and clean_emu.stats()["requests"] == before + 3 and not fresh.exists()
    assert "Drawings and Prints" in out and "European Paintings" in out
    rc, out, _ = cli("run", "--work", fresh, "--api", clean_emu.api_root, "--departments", "11",
                     "--dry-run", "--quiet")
    assert rc == 0 and "dry run:" in out and not fresh.exists()


def _face(obj_id, url, path, md5="", idx=0):
    return {"obj_id": str(obj_id), "meta_url": "", "source_url": url, "source_path": path,
            "source_md5": md5, "image_path": "", "image_md5": "", "title": "", "artist_display_name": "",
            "face_spec": {"rect": [0, 0, 10, 10], "landmarks": [[1, 1]] * 68, "shrink": 1}, "face_idx": idx}


def test_from_json_layout_changed_traversal_and_hosts(cli, tmp_path, clean_emu):
    work = tmp_path / "w"
    recs = clean_emu.records()
    small = {i: r["primaryImageSmall"] for i, r in recs.items() if r["primaryImageSmall"]}
    a, b, c = sorted(small)[:3]
    faces = [_face(a, small[a], f"unprocessed/image-{a}.png", "0" * 32),
             _face(a, small[a], f"unprocessed/image-{a}.png", "0" * 32, idx=1),
             _face(b, small[b], f"unprocessed/image-{b}.png"),
             _face(c, small[c], "../escape.png"),
             _face(777, "https://evil.example/x.jpg", "unprocessed/image-777.png")]
    mf = tmp_path / "metfaces.json"
    mf.write_text(json.dumps(faces))
    args = ["fetch", "--work", work, "--api", clean_emu.api_root, "--from-json", mf, *FAST]
    rc, out, _ = cli(*args)
    rows = journal(work)
    assert rc == 1
    assert rows[a]["status"] == "changed" and "dimensions" in rows[a]["reason"]
    assert rows[b]["status"] == "ok"
    assert rows[c]["status"] == "refused" and ".." in rows[c]["reason"]
    assert rows[777]["status"] == "refused" and "evil.example" in rows[777]["reason"]
    assert not (tmp_path / "escape.png").exists()
    png = work / f"unprocessed/image-{a}.png"
    with open_image(png) as im:
        assert im.format == "PNG" and im.size == (rows[a]["width"], rows[a]["height"])
    # with the right md5 it is no longer `changed`
    faces[0]["source_md5"] = faces[1]["source_md5"] = rows[a]["png_md5"]
    mf.write_text(json.dumps(faces))
    rc, out, _ = cli(*args[:-len(FAST)], "--force", *FAST)
    assert journal(work)[a]["status"] == "ok"


@pytest.mark.parametrize("argv,msg", [
    ([], "say what to fetch"),
    (["--ids", "12,abc"], "not an object id"),
    (["--ids-file", "/nonexistent/ids.txt"], "not found"),
    (["--departments", "Armour"], "known:"),
    (["--since", "yesterday"], "YYYY-MM-DD"),
    (["--search", "x", "--date-begin", "1700"], "go together"),
    (["--ids", "1", "--api", "ftp://example.org"], "http(s)"),
    (["--from-json", "/nonexistent/metfaces.json"], "not found"),
    (["--from-csv", "/nonexistent/MetObjects.csv"], "not found"),
    (["--from-csv", __file__], "no 'Object ID' column"),
    (["--from-csv", __file__, "--search", "x"], "cannot be combined"),
    (["--ids", "1", "--public-domain", "--classification", "Paintings"], "add --from-csv"),
    (["--from-csv", __file__, "--departments", "Armour"], "known:"),
])
def test_usage_errors_exit_2_without_traceback(cli, tmp_path, clean_emu, argv, msg):
    api = [] if "--api" in argv else ["--api", clean_emu.api_root]
    rc, out, err = cli("fetch", "--work", tmp_path / "w", *api, *argv)
    assert rc == 2 and msg in err and "Traceback" not in err


def test_help_reads_as_a_manual(cli):
    rc, out, _ = cli("fetch", "--help")
    assert rc == 0 and "examples:" in out and "--from-json" in out and "objects.jsonl" in out


def test_journal_last_line_wins_and_compaction(tmp_path):
    p = tmp_path / "objects.jsonl"
    p.write_text('{"id": 5, "status": "http_error"}\n{"id": 3, "status": "ok"}\n'
                 '{"id": 5, "status": "ok", "path": "originals/5.jpg"}\n{"id": 9, "sta')  # killed mid-line
    idx = JournalIndex(p)
    assert idx.statuses([5, 3, 9, 4]) == ["ok", "ok", None, None]
    assert compact_journal(p) == 2
    assert [json.loads(line) for line in p.read_text().splitlines()] == [
        {"id": 3, "status": "ok"}, {"id": 5, "status": "ok", "path": "originals/5.jpg"}]


def test_dedupe_keeps_first_seen_order_on_a_big_listing():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 400_000, 500_000)
    t0 = time.monotonic()
    out = dedupe_ids(ids)
    assert time.monotonic() - t0 < 2
    assert len(out) == len(set(ids.tolist()))
    _, first = np.unique(ids, return_index=True)
    assert out.tolist() == ids[np.sort(first)].tolist()
    assert dedupe_ids([3, 1, 3, 2, 1]).tolist() == [3, 1, 2]


def test_long_outage_ends_the_run_cleanly_and_resumably(cli, tmp_path):
    work = tmp_path / "w"
    with start_emulator() as h:
        ids = ",".join(str(o.id) for o in h.collection.objects[:12])
        h.set_faults(faults=("5xx",), fault_rate=1.0)
        t0 = time.monotonic()
        rc, out, err = cli("fetch", "--work", work, "--api", h.api_root, "--ids", ids, "--max-outage", "0.3",
                           "--retries", "50", *FAST)
        assert rc == 1 and "stopped early" in err and time.monotonic() - t0 < 10
        assert len(journal(work)) < 12  # the rest was never attempted, so a rerun does it
        h.set_faults(fault_rate=0.0)
        rc, out, _ = cli("fetch", "--work", work, "--api", h.api_root, "--ids", ids, *FAST)
        rows = assert_consistent(work, [int(i) for i in ids.split(",")])
    assert rc == 0 and all(r["status"] in ("ok", "no_image") for r in rows.values())
