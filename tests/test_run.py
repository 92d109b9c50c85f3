"""`run` and `demo` end to end against the emulator, and the SIGKILL reliability test:
a run killed at several stages and rerun ends with the same files as an uninterrupted one."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metfaces_build.met.emulator import start_emulator
from metfaces_build.infra.files import TMP_PREFIX, read_jsonl

from conftest import run_cli_subprocess

ALL_DEPTS = "11,9,15,1,19"
# loopback: fast retries, so faults cost milliseconds
FAST = ["--retries", "8", "--timeout", "10", "--backoff-base", "0.02", "--backoff-max", "0.2",
        "--cooldown", "0.1", "--workers", "2", "--quiet"]


@pytest.fixture(scope="module")
def emu():
    with start_emulator(faults="429,5xx,html200,reset", fault_rate=0.05, seed=3,
                        retry_after=0.05) as h:
        yield h


def run_argv(work: Path, emu, *extra, source=("--departments", ALL_DEPTS)) -> list:
    return ["run", "--work", work, "--api", emu.api_root, *source, *FAST, *extra]


@pytest.fixture(scope="module")
def reference(emu, tmp_path_factory):
    """One uninterrupted run (a separate process, as the killed runs are)."""
    work = tmp_path_factory.mktemp("reference") / "work"
    t0 = time.monotonic()
    proc = run_cli_subprocess(*run_argv(work, emu, "--rate", "100"))
    return work, proc, time.monotonic() - t0


def outputs(work: Path) -> dict:
    """Everything a run promises to reproduce. Volatile: objects.jsonl `attempts` (faults
    differ between runs) and filter_summary.json's absolute `source_images`."""
    def text(name):
        return (work / name).read_text(encoding="utf-8")

    from PIL import Image
    crops = {}
    for p in sorted((work / "images").glob("*.png")):
        with Image.open(p) as im:
            crops[p.name] = (im.size, im.mode, hashlib.md5(im.tobytes()).hexdigest())
    summary = json.loads(text("filter_summary.json"))
    summary.pop("source_images")
    return {
        "objects": {r["id"]: (r["status"], r.get("sha256")) for r in read_jsonl(work / "objects.jsonl")},
        "originals": sorted(p.name for p in (work / "originals").iterdir()),
        "faces.json": json.loads(text("faces.json")),
        "filtered.json": json.loads(text("filtered.json")),
        "rejected.jsonl": text("rejected.jsonl"),
        "filter_summary.json": summary,
        "aligned.json": json.loads(text("images/aligned.json")),
        "crops": crops,
    }


def leftovers(work: Path) -> list:
    """Temp files or journals a finished run should not leave."""
    return [str(p) for p in work.rglob("*")
            if p.name.startswith(TMP_PREFIX) or p.name == ".aligned.journal.jsonl"]


# ---- run ------------------------------------------------------------------------------------

def test_run_end_to_end_then_rerun_does_nothing_new(reference, emu, cli):
    work, proc, seconds = reference
    assert "Traceback" not in proc.stderr
    # the sample collection's 300-Mpx image is refused by fetch: a recorded item failure
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "run summary" in out
    for stage in ("fetch", "detect", "filter", "align", "report"):
        assert f"\n  {stage} " in out
    assert "1 too_large" in out and "some items failed in fetch" in out
    assert (work / "report" / "report.md").exists() and (work / "report" / "report.html").exists()
    got = outputs(work)
    manifest = got["aligned.json"]
    assert manifest and all(e["status"] == "ok" for e in manifest)
    assert sorted(got["crops"]) == sorted(e["output"] for e in manifest)
    assert len(got["filtered.json"]) == len(manifest)
    assert len(got["faces.json"]) == len(got["filtered.json"]) + len(got["rejected.jsonl"].splitlines())
    assert leftovers(work) == []

    rc, out2, err2 = cli(*run_argv(work, emu))
    assert rc == 1, err2
    assert "already done" in out2 and "reused" in out2 and "up to date" in out2
    assert outputs(work) == got


def test_run_carries_overrides_to_align_and_export(reference, emu, cli, tmp_path):
    """A person's decisions (--overrides) reach align and export, and stay for later runs."""
    import shutil
    work = tmp_path / "work"
    shutil.copytree(reference[0], work)
    assert (work / "report" / "review.html").is_file()
    kept = json.loads((work / "filtered.json").read_text())
    rejected = [r for r in read_jsonl(work / "rejected.jsonl") if r["reasons"] == ["resolution"]]
    drop = f"{kept[0]['obj_id']}-{kept[0]['face_idx']:02d}"
    add = f"{rejected[0]['obj_id']}-{rejected[0]['face_idx']:02d}"
    ov = tmp_path / "overrides.json"
    ov.write_text(json.dumps({"faces": {drop: "reject", add: "keep"}}))
    rc, out, err = cli(*run_argv(work, emu, "--overrides", ov))
    assert rc == 1 and "some items failed in fetch" in out, err  # only the too_large image
    assert "review page:" in out
    manifest = json.loads((work / "images" / "aligned.json").read_text())
    aligned = {Path(e["output"]).stem for e in manifest if e["status"] == "ok"}
    live = [e for e in manifest if e["status"] not in ("superseded", "withdrawn")]
    assert add in aligned and drop not in aligned and len(live) == len(kept)
    # the dropped face's crop is deleted and the manifest says so (not a failure)
    gone = [e for e in manifest if Path(e["record"]["obj_id"] + f"-{e['record']['face_idx']:02d}").name == drop]
    assert [e["status"] for e in gone] == ["superseded"] and not (work / "images" / f"{drop}.png").exists()
    rc, _, err = cli("export", "--work", work, "--out", tmp_path / "set.zip", "--quiet")
    assert rc == 0, err
    import zipfile
    with zipfile.ZipFile(tmp_path / "set.zip") as z:
        side = json.loads(z.read("metfaces-export.json"))
    exported = {f"{i['obj_id']}-{i['face_idx']:02d}" for i in side["images"]}
    assert exported == aligned
    # a later run without the flag keeps the decisions
    rc, out, _ = cli(*run_argv(work, emu))
    assert rc == 1 and "2 decided by a person" in out
    assert add in {Path(e["output"]).stem for e in json.loads((work / "images" / "aligned.json").read_text())}


def test_run_usage_errors_stop_early(cli, tmp_path, emu):
    work = tmp_path / "w"
    rc, out, err = cli("run", "--work", work)
    assert rc == 2 and "say what to fetch" in err and "Traceback" not in err
    assert "run summary" not in out  # nothing ran: no summary to give

    bad = tmp_path / "bad.toml"
    bad.write_text("[filter]\nmin_sise = 512\n")
    rc, out, err = cli(*run_argv(work, emu, "--filter-config", bad))
    assert rc == 2 and "unknown setting 'min_sise'" in err
    assert not work.exists(), "a bad filter config must stop the run before any download"


def test_run_stage_usage_error_stops_the_run(cli, tmp_path, emu):
    """A usage error inside a stage (here align cannot create its output folder) stops the
    run there with a clear message; the stages before it are done and resumable."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "images").write_text("not a folder")
    rc, out, err = cli(*run_argv(work, emu, source=("--ids", "436001,436008")))
    assert rc == 2
    assert "cannot create --output-dir" in err and "stopped at align" in err
    assert "report" not in {p.name for p in work.iterdir()}
    assert (work / "filtered.json").exists()


def test_run_help_shows_its_own_options_and_points_to_the_stages(cli):
    """run's own and most used options in full; every other fetch or detect option by
    name, with the command whose --help has it in full (tests/test_help.py checks that)."""
    rc, out, _ = cli("run", "--help")
    assert rc == 0 and "examples:" in out
    for flag in ("--departments", "--api", "--detector", "--max-side", "--filter-config",
                 "--fetch-workers", "--workers"):
        assert f"\n  {flag} " in out, flag   # in full, with its help
    assert "see `metfaces-build fetch --help`" in out and "--backoff-max" in out
    assert "see `metfaces-build detect --help`" in out and "--cnn-upsample" in out


# ---- SIGKILL reliability ----------------------------------------------------------------------

def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _crops(work: Path) -> int:
    d = work / "images"
    return sum(1 for p in d.iterdir() if p.suffix == ".png" and not p.name.startswith(".")) \
        if d.is_dir() else 0


def run_and_kill(argv: list, kill_when, log: Path, timeout: float = 300) -> None:
    """Start `python -m metfaces_build ARGV` in its own process group and SIGKILL the whole
    group (the run and its worker processes) as soon as `kill_when()` holds."""
    with open(log, "ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "metfaces_build", *map(str, argv)],
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if kill_when():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    pytest.fail(f"the run ended (exit {proc.returncode}) before the kill point:\n{log.read_text()}")


def test_sigkill_at_each_stage_then_rerun_gives_identical_output(reference, emu, tmp_path):
    ref_work, ref_proc, _ = reference
    assert ref_proc.returncode == 1, ref_proc.stdout + ref_proc.stderr
    work, log = tmp_path / "work", tmp_path / "log.txt"
    argv = run_argv(work, emu, "--rate", "40")  # slower fetch: a wider window to kill in

    # 1. during fetch: some objects journaled, not all
    run_and_kill(argv, lambda: _lines(work / "objects.jsonl") >= 8, log)
    assert not (work / "faces.json").exists()
    # 2. during detect (fetch resumes first)
    run_and_kill(argv, lambda: _lines(work / "detect.jsonl") >= 4, log)
    assert not (work / "filtered.json").exists()
    # 3. during align (detect and filter finish first)
    run_and_kill(argv, lambda: _crops(work) >= 2, log)
    assert not (work / "images" / "aligned.json").exists()
    assert not (work / "report").exists()

    final = run_cli_subprocess(*argv)
    assert final.returncode == 1, final.stdout + final.stderr  # the too_large image, as before
    assert "Traceback" not in final.stderr and "Traceback" not in log.read_text()
    assert leftovers(work) == []
    got, want = outputs(work), outputs(ref_work)
    for key in want:
        assert got[key] == want[key], f"{key} differs from the uninterrupted run"
    assert (work / "report" / "report.md").exists()


# ---- demo ------------------------------------------------------------------------------------

def test_demo_end_to_end(cli, tmp_path):
    """The README's first command: exit 0 with the sample collection's deliberate failures
    (no image, not public domain, too large) reported as expected."""
    work = tmp_path / "demo"
    t0 = time.monotonic()
    rc, out, err = cli("demo", "--work", work, "--workers", "2", "--quiet")
    seconds = time.monotonic() - t0
    assert rc == 0, out + err
    assert "unexpected" not in err and "Traceback" not in err
    assert "expected   4 no_image, 4 not_public_domain, 1 too_large" in out
    assert f"report: {work / 'report' / 'report.md'}" in out
    assert f"review page: {work / 'report' / 'review.html'}" in out
    assert out.count("review page:") == 1  # run's own review step is off (no_review)
    truth = json.loads((work / "truth.json").read_text())
    cmp_ = json.loads((work / "compare.json").read_text())
    assert cmp_["matched"] + cmp_["missed"] == len(truth)
    assert cmp_["matched"] >= 0.9 * len(truth) and cmp_["median_nme"] < 0.05
    report = (work / "report" / "report.md").read_text()
    assert "landmark" in report.lower() and "kept" in report.lower()  # compare + filter sections
    assert sorted(p.name for p in (work / "images").glob("*.png"))
    print(f"demo took {seconds:.1f} s")

    # rerun: resumes, same answer
    rc, out2, err2 = cli("demo", "--work", work, "--workers", "2", "--quiet")
    assert rc == 0, out2 + err2
    assert "already done" in out2


def test_demo_reports_real_failures(cli, tmp_path):
    """With every request faulted nothing can be fetched: that is a real error, exit 1."""
    work = tmp_path / "demo"
    rc, out, err = cli("demo", "--work", work, "--fault-rate", "1", "--quiet")
    assert rc == 1, out + err
    assert "unexpected failure" in err and "fetch" in err
