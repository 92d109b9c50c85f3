"""Issue 19, item 5: crops keep what NVIDIA's script keeps of the source's metadata (the
ICC colour profile, an RGB transparency colour), in every mode and in align_face; at
--png-level 6 the file is byte-identical to tools/reference_align.py's; verify says when
only the metadata differs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image, ImageCms

import metfaces_build as mb
from metfaces_build.core.pngmeta import metadata_difference
from metfaces_build.core.records import FaceSpec

from conftest import REPO
from synthfaces import face_json, place, texture


@pytest.fixture(scope="module")
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def sources(tmp_path_factory, icc):
    """JPEG (RGB and CMYK) and PNG sources with a profile, one without, and a face inside
    each (no padding), plus one at a corner (padded: the reference drops the profile)."""
    d = tmp_path_factory.mktemp("icc")
    src = d / "src"
    src.mkdir()
    arr = texture(1, 700, 600)
    Image.fromarray(arr).save(src / "a.jpg", quality=90, icc_profile=icc)
    Image.fromarray(arr).convert("CMYK").save(src / "c.jpg", quality=90, icc_profile=icc)
    Image.fromarray(arr).save(src / "p.png", icc_profile=icc)
    Image.fromarray(arr).save(src / "n.jpg", quality=90)
    faces = [face_json("a", 0, place(90, 350, 300), source_path="a.jpg"),
             face_json("a", 1, place(90, 90, 90), source_path="a.jpg"),
             face_json("c", 0, place(90, 350, 300), source_path="c.jpg"),
             face_json("p", 0, place(90, 350, 300), source_path="p.png"),
             face_json("n", 0, place(90, 350, 300), source_path="n.jpg")]
    (d / "m.json").write_text(json.dumps(faces))
    ref = d / "ref"
    subprocess.run([sys.executable, str(REPO / "tools" / "reference_align.py"), "--json",
                    str(d / "m.json"), "--source-images", str(src), "--output-dir", str(ref)],
                   check=True, capture_output=True, timeout=600)
    return d


def _profile(path):
    with Image.open(path) as im:
        return im.info.get("icc_profile")


@pytest.mark.parametrize("workers", [1, 2])
def test_png_level_6_crops_are_the_reference_files(cli, sources, icc, tmp_path, workers):
    out = tmp_path / "out"
    rc, _, err = cli("align", "--json", sources / "m.json", "--source-images", sources / "src",
                     "--output-dir", out, "--png-level", 6, "--quiet", "--workers", workers)
    assert rc == 0, err
    names = sorted(p.name for p in (sources / "ref").glob("*.png"))
    assert len(names) == 5
    for name in names:
        assert (out / name).read_bytes() == (sources / "ref" / name).read_bytes(), name
    assert _profile(out / "a-00.png") == icc and _profile(out / "c-00.png") == icc
    assert _profile(out / "a-01.png") is None   # padded: the reference's fromarray drops it
    assert _profile(out / "n-00.png") is None


def test_default_level_keeps_the_profile_and_the_pixels(cli, sources, icc, tmp_path):
    out = tmp_path / "out"
    assert cli("align", "--json", sources / "m.json", "--source-images", sources / "src",
               "--output-dir", out, "--quiet")[0] == 0
    for p in (sources / "ref").glob("*.png"):
        with Image.open(p) as a, Image.open(out / p.name) as b:
            assert a.tobytes() == b.tobytes(), p.name
            assert a.info.get("icc_profile") == b.info.get("icc_profile"), p.name


def test_align_face_keeps_the_profile(sources, icc, tmp_path):
    rec = json.loads((sources / "m.json").read_text())[0]
    crop = mb.align_face(sources / "src" / "a.jpg", FaceSpec.from_json(rec["face_spec"]))
    assert crop.info.get("icc_profile") == icc
    crop.save(tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes() == (sources / "ref" / "a-00.png").read_bytes()


def test_verify_says_only_the_metadata_differs(sources, tmp_path):
    """A crop without the profile has the reference's pixels: same_pixels, and verify
    names the profile as the difference."""
    ref = sources / "ref"
    mine = tmp_path / "mine"
    mine.mkdir()
    with Image.open(ref / "a-00.png") as im:
        Image.frombytes("RGB", im.size, im.tobytes()).save(mine / "a-00.png")  # no profile
    import hashlib
    records = [dict(json.loads((sources / "m.json").read_text())[0],
                    image_md5=hashlib.md5((ref / "a-00.png").read_bytes()).hexdigest())]
    (tmp_path / "j.json").write_text(json.dumps(records))
    s = mb.verify(tmp_path / "j.json", mine, reference=str(ref), quiet=True)
    r = s.results[0]
    assert r.status == "same_pixels"
    assert "colour profile (iCCP): crop none, reference" in r.metadata
    assert "only the PNG metadata differs" in r.reason
    assert any("differ from the reference only in PNG metadata" in line for line in s.lines)
    assert metadata_difference((ref / "a-00.png").read_bytes(), (ref / "a-00.png").read_bytes()) == ""


def test_a_zlib_bomb_in_a_colour_profile_is_not_expanded():
    """An iCCP chunk that would expand past MAX_PROFILE is compared as compressed bytes:
    verify's metadata check stays bounded in memory on a hostile crop."""
    import struct
    import zlib

    from metfaces_build.core import pngmeta

    def png(profile_z: bytes) -> bytes:
        def chunk(kind, payload):
            return struct.pack(">I4s", len(payload), kind) + payload + b"\0\0\0\0"
        return (pngmeta.SIGNATURE + chunk(b"IHDR", b"\0" * 13)
                + chunk(b"iCCP", b"icc\0\0" + profile_z) + chunk(b"IEND", b""))

    bomb = zlib.compress(b"\0" * (pngmeta.MAX_PROFILE + 1), 9)
    chunks = pngmeta.metadata_chunks(png(bomb))
    assert chunks[b"iCCP"] == [b"icc\0\0" + bomb]          # left compressed
    small = zlib.compress(b"profile", 9)
    assert pngmeta.metadata_chunks(png(small))[b"iCCP"] == [b"icc\0profile"]
