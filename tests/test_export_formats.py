"""export --format webdataset | hf | folder, read back with the real `webdataset` and
`datasets` libraries as a trainer would: exactly the kept faces, crop bytes unchanged,
their provenance, stable keys and bytes, atomic outputs.

One work directory (made by the real align stage, as in test_export) serves the module.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile

import pytest

from test_export import make_work

ORDER = [("1", 0), ("1", 1), ("2", 0), ("3", 0), ("4", 0), ("5", 0)]
CLASSES = ["(unknown)", "Drawings and Prints", "European Paintings", "Robert Lehman Collection"]
LABELS = [2, 2, 1, 2, 0, 3]  # the StyleGAN export's labels for ORDER (test_export)


def _cli(*argv):
    """The CLI in-process, without capsys (module-scoped fixtures): (exit code, stdout)."""
    import contextlib
    import io

    from metfaces_build.app.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([str(a) for a in argv])
    return rc, buf.getvalue(), ""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """6 faces of 5 objects (object 6 failed in align); Met records for objects 1 and 2
    (one with a lone surrogate in its title); a filter summary."""
    work = make_work(tmp_path_factory.mktemp("fmt"), _cli)
    (work / "api").mkdir()
    (work / "api" / "1.json").write_text(json.dumps({
        "objectID": 1, "title": "Lady \ud800 in White", "artistDisplayName": "A. Painter",
        "objectDate": "ca. 1664", "isPublicDomain": True, "creditLine": "Gift of X, 1900",
        "objectURL": "https://www.metmuseum.org/art/collection/search/1"}))
    (work / "api" / "2.json").write_text(json.dumps({
        "objectID": 2, "title": "Study", "isPublicDomain": True, "objectDate": "1800"}))
    (work / "filter_summary.json").write_text(json.dumps({
        "faces": 9, "kept": 7, "rejected": 2, "reasons": {"resolution": 2},
        "config": {"min_size": 1024.0, "max_yaw": 0.35}}))
    return work


@pytest.fixture(scope="module")
def manifest(work):
    return {(e["record"]["obj_id"], e["record"]["face_idx"]): e
            for e in json.loads((work / "images" / "aligned.json").read_text())
            if e["status"] == "ok"}


@pytest.fixture(scope="module")
def hf_env(tmp_path_factory):
    """`datasets` caching into a temporary folder, offline (set before it is imported)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    old = {k: os.environ.get(k) for k in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE")}
    os.environ.update(HF_HOME=str(cache), HF_DATASETS_CACHE=str(cache / "datasets"),
                      HF_HUB_OFFLINE="1")
    datasets = pytest.importorskip("datasets")
    yield datasets
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def keys(order=ORDER):
    return [f"{o}-{i:02d}" for o, i in order]


# ---- webdataset --------------------------------------------------------------------------

def test_webdataset_yields_every_kept_face_with_provenance(work, manifest, tmp_path):
    wds = pytest.importorskip("webdataset")
    out = tmp_path / "shards"
    rc, stdout, _ = _cli("export", "--work", work, "--format", "webdataset", "--out", out,
                         "--shard-size", 4, "--quiet")
    assert rc == 0
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert shards == ["metfaces-000000.tar", "metfaces-000001.tar"]
    pattern = str(out / "metfaces-{000000..000001}.tar")
    assert f'webdataset.WebDataset("{pattern}")' in stdout
    raw = list(wds.WebDataset(pattern, shardshuffle=False))
    assert [s["__key__"] for s in raw] == keys()
    for s, key in zip(raw, ORDER):  # the crop's bytes, unchanged
        assert md5(s["png"]) == manifest[key]["file_md5"]
    decoded = list(wds.WebDataset(pattern, shardshuffle=False).decode("pil"))
    assert [s["png"].size for s in decoded] == [(64, 64)] * 6
    assert [s["cls"] for s in decoded] == LABELS
    meta = [s["json"] for s in decoded]
    assert [(m["obj_id"], m["face_idx"]) for m in meta] == ORDER
    first = meta[0]
    assert first["title"] == "Lady \ufffd in White" and first["artist"] == "A. Painter"
    assert first["date"] == "ca. 1664" and first["credit_line"] == "Gift of X, 1900"
    assert first["object_url"].endswith("/search/1") and first["license"] == "CC0-1.0"
    assert first["department"] == "European Paintings" and first["label"] == 2
    assert first["face_spec"]["rect"] == [50, 50, 140, 140] and first["face_spec"]["shrink"] == 1
    assert len(first["face_spec"]["landmarks"]) == 68
    assert first["crop"] == {"file_md5": manifest[ORDER[0]]["file_md5"],
                             "pixel_md5": manifest[ORDER[0]]["pixel_md5"]}
    assert first["source"]["url"] == "https://images.example/1.jpg"
    assert first["versions"]["metfaces-build"] and first["versions"]["Pillow"]
    # no Met record, no objects.jsonl licence: the licence is not claimed
    assert meta[4]["license"] == "" and meta[4]["department"] is None and meta[4]["label"] == 0


def test_webdataset_bytes_are_reproducible_and_bounded(work, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli("export", "--work", work, "--format", "webdataset", "--out", a, "--quiet")[0] == 0
    os.utime(work / "images" / "1-00.png", (1, 1))  # file times must not leak in
    assert _cli("export", "--work", work, "--format", "webdataset", "--out", b, "--quiet")[0] == 0
    assert (a / "metfaces-000000.tar").read_bytes() == (b / "metfaces-000000.tar").read_bytes()
    with tarfile.open(a / "metfaces-000000.tar") as tf:
        infos = tf.getmembers()
    assert [i.name for i in infos[:3]] == ["1-00.png", "1-00.json", "1-00.cls"]
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname, i.mode) for i in infos} == \
        {(0, 0, 0, "", "", 0o644)}
    # a byte bound: every shard within it, every sample in exactly one shard, in order
    one = max(p.stat().st_size for p in (work / "images").glob("*.png"))
    bound = 2 * one + 8 * 1024 + 10240
    c = tmp_path / "c"
    assert _cli("export", "--work", work, "--format", "webdataset", "--out", c,
                "--shard-size", f"{bound}B", "--no-labels", "--quiet")[0] == 0
    names = []
    for shard in sorted(c.glob("*.tar")):
        assert shard.stat().st_size <= bound
        with tarfile.open(shard) as tf:
            names += tf.getnames()
    assert len(list(c.glob("*.tar"))) >= 2
    assert names == [f"{k}.{ext}" for k in keys() for ext in ("png", "json")]  # no .cls
    # a bound below one sample: each sample in a shard of its own
    d = tmp_path / "d"
    assert _cli("export", "--work", work, "--format", "webdataset", "--out", d,
                "--shard-size", "1kB", "--quiet")[0] == 0
    assert len(list(d.glob("*.tar"))) == 6


@pytest.mark.parametrize("text, expect", [
    ("1000", (1000, None)), ("500MB", (None, 500 * 10 ** 6)), ("1.5GiB", (None, 3 * 2 ** 29)),
    ("64 kB", (None, 64000)), ("2048b", (None, 2048))])
def test_shard_size_parses(text, expect):
    from metfaces_build.stages.export_formats import parse_shard_size
    assert parse_shard_size(text) == expect


# ---- Hugging Face ------------------------------------------------------------------------

def test_hf_folder_loads_with_no_arguments(work, manifest, tmp_path, hf_env):
    datasets = hf_env
    out = tmp_path / "metfaces-hf"
    rc, stdout, _ = _cli("export", "--work", work, "--format", "hf", "--out", out, "--quiet")
    assert rc == 0 and f'datasets.load_dataset("{out}", split="train")' in stdout
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.num_rows == 6
    assert ds.features["department"].names == CLASSES
    assert list(zip(ds["obj_id"], ds["face_idx"])) == ORDER
    assert ds["department"] == LABELS
    row = ds[0]
    assert row["image"].size == (64, 64) and row["image"].mode == "RGB"
    assert row["title"] == "Lady \ufffd in White" and row["license"] == "CC0-1.0"
    assert row["artist"] == "A. Painter" and row["date"] == "ca. 1664"
    assert row["object_url"].endswith("/search/1") and row["credit_line"] == "Gift of X, 1900"
    assert row["face_spec"]["rect"] == [50, 50, 140, 140] and len(row["face_spec"]["landmarks"]) == 68
    assert row["file_md5"] == manifest[ORDER[0]]["file_md5"]
    for (o, i) in ORDER:  # the crop files are the aligner's, byte for byte
        assert md5((out / "data" / "train" / f"{o}-{i:02d}.png").read_bytes()) == \
            manifest[(o, i)]["file_md5"]
    # the dataset card: the Hub's YAML header, licence, recipe, filter figures, citation
    import yaml
    text = (out / "README.md").read_text(encoding="utf-8")
    head = yaml.safe_load(text.split("---\n")[1])
    assert head["license"] == "cc0-1.0"
    assert head["configs"][0]["data_files"] == [{"split": "train", "path": "data/train/**"}]
    assert "unconditional-image-generation" in head["task_categories"]
    assert head["dataset_info"]["splits"][0]["num_examples"] == 6
    for words in ("CC0 1.0", "Open Access", "Apache-2.0", f"metfaces-build {__import__('metfaces_build').__version__}",
                  "9 faces detected, 7 kept, 2 rejected (resolution: 2)", "max_yaw 0.35",
                  "Align: size 64", "Training Generative Adversarial Networks with Limited Data",
                  "NeurIPS", "Karras", "3 of 6 faces come from objects", "check them before"):
        assert words in text, words


def test_hf_without_labels_and_folder_format(work, manifest, tmp_path, hf_env):
    out = tmp_path / "hf"
    assert _cli("export", "--work", work, "--format", "hf", "--out", out, "--no-labels",
                "--quiet")[0] == 0
    ds = hf_env.load_dataset(str(out), split="train")
    assert ds.features["department"].dtype == "string"
    assert ds["department"] == ["European Paintings", "European Paintings", "Drawings and Prints",
                                "European Paintings", None, "Robert Lehman Collection"]
    folder = tmp_path / "plain"
    assert _cli("export", "--work", work, "--format", "folder", "--out", folder, "--quiet")[0] == 0
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == [f"{k}.png" for k in keys()]
    assert [r["label"] for r in rows] == LABELS
    for r in rows:
        assert md5((folder / r["file_name"]).read_bytes()) == r["crop"]["file_md5"] == \
            manifest[(r["obj_id"], r["face_idx"])]["file_md5"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{k}.png" for k in keys()] + ["metadata.jsonl", "metfaces-export.json"])


# ---- the same faces as the StyleGAN zip; atomic; usage errors -----------------------------

def test_every_format_refuses_or_skips_the_same_bad_crops(tmp_path):
    from PIL import Image
    work = make_work(tmp_path / "w", _cli)
    crop = work / "images" / "3-00.png"
    Image.open(crop).transpose(Image.FLIP_LEFT_RIGHT).save(crop)
    for fmt in ("stylegan", "webdataset", "hf", "folder"):
        out = tmp_path / f"o-{fmt}"
        rc, stdout, _ = _cli("export", "--work", work, "--format", fmt, "--out", out, "--quiet")
        assert rc == 1 and "nothing written" in stdout and not out.exists(), fmt
        rc, stdout, _ = _cli("export", "--work", work, "--format", fmt, "--out", out,
                             "--skip-bad", "--quiet")
        assert rc == 1 and "1 skipped" in stdout
        side = json.loads((out / "metfaces-export.json").read_text())
        assert [(i["obj_id"], i["face_idx"]) for i in side["images"]] == \
            [k for k in ORDER if k != ("3", 0)]
        assert [s["crop"] for s in side["skipped"]] == ["3-00.png"]


def test_text_that_is_not_unicode_never_stops_an_export(tmp_path):
    """A lone surrogate in a face record's title (an old manifest) and an infinite score:
    every format exports, and its JSON stays strict."""
    work = make_work(tmp_path / "w", _cli)
    m = json.loads((work / "images" / "aligned.json").read_text())
    m[0]["record"]["title"] = "bad \ud800 title"
    m[0]["record"]["score"] = float("inf")
    (work / "images" / "aligned.json").write_text(json.dumps(m))
    for fmt in ("stylegan", "webdataset", "hf", "folder"):
        out = tmp_path / fmt
        assert _cli("export", "--work", work, "--format", fmt, "--out", out, "--quiet")[0] == 0
        side = json.loads((out / "metfaces-export.json").read_bytes().decode("utf-8"))
        # the manifest is read through the one JSON reader, which replaces a lone surrogate
        assert side["images"][0]["title"] == "bad \ufffd title"
    rows = [json.loads(line) for line in (tmp_path / "folder" / "metadata.jsonl").open()]
    assert rows[0]["title"] == "bad \ufffd title"
    meta = (tmp_path / "hf" / "data" / "train" / "metadata.jsonl").read_bytes()
    assert "bad \ufffd title".encode() in meta


def test_interrupted_export_leaves_the_earlier_one_whole(work, tmp_path, monkeypatch):
    from metfaces_build.stages import export_webdataset
    out = tmp_path / "shards"
    assert _cli("export", "--work", work, "--format", "webdataset", "--out", out,
                "--shard-size", 2, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    real_add = export_webdataset.ShardWriter.add

    def dying_add(self, files):
        calls.append(1)
        if len(calls) == 4:  # mid-way through the second shard
            raise KeyboardInterrupt
        real_add(self, files)
    monkeypatch.setattr(export_webdataset.ShardWriter, "add", dying_add)
    import contextlib
    import io
    with contextlib.redirect_stderr(io.StringIO()):  # the CLI turns ^C into a message
        rc, _, _ = _cli("export", "--work", work, "--format", "webdataset", "--out", out,
                        "--no-labels", "--shard-size", 2, "--quiet")
    assert rc != 0 and len(calls) == 4
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # no temp folder left


def test_sigkill_mid_export_leaves_no_shard_under_the_final_name(work, tmp_path):
    """SIGKILL while shards are being written: nothing appears at --out; a rerun writes the
    same shards as an export that was never interrupted."""
    import signal
    import subprocess
    import sys
    import time
    big = tmp_path / "big"
    (big / "images").mkdir(parents=True)
    entries = json.loads((work / "images" / "aligned.json").read_text())
    ok = [e for e in entries if e["status"] == "ok"]
    manifest = []
    for n in range(300):  # 300 faces: the 6 crops, hard-linked under other objects' names
        e = json.loads(json.dumps(ok[n % len(ok)]))
        e["record"].update(obj_id=str(1000 + n), face_idx=0)
        e["output"] = f"{1000 + n}-00.png"
        os.link(work / "images" / ok[n % len(ok)]["output"], big / "images" / e["output"])
        manifest.append(e)
    (big / "images" / "aligned.json").write_text(json.dumps(manifest))
    out = tmp_path / "shards"
    argv = [sys.executable, "-m", "metfaces_build", "export", "--work", big, "--format",
            "webdataset", "--shard-size", 10, "--out", out, "--quiet"]
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if len(list(tmp_path.glob(".tmp-dir-*/metfaces-*.tar"))) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the export ended before it could be killed"
    assert not out.exists()
    assert [p.name for p in tmp_path.glob("**/metfaces-*.tar") if p.parent.name != "shards"
            and not p.parent.name.startswith(".tmp-dir-")] == []
    assert _cli("export", "--work", big, "--format", "webdataset", "--shard-size", 10,
                "--out", out, "--quiet")[0] == 0
    clean = tmp_path / "clean"
    assert _cli("export", "--work", big, "--format", "webdataset", "--shard-size", 10,
                "--out", clean, "--quiet")[0] == 0
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert len(shards) == 30
    assert all((out / n).read_bytes() == (clean / n).read_bytes() for n in shards)


@pytest.mark.parametrize("argv, msg", [
    (["--format", "hf", "--layout", "zip"], "--layout applies to --format stylegan"),
    (["--format", "hf", "--shard-size", "10"], "--shard-size applies to --format webdataset"),
    (["--shard-size", "10"], "--shard-size applies to --format webdataset"),
    (["--format", "webdataset", "--shard-size", "5 parsecs"], "give samples"),
    (["--format", "webdataset", "--shard-size", "0"], "at least one"),
    (["--format", "tfrecord"], "invalid choice"),
])
def test_usage_errors(work, tmp_path, argv, msg):
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc, _, _ = _cli("export", "--work", work, "--out", tmp_path / "o", *argv)
    assert rc == 2 and msg in err.getvalue() and "Traceback" not in err.getvalue()
    assert not (tmp_path / "o").exists()


def test_python_api_takes_the_same_options(work, tmp_path):
    import metfaces_build as mb
    s = mb.export(work, tmp_path / "api-shards", format="webdataset", shard_size="3",
                  quiet=True)
    assert s.exit_code == 0 and s.images == 6 and s.layout == "webdataset"
    assert sorted(p.name for p in (tmp_path / "api-shards").glob("*.tar")) == \
        ["metfaces-000000.tar", "metfaces-000001.tar"]
