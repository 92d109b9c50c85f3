"""The exact aligner: NVIDIA's pixels from stored landmarks, for any worker count, and the
stage's records, manifest, resumption and failure handling."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path

MODES = {
    "default": [],
    "norot": ["--no-rotation"],
    "metfacesu": ["--random-shift", "0.2", "--retry-crops", "--no-rotation"],
}


def pixel_md5s(folder: Path) -> list:
    """Lines as ../shared/tools/pixel_md5.py prints them."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".png"):
            with Image.open(folder / name) as im:
                out.append(f"{name} {im.size[0]} {im.size[1]} "
                           f"{hashlib.md5(im.convert('RGB').tobytes()).hexdigest()}")
    return out


@pytest.fixture(scope="session")
def seed1_cases(tmp_path_factory):
    gen = shared_path("tools", "align_cases.py")
    out = tmp_path_factory.mktemp("seed1")
    subprocess.run([sys.executable, str(gen), "1", str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_seed1_vectors(cli, seed1_cases, tmp_path, mode, workers):
    expected = shared_path("vectors", f"seed1-{mode}.txt").read_text().split("\n")
    expected = [line for line in expected if line.strip()]
    out = tmp_path / "out"
    rc, stdout, _ = cli("align", "--json", seed1_cases / "metfaces.json", "--source-images",
                        seed1_cases, "--output-dir", out, "--workers", workers, "--quiet",
                        *MODES[mode])
    assert pixel_md5s(out) == expected
    manifest = json.loads((out / "aligned.json").read_text())
    produced = {e["output"] for e in manifest if e["status"] == "ok"}
    assert produced == {line.split()[0] for line in expected}
    rejected = [e for e in manifest if e["status"] == "rejected"]
    assert rc == (1 if rejected else 0)
    for e in rejected:  # a face the reference skipped is recorded, not silently dropped
        assert "1000" in e["reason"] and e["output"] not in produced


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("mode", ["default", "norot"])
def test_dlib_training_vectors(cli, tmp_path, mode, workers):
    faces = shared_path("data", "dlib-faces")
    expected = [line for line in shared_path("vectors", f"dlib-training-{mode}.txt")
                .read_text().split("\n") if line.strip()]
    out = tmp_path / "out"
    rc, _, _ = cli("align", "--json", shared_path("vectors", "dlib-training.json"),
                   "--source-images", faces, "--output-dir", out, "--workers", workers,
                   "--quiet", *MODES[mode])
    assert rc == 0
    assert pixel_md5s(out) == expected


# ---- the band-limited blur is the full-image blur, bit for bit -----------------------

def _reference_pad(rgb, pad, qsize):
    sys.path.insert(0, str(REPO / "tools"))
    from reference_align import pad_and_blur
    return pad_and_blur(rgb, pad, qsize)


@pytest.mark.parametrize("seed", range(6))
def test_pad_and_blur_matches_full_image_filter(seed):
    from metfaces_build.core.exactblur import pad_and_blur
    rng = np.random.RandomState(seed)
    h, w = rng.randint(60, 200, size=2)
    rgb = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    qsize = np.float32(rng.uniform(80, 400))
    pad = np.maximum(rng.randint(0, 90, size=4), int(np.rint(qsize * 0.3)) if seed % 2 else 0)
    pad = np.maximum(pad, 1)
    assert np.array_equal(pad_and_blur(rgb, pad, qsize), _reference_pad(rgb, pad, qsize))


@pytest.mark.parametrize("case", ["flat", "two_tone", "dark_pad_heavy"])
def test_pad_and_blur_median_exact_on_ties(case):
    """The histogram median must equal np.median where the middle ranks fall on the
    interior's integer ties or among band values that share an integer part."""
    from metfaces_build.core.exactblur import pad_and_blur
    rng = np.random.RandomState(7)
    h, w = 150, 170
    if case == "flat":
        rgb = np.full((h, w, 3), 117, np.uint8)
    elif case == "two_tone":
        rgb = np.where(rng.rand(h, w, 1) < 0.5, 40, 200).astype(np.uint8).repeat(3, axis=2)
    else:
        rgb = (rng.rand(h, w, 3) ** 4 * 60).astype(np.uint8)
    qsize = np.float32(220.0)
    pad = np.array([70, 10, 95, 66]) if case != "flat" else np.array([66, 66, 66, 66])
    assert np.array_equal(pad_and_blur(rgb, pad, qsize), _reference_pad(rgb, pad, qsize))


def test_pad_and_blur_numpy_blends_without_numba(monkeypatch):
    """The numba blends and median binning, and their numpy fallbacks, give the
    reference's bytes."""
    from metfaces_build.core import exactblur
    rng = np.random.RandomState(11)
    rgb = rng.randint(0, 256, size=(120, 90, 3)).astype(np.uint8)
    qsize, pad = np.float32(200.0), np.array([60, 5, 60, 80])
    expected = _reference_pad(rgb, pad, qsize)
    assert np.array_equal(exactblur.pad_and_blur(rgb, pad, qsize), expected)
    monkeypatch.setattr(exactblur, "_blend_kernels", lambda: None)
    monkeypatch.setattr(exactblur, "_median_kernel", lambda: None)
    assert np.array_equal(exactblur.pad_and_blur(rgb, pad, qsize), expected)


@pytest.mark.parametrize("seed", range(4))
def test_quad_warp_is_pillow_bit_for_bit(seed):
    """The numba QUAD warp against Pillow's own transform: float32 and float64 quads,
    rotated, partly outside the source (black there), and tiny sources (clamped edges)."""
    pytest.importorskip("numba")
    from metfaces_build.core.exactwarp import backend, quad_warp
    assert backend() == "numba"
    rng = np.random.RandomState(seed)
    h, w = (rng.randint(2, 6, size=2) if seed == 3 else rng.randint(40, 300, size=2))
    src = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    centre = np.array([w, h]) / 2 + rng.normal(0, 0.3, 2) * np.array([w, h])
    side = rng.uniform(0.3, 1.2) * min(h, w)
    angle = rng.uniform(-0.9, 0.9)
    x = np.array([np.cos(angle), np.sin(angle)]) * side
    y = np.array([-x[1], x[0]])
    dtype = np.float32 if seed % 2 else np.float64
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y]).astype(dtype)
    data = (quad + 0.5).flatten()
    t = int(rng.randint(50, 400))
    expected = Image.fromarray(src).transform((t, t), Image.Transform.QUAD, data,
                                              Image.Resampling.BILINEAR)
    assert np.array_equal(quad_warp(src, data, t), np.asarray(expected))


def _warp_case(seed):
    """A random source and QUAD data as align_face makes them: rotated, float32 or float64,
    sometimes partly outside the source, sometimes a tiny source (clamped edges)."""
    rng = np.random.RandomState(seed)
    h, w = rng.randint(1, 6, size=2) if seed % 5 == 3 else rng.randint(40, 300, size=2)
    src = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    centre = np.array([w, h]) / 2 + rng.normal(0, 0.3, 2) * np.array([w, h])
    angle, side = rng.uniform(-0.9, 0.9), rng.uniform(0.3, 1.2) * min(h, w)
    x = np.array([np.cos(angle), np.sin(angle)]) * side
    y = np.array([-x[1], x[0]])
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return src, (quad.astype(np.float32 if seed % 2 else np.float64) + 0.5).flatten(), rng


@pytest.mark.parametrize("seed", range(10))
def test_warp_and_downscale_is_pillow_bit_for_bit(seed):
    """Step 8 fused (warp rows straight into the Lanczos passes) against Pillow's
    transform + resize, for downscales of any ratio, the identity and upscales."""
    pytest.importorskip("numba")
    from metfaces_build.core.exactwarp import backend, warp_and_downscale
    assert backend() == "numba"
    src, data, rng = _warp_case(seed)
    t = int(rng.randint(20, 400))
    size = [t // 4, int(rng.randint(1, t)), t, t + 7][seed % 4]
    warped = Image.fromarray(src).transform((t, t), Image.Transform.QUAD, data,
                                            Image.Resampling.BILINEAR)
    expected = np.asarray(warped.resize((size, size), Image.Resampling.LANCZOS))
    assert np.array_equal(warp_and_downscale(src, data, t, size), expected)


def test_step8_at_full_size_is_pillow_bit_for_bit():
    """The sizes align_face uses: a ~1500 px source warped to 4096 and brought to 1024."""
    pytest.importorskip("numba")
    from metfaces_build.core.exactwarp import warp_and_downscale
    rng = np.random.RandomState(5)
    noise = rng.randint(0, 256, size=(200, 190, 3)).astype(np.uint8)
    src = np.asarray(Image.fromarray(noise).resize((1500, 1600), Image.Resampling.BILINEAR))
    c, x = np.array([760.0, 790.0]), np.array([0.98, 0.2]) * 700
    y = np.array([-x[1], x[0]])
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y]).astype(np.float32)
    data = (quad + 0.5).flatten()
    expected = Image.fromarray(src).transform((4096, 4096), Image.Transform.QUAD, data,
                                              Image.Resampling.BILINEAR)
    expected = np.asarray(expected.resize((1024, 1024), Image.Resampling.LANCZOS))
    assert np.array_equal(warp_and_downscale(src, data, 4096, 1024), expected)


# (w, h) -> (width, height): both passes, each order, one axis only, up, down, to 1 pixel
RESIZES = [((50, 40), (20, 10)), ((37, 91), (13, 50)), ((100, 100), (33, 100)),
           ((100, 100), (100, 31)), ((20, 30), (47, 71)), ((7, 5), (3, 2)), ((1, 1), (3, 3)),
           ((300, 200), (299, 201)), ((64, 64), (1, 1)), ((2, 9), (1, 4)),
           ((12, 111), (4, 48)), ((100, 22), (134, 19)), ((106, 91), (29, 22)),
           ((513, 260), (128, 65))]


def test_resize_lanczos_is_pillow_bit_for_bit():
    """Pillow 13's LANCZOS resize: its fixed-point taps, rounding, clipping, and its order
    of passes (vertical first when the height shrinks by more than twice the width's
    pixels), on fixed and random size pairs."""
    pytest.importorskip("numba")
    from metfaces_build.core.exactresize import backend, resize_lanczos
    assert backend() == "numba"
    rng = np.random.RandomState(7)
    pairs = RESIZES + [(tuple(rng.randint(1, 150, 2)), tuple(rng.randint(1, 300, 2)))
                       for _ in range(150)]
    for (w, h), size in pairs:
        src = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        expected = np.asarray(Image.fromarray(src).resize(size, Image.Resampling.LANCZOS))
        assert np.array_equal(resize_lanczos(src, size), expected), ((w, h), size)


def test_resize_pass_order_decides_pixels():
    """Where Pillow 13 filters vertically first, the other order gives other pixels, so
    the order rule is really exercised above."""
    pytest.importorskip("numba")
    from metfaces_build.core.exactresize import resize_lanczos, vertical_first
    rng = np.random.RandomState(0)
    for (w, h), (width, height) in [((2, 9), (1, 4)), ((12, 111), (4, 48))]:
        assert vertical_first(w, h, width, height)
        src = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
        ours = resize_lanczos(src, (width, height))
        horizontal_first = resize_lanczos(resize_lanczos(src, (width, h)), (width, height))
        vertical_then = resize_lanczos(resize_lanczos(src, (w, height)), (width, height))
        assert np.array_equal(ours, vertical_then) and not np.array_equal(ours, horizontal_first)
    assert not vertical_first(4096, 4096, 1024, 1024)  # step 8: horizontal first


def test_step8_falls_back_to_pillow_without_numba(monkeypatch):
    """Without numba (the compiled-kernel accessors give None) every entry point is
    Pillow's own call, with the same pixels as the kernels."""
    from metfaces_build.core import exactresize, exactwarp
    src, data, _ = _warp_case(4)
    ours = exactwarp.warp_and_downscale(src, data, 160, 40), exactwarp.quad_warp(src, data, 160), \
        exactresize.resize_lanczos(src, (33, 71))
    for accessors in ([exactwarp], [exactresize], [exactwarp, exactresize]):
        with monkeypatch.context() as m:
            for module in accessors:
                m.setattr(module, "_kernels", lambda: None)
            fallback = exactwarp.warp_and_downscale(src, data, 160, 40), \
                exactwarp.quad_warp(src, data, 160), exactresize.resize_lanczos(src, (33, 71))
            assert all(np.array_equal(a, b) for a, b in zip(ours, fallback))
            assert (exactwarp.backend(), exactresize.backend()) == tuple(
                "pillow" if mod in accessors else "numba" for mod in (exactwarp, exactresize))


def test_shrinking_a_large_original_is_pillows(monkeypatch):
    """Step 5 (a face over twice the output size: the whole original shrunk first) gives
    the same crop with the compiled Lanczos as with Pillow's own resize."""
    from metfaces_build.core import exactresize
    from metfaces_build.core.records import FaceSpec
    from metfaces_build.stages.align import AlignParams, align_face
    big = _texture(700, 620)
    lm = [[150 + (i % 17) * 25, 120 + (i // 17) * 90] for i in range(68)]
    lm[36:42] = [[260, 250]] * 6
    lm[42:48] = [[470, 250]] * 6
    lm[48], lm[54] = [290, 470], [440, 470]
    spec = FaceSpec.from_json({"rect": [100, 100, 600, 600], "landmarks": lm, "shrink": 1})
    params = AlignParams(size=64, supersampling=2)
    cache: dict = {}
    ours = np.asarray(align_face(big, spec, params, _shrunk_cache=cache))
    assert cache, "this face must take the shrink step"
    monkeypatch.setattr(exactresize, "_kernels", lambda: None)
    assert np.array_equal(ours, np.asarray(align_face(big, spec, params)))


def _gaussian_cases():
    rng = np.random.RandomState(3)
    noise = (rng.rand(157, 301, 3) * 255).astype(np.float32)
    eight_bit = rng.randint(0, 256, size=(131, 257, 3)).astype(np.float32)
    steps = np.zeros((140, 230, 3), np.float32)  # all-zero windows, hard edges, dark ramps
    steps[40:90, 60:200] = 255
    steps[100:, :] = np.linspace(0, 3, 230, dtype=np.float32)[None, :, None]
    dark = (rng.rand(120, 180, 3) ** 6 * 4).astype(np.float32)  # tiny values: few certified
    return [noise, eight_bit, steps, dark]


def test_kernel_taps_are_scipys():
    """The taps computed without scipy are the ones scipy's correlation uses, for the
    aligner's float32 blurs and for float64 ones."""
    from metfaces_build.core.exactgauss import kernel_taps, scipy_kernel_taps
    rng = np.random.RandomState(9)
    for blur in list(rng.uniform(0.3, 120, 60).astype(np.float32)) + [2.5, 17.77, 80.0]:
        radius = int(4.0 * float(blur) + 0.5)
        w0, taps = kernel_taps(blur, radius)
        s0, staps = scipy_kernel_taps(blur, radius)
        assert w0 == s0 and np.array_equal(taps, staps)


@pytest.mark.parametrize("numba_on", [True, False])
@pytest.mark.parametrize("path", ["fft", "direct"])
def test_gaussian_passes_are_scipy_bit_for_bit(monkeypatch, numba_on, path):
    """Both ways of computing a pass (certified FFT, direct sums), with and without numba,
    give scipy's gaussian_filter1d bits, on the band regions and on whole axes."""
    from scipy.ndimage import gaussian_filter1d

    from metfaces_build.core import exactgauss
    from metfaces_build.core.exactblur import _reflect, gaussian_planar

    def gaussian_1d(a, blur, radius, axis):  # a whole axis through exactgauss
        n = a.shape[axis]
        out = exactgauss.filter_lines(np.moveaxis(a, axis, 2),
                                      _reflect(np.arange(-radius, n + radius), n),
                                      *exactgauss.kernel_taps(blur, radius))
        return np.moveaxis(out, 2, axis)

    def gaussian_region(img, region, blur, radius):  # as (y, x, channel)
        return gaussian_planar(img, region, blur, radius).transpose(0, 2, 1)
    if numba_on:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(exactgauss, "_certify_kernel", lambda: None)
        monkeypatch.setattr(exactgauss, "_direct_kernel", lambda: None)
    monkeypatch.setattr(exactgauss, "FFT_MIN_RADIUS", 0 if path == "fft" else 10 ** 9)
    for a in _gaussian_cases():
        for blur in (np.float32(2.3), np.float32(11.1), np.float32(17.77)):
            radius = int(4.0 * float(blur) + 0.5)
            for axis in (0, 1):
                assert np.array_equal(gaussian_1d(a, blur, radius, axis),
                                      gaussian_filter1d(a, blur, axis=axis))
            full = gaussian_filter1d(gaussian_filter1d(a, blur, axis=0), blur, axis=1)
            h, w, _ = a.shape
            for r0, r1, c0, c1 in [(0, 40, 0, w), (100, h, 20, 90), (50, 60, w - 51, w)]:
                got = gaussian_region(a, (r0, r1, c0, c1), blur, radius)
                assert np.array_equal(got, full[r0:r1, c0:c1])
            got = gaussian_region(np.uint8(np.clip(a, 0, 255)), (0, h, 0, w), blur, radius)
            assert np.array_equal(got, gaussian_filter1d(gaussian_filter1d(
                np.float32(np.uint8(np.clip(a, 0, 255))), blur, axis=0), blur, axis=1))


def test_gaussian_fft_error_is_far_inside_its_bound():
    """The certification rests on the FFT's error staying inside `delta`; on 8-bit,
    float and step lines it stays under 1/100 of it (measured ~1/2000)."""
    from metfaces_build.core import exactgauss
    rng = np.random.RandomState(12)
    for blur in (np.float32(12.0), np.float32(49.2)):
        radius = int(4.0 * float(blur) + 0.5)
        w0, taps = exactgauss.kernel_taps(blur, radius)
        ext = 1500
        plan = exactgauss._FFTPlan(ext, w0, taps)
        lines = [rng.randint(0, 256, ext), rng.rand(ext) * 255,
                 np.where(np.arange(ext) % 400 < 200, 255.0, 0.0), rng.rand(ext) ** 8 * 3]
        x = np.float64(np.float32(lines))
        buf = np.zeros((len(lines), plan.size))
        buf[:, :ext] = x
        y = np.fft.irfft(np.fft.rfft(buf, axis=1) * plan.spectrum, plan.size,
                         axis=1)[:, 2 * radius:ext]
        c = np.arange(ext - 2 * radius) + radius
        ref = x[:, c] * w0
        for m in range(radius, 0, -1):
            ref += (x[:, c - m] + x[:, c + m]) * taps[m - 1]
        bound = (exactgauss.FFT_SAFETY * exactgauss._U * plan.log2n
                 * np.sqrt((x * x).sum(axis=1)))
        assert (np.abs(y - ref).max(axis=1) < bound / 100).all()


@pytest.mark.parametrize("numba_on", [True, False])
def test_gaussian_fft_certifies_most_values_and_sums_the_rest(monkeypatch, numba_on):
    """The FFT's float32 is kept only where certified; the rest is summed scipy's way.
    With the real margin 8-bit data needs the sums for well under 1% of values; with no
    trust in the FFT at all (safety 1e12) every value is summed and the bits are still
    scipy's."""
    from scipy.ndimage import gaussian_filter1d

    from metfaces_build.core import exactgauss
    if numba_on:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(exactgauss, "_certify_kernel", lambda: None)
    rng = np.random.RandomState(5)
    a = rng.randint(0, 256, size=(40, 900)).astype(np.float32)
    blur = np.float32(30.0)
    radius = int(4.0 * float(blur) + 0.5)
    w0, taps = exactgauss.kernel_taps(blur, radius)
    idx = np.concatenate([np.arange(radius)[::-1], np.arange(900), 899 - np.arange(radius)])
    want = gaussian_filter1d(a, blur, axis=1)

    def run():
        plan = exactgauss._FFTPlan(idx.size, w0, taps)
        buf = np.zeros((a.shape[0], plan.size))
        buf[:, :idx.size] = a[:, idx]
        return plan.filter(buf)
    got, summed = run()
    assert np.array_equal(got, want)
    assert 0 <= summed < 0.01 * a.size
    monkeypatch.setattr(exactgauss, "FFT_SAFETY", 1e12)
    got, summed = run()
    assert np.array_equal(got, want)
    assert summed == a.size


# ---- records: validation, --skip-bad -------------------------------------------------

def _record(obj_id="1", idx=0, source="img.png", lm=None, shrink=1):
    lm = lm if lm is not None else [[100 + (i % 17) * 5, 100 + (i // 17) * 20] for i in range(68)]
    return {"obj_id": obj_id, "source_path": source, "face_idx": idx,
            "face_spec": {"rect": [90, 90, 200, 200], "landmarks": lm, "shrink": shrink}}


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r.pop("face_spec"), "record 1: missing key 'face_spec'"),
    (lambda r: r["face_spec"].update(landmarks=[[1, 2]] * 67), "record 1: field face_spec.landmarks"),
    (lambda r: r["face_spec"].update(landmarks=[[1.5, 2]] * 68), "non-integer"),
    (lambda r: r["face_spec"].update(shrink=0), "face_spec.shrink"),
    (lambda r: r.update(source_path="/etc/passwd"), "absolute path"),
    (lambda r: r.update(source_path="../outside.png"), "escapes"),
    (lambda r: r.update(obj_id="1", face_idx=0), "duplicate (obj_id, face_idx)"),
])
def test_bad_records_refuse_the_file(cli, tmp_path, mutate, needle):
    bad = _record("2", 0)
    mutate(bad)
    j = tmp_path / "m.json"
    j.write_text(json.dumps([_record("1", 0), bad]))
    rc, out, err = cli("align", "--json", j, "--source-images", tmp_path, "--output-dir",
                       tmp_path / "o", "--quiet")
    assert rc == 2
    assert needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "1-00.png").exists()


def test_malformed_json_is_a_usage_error(cli, tmp_path):
    j = tmp_path / "m.json"
    j.write_text('[{"obj_id": ')
    rc, _, err = cli("align", "--json", j, "--source-images", tmp_path, "--output-dir",
                     tmp_path / "o")
    assert rc == 2 and "not valid JSON" in err


def _texture(w, h, seed=0):
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)


def test_skip_bad_and_failures_are_recorded(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _texture(400, 400).save(src / "good.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    (src / "page.jpg").write_bytes(b"<html><body>Request unsuccessful</body></html>")
    Image.new("L", (3000, 3000)).save(src / "bomb.png")  # tiny file, many pixels
    recs = [_record("1", 0, "good.png"), _record("2", 0, "missing.png"),
            _record("3", 0, "corrupt.png"), _record("4", 0, "page.jpg"),
            _record("5", 0, "bomb.png"), _record("6", 0, "../escape.png")]
    bad_shrink = _record("7", 0, "good.png", shrink=0)
    j = tmp_path / "m.json"
    j.write_text(json.dumps(recs + [bad_shrink]))
    out = tmp_path / "out"
    rc, stdout, err = cli("align", "--json", j, "--source-images", src, "--output-dir", out,
                          "--max-pixels", 4_000_000, "--skip-bad", "--quiet", "--size", 64,
                          "--supersampling", 1)
    assert rc == 1
    manifest = {(e["record"] or {}).get("obj_id"): e for e in
                json.loads((out / "aligned.json").read_text())}
    assert manifest["1"]["status"] == "ok"
    assert manifest["2"]["status"] == "missing_source"
    assert manifest["3"]["status"] == "bad_content"
    assert manifest["4"]["status"] == "bad_content"
    assert manifest["5"]["status"] == "too_large" and "4000000" in manifest["5"]["reason"]
    assert manifest["6"]["status"] == "bad_record"
    assert manifest["7"]["status"] == "bad_record" and "shrink" in manifest["7"]["reason"]
    assert sorted(os.listdir(out)) == ["1-00.png", "aligned.json"]
    with Image.open(out / "1-00.png") as im:
        assert im.size == (64, 64)
    assert "1 ok" in stdout and "missing_source" in stdout


def test_rerun_skips_and_redoes_what_changed(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _texture(300, 300).save(src / "a.png")
    j = tmp_path / "m.json"
    j.write_text(json.dumps([_record("1", 0, "a.png"), _record("1", 1, "a.png")]))
    out = tmp_path / "out"
    args = ("align", "--json", j, "--source-images", src, "--output-dir", out, "--quiet",
            "--size", 64, "--supersampling", 2)
    assert cli(*args)[0] == 0
    first = json.loads((out / "aligned.json").read_text())
    rc, stdout, _ = cli(*args)
    assert rc == 0 and "2 already done" in stdout
    (out / "1-01.png").write_bytes(b"tampered")
    rc, stdout, _ = cli(*args)
    assert rc == 0 and "1 already done" in stdout
    assert json.loads((out / "aligned.json").read_text()) == first
    # different parameters: nothing is reused
    rc, stdout, _ = cli(*args[:-1], 1)
    assert rc == 0 and "already done" not in stdout
    assert sorted(os.listdir(out)) == ["1-00.png", "1-01.png", "aligned.json"]


def test_png_level_changes_bytes_not_pixels(cli, tmp_path):
    """--png-level re-encodes (the manifest says why), with the same pixel md5s; entries
    written before the option existed count as level 6."""
    src = tmp_path / "src"
    src.mkdir()
    _texture(300, 300).save(src / "a.png")
    j = tmp_path / "m.json"
    j.write_text(json.dumps([_record("1", 0, "a.png")]))
    out = tmp_path / "out"
    args = ("align", "--json", j, "--source-images", src, "--output-dir", out, "--quiet",
            "--size", 128, "--supersampling", 2)
    assert cli(*args)[0] == 0
    fast = json.loads((out / "aligned.json").read_text())[0]
    assert fast["params"]["png_level"] == 4
    rc, stdout, _ = cli(*args, "--png-level", 9)
    assert rc == 0 and "already done" not in stdout
    small = json.loads((out / "aligned.json").read_text())[0]
    assert small["pixel_md5"] == fast["pixel_md5"] and small["file_md5"] != fast["file_md5"]
    assert small["supersedes"]["reason"] == "PNG level changed (same pixels)"
    with Image.open(out / "1-00.png") as im:
        assert hashlib.md5(im.convert("RGB").tobytes()).hexdigest() == fast["pixel_md5"]
    # an entry from before --png-level (no png_level recorded) was written at level 6
    rc, stdout, _ = cli(*args, "--png-level", 6)
    manifest = json.loads((out / "aligned.json").read_text())
    del manifest[0]["params"]["png_level"]
    (out / "aligned.json").write_text(json.dumps(manifest))
    rc, stdout, _ = cli(*args, "--png-level", 6)
    assert rc == 0 and "1 already done" in stdout
    rc, stdout, _ = cli(*args)
    assert rc == 0 and "already done" not in stdout


def test_killed_run_resumes_from_its_journal(tmp_path):
    """A run killed midway leaves a journal; the rerun reuses its crops and ends clean."""
    src = tmp_path / "src"
    src.mkdir()
    recs = []
    for i in range(6):
        _texture(700, 700, seed=i).save(src / f"{i}.png")
        recs.append(_record(str(i), 0, f"{i}.png"))
    j = tmp_path / "m.json"
    j.write_text(json.dumps(recs))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "metfaces_build", "align", "--json", str(j), "--source-images",
           str(src), "--output-dir", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / ".aligned.journal.jsonl"
    import time
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.wait()
    done_before = journal.read_text().count("\n")
    assert 2 <= done_before < 6
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"({done_before} already done)" in res.stdout
    assert sorted(os.listdir(out)) == [f"{i}-00.png" for i in range(6)] + ["aligned.json"]
    manifest = json.loads((out / "aligned.json").read_text())
    for e in manifest:
        data = (out / e["output"]).read_bytes()
        assert hashlib.md5(data).hexdigest() == e["file_md5"]
        assert set(e["versions"]) >= {"numpy", "scipy", "Pillow"}


def test_help_reads_as_a_manual(cli):
    rc, out, _ = cli("align", "--help")
    assert rc == 0
    for flag in ("--json", "--source-images", "--output-dir", "--random-shift", "--retry-crops",
                 "--no-rotation", "--no-padding", "--size", "--supersampling", "--workers",
                 "--force", "--quiet", "--max-pixels", "examples:"):
        assert flag in out


def test_align_deletes_only_crops_of_faces_that_left_its_own_input(cli, tmp_path):
    """`align --json subset.json` into the folder of a full run leaves the other faces'
    crops alone; the full input dropping a face still deletes that face's crop."""
    src = tmp_path / "src"
    src.mkdir()
    _texture(300, 300).save(src / "a.png")
    _texture(300, 300, seed=1).save(src / "b.png")
    full = [_record("1", 0, "a.png"), _record("1", 1, "a.png"), _record("2", 0, "b.png")]
    everything, subset = tmp_path / "filtered.json", tmp_path / "subset.json"
    everything.write_text(json.dumps(full))
    subset.write_text(json.dumps(full[:1]))
    out = tmp_path / "out"

    def run(j):
        rc, stdout, err = cli("align", "--json", j, "--source-images", src, "--output-dir", out,
                              "--quiet", "--size", 64, "--supersampling", 1)
        assert rc == 0, err
        return {e["output"] or e["record"]["obj_id"]: e for e in json.loads((out / "aligned.json").read_text())}

    run(everything)
    crops = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert sorted(crops) == ["1-00.png", "1-01.png", "2-00.png"]
    m = run(subset)
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == crops   # nothing deleted
    assert m["1-00.png"]["inputs"] == ["../filtered.json", "../subset.json"]
    assert m["2-00.png"]["status"] == "ok" and m["2-00.png"]["inputs"] == ["../filtered.json"]
    # the full input drops face 1-01: its crop goes; 1-00, which subset.json also has, stays
    everything.write_text(json.dumps([full[0], full[2]]))
    m = run(everything)
    assert sorted(p.name for p in out.glob("*.png")) == ["1-00.png", "2-00.png"]
    assert [e["status"] for e in m.values() if e["record"].get("face_idx") == 1] == ["superseded"]
    # a face only subset.json made is left alone by the full input, and goes when subset drops it
    subset.write_text(json.dumps([_record("3", 0, "b.png")]))
    run(subset)
    assert (out / "3-00.png").is_file() and (out / "1-00.png").is_file()
    run(everything)
    assert (out / "3-00.png").is_file()
    subset.write_text("[]")
    run(subset)
    assert not (out / "3-00.png").exists() and (out / "1-00.png").is_file()


def test_rerun_keeps_entry_keys_align_does_not_name(cli, tmp_path):
    """align reads its earlier manifest as typed entries (infra/readers.py) but writes each
    back as it was: a key it does not know (a note a person added) survives a rerun, on a
    reused crop and on the entry of a face that left the input."""
    src = tmp_path / "src"
    src.mkdir()
    _texture(300, 300).save(src / "a.png")
    faces = [_record("1", 0, "a.png"), _record("1", 1, "a.png")]
    j, out = tmp_path / "faces.json", tmp_path / "out"
    j.write_text(json.dumps(faces))

    def run():
        rc, stdout, err = cli("align", "--json", j, "--source-images", src, "--output-dir", out,
                              "--quiet", "--size", 64, "--supersampling", 1)
        assert rc == 0, err
        return stdout, {e["record"]["face_idx"]: e
                        for e in json.loads((out / "aligned.json").read_text())}

    _, m = run()
    crop = (out / "1-00.png").read_bytes()
    (out / "aligned.json").write_text(json.dumps([{**e, "note": f"checked {i}"}
                                                  for i, e in sorted(m.items())]))
    j.write_text(json.dumps(faces[:1]))
    stdout, m = run()
    assert "(1 already done)" in stdout and (out / "1-00.png").read_bytes() == crop
    assert (m[0]["status"], m[0]["note"]) == ("ok", "checked 0")
    assert (m[1]["status"], m[1]["was"], m[1]["note"]) == ("superseded", "ok", "checked 1")
    assert not (out / "1-01.png").exists()


def test_plan_holds_results_without_records_and_writes_them_back(tmp_path):
    """align keeps each new result without its record (filled in from the input as the
    manifest is written, entry by entry) and each reused crop as a pointer to its earlier
    entry (held compressed): memory a face is small at 200,000 faces, and the manifest is
    what holding every entry whole wrote, keys in their order."""
    from collections import Counter

    from metfaces_build.core.records import FaceRecord
    from metfaces_build.infra.executors import make_executor
    from metfaces_build.infra.faces import load_faces
    from metfaces_build.stages import align as A

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _texture(300, 300).save(src / "a.png")
    faces = [dict(_record("1", i, "a.png"), title=f"t{i}") for i in range(3)]
    j = tmp_path / "faces.json"
    j.write_text(json.dumps(faces))
    opts = A.AlignOptions(json=str(j), source_images=str(src), output_dir=str(out), size=64,
                          supersampling=1, quiet=True, workers=1)
    A.align(opts)
    m1 = json.loads((out / "aligned.json").read_text())
    m1[0] = {**m1[0], "note": "checked", "supersedes": {"file_md5": "", "reason": "earlier"}}
    (out / "aligned.json").write_text(json.dumps(m1))
    # face 1 retitled (crop kept, record updated), face 2 gone, face 3 new
    new = [faces[0], dict(faces[1], title="retitled"), dict(_record("1", 3, "a.png"), title="n")]
    j.write_text(json.dumps(new))

    loaded = load_faces(str(j), pack=True)
    plan = A.plan_align(opts, loaded.faces, src, out)
    assert plan.results[0] == A.Reused("ok", False) and plan.results[1] == A.Reused("ok", True)
    assert A.execute(plan, make_executor("local", 1, None), out, quiet=True) == 1
    assert plan.results[2]["record"] is A.INPUT_RECORD  # not the record's ~10 KB of lists
    journal = json.loads((out / ".aligned.journal.jsonl").read_text())
    tally, removed = A.retire_and_write(plan, loaded.bad, out, src)
    assert (tally, removed) == (Counter(ok=3, superseded=1), 1)
    m2 = json.loads((out / "aligned.json").read_text())
    want0 = {k: v for k, v in m1[0].items() if k != "supersedes"}
    assert list(m2[0].items()) == list(want0.items())
    rec1 = FaceRecord.from_json(new[1]).to_json()
    assert list(m2[1].items()) == list({**m1[1], "record": rec1}.items())
    assert m2[2] == journal and m2[2]["record"] == FaceRecord.from_json(new[2]).to_json()
    assert list(m2[2]) == ["record", "output", "status", "reason", "file_md5", "pixel_md5",
                           "params", "versions", "inputs"]
    assert (m2[3]["record"]["face_idx"], m2[3]["status"], m2[3]["was"]) == (2, "superseded", "ok")
    assert not (out / "1-02.png").exists() and (out / "1-03.png").exists()
