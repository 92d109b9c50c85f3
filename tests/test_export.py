"""export: a zip / folder that StyleGAN2-ADA's and StyleGAN3's ImageFolderDataset read as is,
with department labels, checked crops and reproducible bytes."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DEPTS = {"1": "European Paintings", "2": "Drawings and Prints", "3": "European Paintings",
         "4": None, "5": None}


# ---- StyleGAN's ImageFolderDataset, the lines that read a dataset (training/dataset.py) --

class StyleGANImageFolder:
    """A transcription of ImageFolderDataset's reading path (stylegan2-ada-pytorch and
    stylegan3 share it): name listing, image loading, label parsing, and Dataset's checks."""

    def __init__(self, path):
        self._path = str(path)
        self._zipfile = None
        if os.path.isdir(self._path):
            self._type = "dir"
            self._all_fnames = {os.path.relpath(os.path.join(root, fname), start=self._path)
                                for root, _dirs, files in os.walk(self._path) for fname in files}
        elif self._file_ext(self._path) == ".zip":
            self._type = "zip"
            self._all_fnames = set(self._get_zipfile().namelist())
        else:
            raise IOError("Path must point to a directory or zip")
        Image.init()
        self._image_fnames = sorted(f for f in self._all_fnames
                                    if self._file_ext(f) in Image.EXTENSION)
        if len(self._image_fnames) == 0:
            raise IOError("No image files found in the specified path")
        self.raw_shape = [len(self._image_fnames)] + list(self._load_raw_image(0).shape)
        # Dataset._get_raw_labels
        labels = self._load_raw_labels()
        if labels is None:
            labels = np.zeros([self.raw_shape[0], 0], dtype=np.float32)
        assert isinstance(labels, np.ndarray)
        assert labels.shape[0] == self.raw_shape[0]
        assert labels.dtype in [np.float32, np.int64]
        if labels.dtype == np.int64:
            assert labels.ndim == 1
            assert np.all(labels >= 0)
        self.raw_labels = labels
        # Dataset.resolution / label_shape
        assert len(self.raw_shape) == 4 and self.raw_shape[2] == self.raw_shape[3]
        self.resolution = self.raw_shape[2]
        assert self.resolution == 2 ** int(np.floor(np.log2(self.resolution)))
        self.label_shape = ([int(np.max(labels)) + 1] if labels.dtype == np.int64
                            else list(labels.shape[1:]))

    @staticmethod
    def _file_ext(fname):
        return os.path.splitext(fname)[1].lower()

    def _get_zipfile(self):
        assert self._type == "zip"
        if self._zipfile is None:
            self._zipfile = zipfile.ZipFile(self._path)
        return self._zipfile

    def _open_file(self, fname):
        if self._type == "dir":
            return open(os.path.join(self._path, fname), "rb")
        return self._get_zipfile().open(fname, "r")

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        with self._open_file(fname) as f:
            image = np.array(Image.open(f))
        if image.ndim == 2:
            image = image[:, :, np.newaxis]
        return image.transpose(2, 0, 1)

    def _load_raw_labels(self):
        fname = "dataset.json"
        if fname not in self._all_fnames:
            return None
        with self._open_file(fname) as f:
            labels = json.load(f)["labels"]
        if labels is None:
            return None
        labels = dict(labels)
        labels = [labels[fname.replace("\\", "/")] for fname in self._image_fnames]
        labels = np.array(labels)
        return labels.astype({1: np.int64, 2: np.float32}[labels.ndim])

    def __len__(self):
        return self.raw_shape[0]

    def images(self):
        return [self._load_raw_image(i) for i in range(len(self))]


# ---- a work directory made by the real align stage -------------------------------------

def _record(obj_id, idx, source, dept):
    lm = [[60 + (i % 17) * 4, 60 + (i // 17) * 16] for i in range(68)]
    r = {"obj_id": obj_id, "source_path": source, "face_idx": idx,
         "source_url": f"https://images.example/{obj_id}.jpg",
         "face_spec": {"rect": [50, 50, 140, 140], "landmarks": lm, "shrink": 1}}
    if dept:
        r["department"] = dept
    return r


def make_work(tmp_path: Path, cli, size=64) -> Path:
    """objects.jsonl + originals/ + images/ (align output) for 5 objects, 6 faces."""
    work = tmp_path / "work"
    (work / "originals").mkdir(parents=True)
    recs, objects = [], []
    for oid, dept in DEPTS.items():
        rng = np.random.RandomState(int(oid))
        small = rng.randint(0, 256, size=(16, 16, 3)).astype(np.uint8)
        Image.fromarray(small).resize((240, 240), Image.BILINEAR).save(work / "originals" / f"{oid}.png")
        recs.append(_record(oid, 0, f"originals/{oid}.png", dept))
        # object 5's department is known only from objects.jsonl
        objects.append({"id": int(oid), "status": "ok", "department": "Robert Lehman Collection"
                        if oid == "5" else (dept or "")})
    recs.append(_record("1", 1, "originals/1.png", "European Paintings"))
    recs.append(_record("6", 0, "originals/missing.png", "Arms and Armor"))  # fails in align
    (work / "objects.jsonl").write_text("".join(json.dumps(o) + "\n" for o in objects))
    (work / "filtered.json").write_text(json.dumps(recs))
    rc, _, err = cli("align", "--json", work / "filtered.json", "--source-images", work,
                     "--output-dir", work / "images", "--size", size, "--supersampling", 1,
                     "--workers", 1, "--quiet")
    assert rc == 1, err  # object 6's source is missing
    return work


@pytest.fixture
def work(tmp_path, cli):
    return make_work(tmp_path, cli)


def test_zip_reads_as_stylegan_dataset_with_department_labels(work, tmp_path, cli):
    out = tmp_path / "metfaces.zip"
    rc, stdout, err = cli("export", "--work", work, "--out", out, "--quiet")
    assert rc == 0, err
    ds = StyleGANImageFolder(out)
    assert ds.raw_shape == [6, 3, 64, 64] and ds.resolution == 64
    names = ds._image_fnames
    assert names == [f"00000/img{i:08d}.png" for i in range(6)]
    # classes: departments present, sorted by name; object 4 has none
    side = json.loads(zipfile.ZipFile(out).read("metfaces-export.json"))
    classes = {c["department"]: c["label"] for c in side["labels"]["classes"]}
    assert classes == {"(unknown)": 0, "Drawings and Prints": 1, "European Paintings": 2,
                       "Robert Lehman Collection": 3}
    assert ds.label_shape == [4]
    order = [(im["obj_id"], im["face_idx"]) for im in side["images"]]
    assert order == [("1", 0), ("1", 1), ("2", 0), ("3", 0), ("4", 0), ("5", 0)]
    assert ds.raw_labels.tolist() == [2, 2, 1, 2, 0, 3]
    # every image is the crop's bytes, unchanged: same md5 as the align manifest
    manifest = {e["output"]: e for e in json.loads((work / "images" / "aligned.json").read_text())}
    with zipfile.ZipFile(out) as zf:
        for im in side["images"]:
            import hashlib
            assert hashlib.md5(zf.read(im["file"])).hexdigest() == manifest[im["crop"]]["file_md5"]
            assert im["pixel_md5"] == manifest[im["crop"]]["pixel_md5"]
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert side["count"] == 6 and side["resolution"] == 64 and side["aligned_with"]
    assert "6 images 64x64" in stdout and "1 manifest entries not ok" in stdout
    assert "warning: 1 faces have no department" in stdout


def test_exports_are_byte_identical_and_folder_matches_zip(work, tmp_path, cli):
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    assert cli("export", "--work", work, "--out", a, "--quiet")[0] == 0
    os.utime(work / "images" / "1-00.png", (1, 1))  # file times must not leak in
    assert cli("export", "--work", work, "--out", b, "--quiet")[0] == 0
    assert a.read_bytes() == b.read_bytes()
    # nor do paths: the same work directory elsewhere gives the same zip
    import shutil
    moved = tmp_path / "elsewhere" / "w"
    shutil.copytree(work, moved)
    assert cli("export", "--work", moved, "--out", moved / "c.zip", "--quiet")[0] == 0
    assert (moved / "c.zip").read_bytes() == a.read_bytes()
    shutil.rmtree(tmp_path / "elsewhere")
    folder = tmp_path / "ds"
    assert cli("export", "--work", work, "--out", folder, "--quiet")[0] == 0
    zds, fds = StyleGANImageFolder(a), StyleGANImageFolder(folder)
    assert zds._image_fnames == fds._image_fnames
    assert zds.raw_labels.tolist() == fds.raw_labels.tolist()
    assert all(np.array_equal(x, y) for x, y in zip(zds.images(), fds.images()))
    with zipfile.ZipFile(a) as zf:
        for name in zf.namelist():
            assert (folder / name).read_bytes() == zf.read(name)
    # re-export over an earlier export folder replaces it; no temp dirs left behind
    assert cli("export", "--work", work, "--out", folder, "--quiet", "--no-labels")[0] == 0
    assert StyleGANImageFolder(folder).label_shape == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip", "ds", "work"]


def test_no_labels(work, tmp_path, cli):
    out = tmp_path / "u.zip"
    rc, stdout, _ = cli("export", "--work", work, "--out", out, "--no-labels", "--quiet")
    assert rc == 0 and "no labels" in stdout
    zf = zipfile.ZipFile(out)
    assert json.loads(zf.read("dataset.json")) == {"labels": None}
    ds = StyleGANImageFolder(out)
    assert ds.raw_labels.shape == (6, 0) and ds.label_shape == [0]
    assert json.loads(zf.read("metfaces-export.json"))["labels"] is None


def test_tampered_crop_refuses_then_skip_bad(work, tmp_path, cli):
    crop = work / "images" / "3-00.png"
    Image.open(crop).transpose(Image.FLIP_LEFT_RIGHT).save(crop)
    (work / "images" / "2-00.png").unlink()
    out = tmp_path / "d.zip"
    rc, stdout, err = cli("export", "--work", work, "--out", out, "--quiet")
    assert rc == 1 and not out.exists()
    assert "2 of 6 crops" in stdout and "nothing written" in stdout
    rc, stdout, err = cli("export", "--work", work, "--out", out, "--skip-bad", "--quiet")
    assert rc == 1 and "2 skipped" in stdout
    ds = StyleGANImageFolder(out)
    assert len(ds) == 4
    side = json.loads(zipfile.ZipFile(out).read("metfaces-export.json"))
    skipped = {s["crop"]: s["reason"] for s in side["skipped"]}
    assert skipped["2-00.png"] == "missing" and "differs from the manifest" in skipped["3-00.png"]
    # labels stay contiguous over what was exported (Drawings and Prints is gone)
    assert ds.label_shape == [3]


def test_sizes_stylegan_cannot_train_on(tmp_path, cli):
    work = make_work(tmp_path, cli, size=48)
    rc, _, err = cli("export", "--work", work, "--out", tmp_path / "x.zip")
    assert rc == 2 and "power-of-two" in err and "Traceback" not in err
    work2 = make_work(tmp_path / "b", cli, size=64)
    rc, _, err = cli("export", "--work", work2, "--out", tmp_path / "x.zip", "--resolution", 1024)
    assert rc == 2 and "not the --resolution 1024" in err
    # mixed sizes: one crop replaced (and the manifest updated to match it)
    crop = work2 / "images" / "1-00.png"
    Image.new("RGB", (32, 32)).save(crop)
    m = json.loads((work2 / "images" / "aligned.json").read_text())
    import hashlib
    for e in m:
        if e["output"] == "1-00.png":
            e["file_md5"] = hashlib.md5(crop.read_bytes()).hexdigest()
    (work2 / "images" / "aligned.json").write_text(json.dumps(m))
    rc, _, err = cli("export", "--work", work2, "--out", tmp_path / "x.zip")
    assert rc == 2 and "differ in size" in err and "64x64 RGB: 5" in err
    assert not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize("setup, argv, msg", [
    (lambda t: None, ["--work", "{t}/nope"], "align output folder not found"),
    (lambda t: (t / "w" / "images").mkdir(parents=True), ["--work", "{t}/w"], "align manifest not found"),
    (lambda t: (t / "w" / "images").mkdir(parents=True) or
     (t / "w" / "images" / "aligned.json").write_text("[]"), ["--work", "{t}/w"], "no ok crops"),
    (lambda t: (t / "w" / "images").mkdir(parents=True) or
     (t / "w" / "images" / "aligned.json").write_text("{"), ["--work", "{t}/w"], "not valid JSON"),
    (lambda t: None, ["--layout", "tar"], "invalid choice"),
])
def test_usage_errors(tmp_path, cli, setup, argv, msg):
    setup(tmp_path)
    argv = [a.format(t=tmp_path) for a in argv]
    rc, _, err = cli("export", *argv, "--out", tmp_path / "o.zip")
    assert rc == 2 and msg in err and "Traceback" not in err


def test_refuses_to_replace_a_foreign_folder(work, tmp_path, cli):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("x")
    rc, _, err = cli("export", "--work", work, "--out", folder, "--quiet")
    assert rc == 2 and "not an earlier export" in err
    assert (folder / "thesis.tex").exists()


def test_help_is_a_manual(cli):
    rc, out, _ = cli("export", "--help")
    assert rc == 0
    for word in ("dataset.json", "00000/img00000000.png", "--no-labels", "examples:",
                 "metfaces-build export --work", "sorted by name"):
        assert word in out


def test_sidecar_is_written_image_by_image_as_one_json_document():
    """The sidecar is encoded image by image (no list of 200,000 dicts, no whole text):
    its bytes are still exactly json.dumps(doc, indent=1) of the document it holds, for
    zero, one or many images, with or without labels and skipped crops, and whatever the
    titles say (quotes, newlines, other scripts, the text of the placeholder itself)."""
    from metfaces_build.stages import export as E
    titles = ['Zoë "la" \nBelle', "\x00images\x00", "\\u0000images\\u0000", "", "肖像"]
    crops = [E.Crop("7", i, Path(f"x/7-{i:02d}.png"), f"{i:032x}", f"{i + 9:032x}",
                    ["A", "", "B"][i % 3], {"title": t, "source_url": f"u{i}", "meta_url": "m"},
                    {"numpy": "2"} if i % 2 else {"numpy": "1"}) for i, t in enumerate(titles)]
    for labels in ({"(unknown)": 0, "A": 1, "B": 2}, None):
        for n in (0, 1, len(crops)):
            for skipped in ([], [{"obj_id": "8", "face_idx": 0, "crop": "8-00.png",
                                  "reason": "missing"}]):
                data = E.sidecar_json(E.pack(crops[:n], labels, stylegan=True), labels, 64,
                                      skipped)
                doc = json.loads(data)
                assert data == (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()
                assert [i["title"] for i in doc["images"]] == titles[:n]
                assert doc["count"] == n and doc["skipped"] == skipped
                assert len(doc["aligned_with"]) == min(n, 2)
