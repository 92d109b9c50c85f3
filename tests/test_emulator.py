"""The loopback Met API emulator: sample collection, ground truth, every fault kind."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from metfaces_build.met.emulator import FAULT_KINDS, start_emulator
from metfaces_build.core.records import parse_faces


@pytest.fixture(scope="module")
def emu():
    with start_emulator() as h:
        yield h


def get(h, path, **kw):
    return requests.get(h.api_root + path, timeout=10, **kw)


def test_collection_shape(emu):
    objs = emu.collection.objects
    kinds = {o.kind for o in objs}
    assert len(objs) >= 30 and {"faces", "noface", "no_image", "not_pd", "huge"} <= kinds
    assert len({o.department_id for o in objs if o.kind == "faces"}) >= 4
    faced = [o for o in objs if o.faces]
    assert min(max(o.width, o.height) for o in faced) >= 3000  # originals 3000+ px
    assert max(len(o.faces) for o in faced) >= 3 and {o.style for o in faced} >= {"oil", "drawing", "sepia"}
    huge = next(o for o in objs if o.kind == "huge")
    r = requests.get(emu.records()[huge.id]["primaryImage"], timeout=10)
    assert r.ok and len(r.content) < 200_000 and huge.width * huge.height > 250_000_000


def test_endpoints_like_the_real_api(emu):
    deps = get(emu, "/departments").json()["departments"]
    assert {"departmentId": 11, "displayName": "European Paintings"} in deps
    lst = get(emu, "/objects", params={"departmentIds": "11|9"}).json()
    assert len(lst["objectIDs"]) > len(set(lst["objectIDs"]))  # duplicates, as the real lists have
    assert get(emu, "/search", params={"q": "zzzz-nothing"}).json() == {"total": 0, "objectIDs": None}
    hits = get(emu, "/search", params={"q": "portrait", "hasImages": "true", "departmentId": "11"}).json()
    assert hits["objectIDs"]
    r = get(emu, "/objects/1")
    assert r.status_code == 404 and r.json() == {"message": "ObjectID not found"}
    assert get(emu, "/objects/abc").status_code == 400
    rec = get(emu, f"/objects/{lst['objectIDs'][0]}").json()
    assert rec["primaryImage"].startswith(emu.url + "/CRDImages/") and rec["isPublicDomain"] is True
    since = get(emu, "/objects", params={"metadataDate": "2023-01-01"}).json()["objectIDs"]
    assert 0 < len(set(since)) < len(emu.collection.objects)


def test_truth_is_metfaces_compatible_and_inside_images(emu):
    truth = emu.truth(with_md5=False)
    loaded = parse_faces(truth)
    assert not loaded.bad and len(loaded.faces) >= 30
    for rec in truth:
        w, h = rec["image_width"], rec["image_height"]
        assert all(0 <= x < w and 0 <= y < h for x, y in rec["face_spec"]["landmarks"])
        assert rec["source_path"] == f"unprocessed/image-{rec['obj_id']}.png"
    served = requests.get(emu.url + "/_emulator/truth.json", timeout=30).json()
    assert [r["face_spec"] for r in served] == [r["face_spec"] for r in truth]
    one = emu.collection.by_id()[int(truth[0]["obj_id"])]
    from metfaces_build.met.sample_collection import png_md5
    assert len(png_md5(emu.collection, one)) == 32  # source_md5 on demand (?md5=1), slow


def test_truth_landmarks_match_dlib_on_a_served_image(emu):
    """The transformed landmarks are what dlib finds on the composed image (within 2%)."""
    import dlib
    import face_recognition_models
    import numpy as np
    from PIL import Image
    rec = emu.truth(with_md5=False)[0]
    with Image.open(requests.get(rec["source_url"], stream=True, timeout=30).raw) as im:
        small = np.asarray(im.convert("RGB").reduce(4))
    pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    dets = dlib.get_frontal_face_detector()(small, 1)
    assert dets
    truth = np.asarray(rec["truth_landmarks"])
    width = np.ptp(truth[:, 0])
    errs = []
    for d in dets:
        s = pred(small, d)
        p = (np.array([[s.part(i).x, s.part(i).y] for i in range(68)]) + 0.5) * 4 - 0.5
        errs.append(np.abs(p - truth).mean() / width)
    assert min(errs) < 0.02


def test_photos_found_without_importing_their_packages():
    code = ("from metfaces_build.met.sample_collection import source_photos; import sys; p = source_photos(); "
            "assert len(p) == 2 and 'matplotlib' not in sys.modules and 'skimage' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind(kind):
    with start_emulator(faults=[kind], fault_rate=1.0, retry_after=2, slow_delay=0.3) as h:
        url = h.api_root + "/objects/436001"
        t0 = time.monotonic()
        try:
            r = requests.get(url, timeout=5)
            r.content
        except requests.RequestException as e:
            r = e
        took = time.monotonic() - t0
        assert h.stats()["faults"] == {kind: 1}
    if kind == "403html":
        assert r.status_code == 403 and "Incapsula" in r.text and "html" in r.headers["Content-Type"]
    elif kind == "429":
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    elif kind == "5xx":
        assert r.status_code in (500, 502, 503)
    elif kind in ("reset", "truncate"):
        assert isinstance(r, requests.RequestException)
    elif kind == "badlength":
        body = r.content if not isinstance(r, Exception) else b""
        assert isinstance(r, Exception) or int(r.headers["Content-Length"]) == len(body)
        with pytest.raises(ValueError):
            r.json()
    elif kind == "html200":
        assert r.status_code == 200 and r.text.lstrip().startswith("<!DOCTYPE html>")
    elif kind == "slow":
        assert r.status_code == 200 and took >= 0.3 and r.json()["objectID"] == 436001


def test_faults_are_deterministic_per_seed():
    def pattern(seed):
        with start_emulator(faults=["5xx"], fault_rate=0.5, seed=seed) as h:
            return [requests.get(h.api_root + "/departments", timeout=5).status_code for _ in range(12)]
    assert pattern(3) == pattern(3)
    assert pattern(3) != pattern(4)


def test_rate_limit_answers_429_with_retry_after():
    with start_emulator(rate_limit=5, retry_after=1) as h:
        codes = [requests.get(h.api_root + "/departments", timeout=5) for _ in range(15)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and all(r.headers["Retry-After"] == "1" for r in limited)
    assert sum(r.status_code == 200 for r in codes) >= 5


def test_block_mode_blocks_everything_then_lifts():
    with start_emulator(block=(5, 10.0, 0.5)) as h:
        s = requests.Session()
        codes = [s.get(h.api_root + "/departments", timeout=5).status_code for _ in range(8)]
        assert codes[:5] == [200] * 5 and codes[5:] == [403] * 3
        assert s.get(h.url + "/CRDImages/ep/original/DT436001.jpg", timeout=5).status_code == 403
        time.sleep(0.6)
        assert s.get(h.api_root + "/departments", timeout=5).status_code == 200


def test_cli_help_and_usage_errors(cli):
    rc, out, _ = cli("emulator", "--help")
    assert rc == 0 and "example" in out and "badlength" in out
    rc, _, err = cli("emulator", "--faults", "lightning")
    assert rc == 2 and "unknown fault" in err and "Traceback" not in err
    rc, _, err = cli("emulator", "--block", "3")
    assert rc == 2 and "N,WINDOW,SECONDS" in err


def ids_since(h, date, **params):
    r = get(h, "/objects", params={"metadataDate": date, **params})
    assert r.status_code == 200
    return set(r.json()["objectIDs"])


def test_the_collection_changes_like_the_met():
    """Re-shot, corrected, added and withdrawn objects get a new metadataDate; the
    metadataDate listing names exactly them; records and images follow."""
    from PIL import Image
    import io
    with start_emulator(synthetic=3) as h:
        before = h.records()
        assert ids_since(h, "2024-01-01") == set()  # sample dates end in 2023, filler too
        assert len(ids_since(h, "2000-01-01")) == len(before) + 3
        old_bytes = requests.get(before[436001]["primaryImage"], timeout=10).content
        h.reshoot(436001, date="2025-03-01")
        h.correct(436008, title="Portrait of a Lady (corrected)", date="2025-03-02")
        new = h.add_object(department_id=9, title="A New Drawing", date="2025-03-03")
        h.withdraw(436015, "rights", date="2025-03-04")
        h.withdraw(436022, "removed", date="2025-03-05")
        moved = h.reshoot(436029, rename=True)  # dated now
        assert ids_since(h, "2025-03-01") == {436001, 436008, new.id, 436015, 436029}
        assert ids_since(h, "2025-03-03") == {new.id, 436015, 436029}
        assert ids_since(h, moved.metadata_date[:10]) == {436029}
        assert ids_since(h, "2025-03-01", departmentIds="9") == {new.id}
        assert 436022 not in set(get(h, "/objects").json()["objectIDs"])
        assert get(h, "/objects/436022").status_code == 404

        rec = get(h, "/objects/436001").json()
        assert rec["primaryImage"] == before[436001]["primaryImage"]
        assert rec["metadataDate"] == "2025-03-01T00:00:00Z"
        new_bytes = requests.get(rec["primaryImage"], timeout=10).content
        assert new_bytes != old_bytes
        with Image.open(io.BytesIO(new_bytes)) as a, Image.open(io.BytesIO(old_bytes)) as b:
            assert a.size == b.size
        assert get(h, "/objects/436008").json()["title"] == "Portrait of a Lady (corrected)"
        added = get(h, f"/objects/{new.id}").json()
        assert added["department"] == "Drawings and Prints" and added["title"] == "A New Drawing"
        assert requests.get(added["primaryImage"], timeout=10).content[:3] == b"\xff\xd8\xff"
        gone = get(h, "/objects/436015").json()
        assert gone["isPublicDomain"] is False and gone["primaryImage"] == ""
        renamed = get(h, "/objects/436029").json()["primaryImage"]
        assert renamed != before[436029]["primaryImage"] and requests.get(renamed, timeout=10).ok
        truth_ids = {int(r["obj_id"]) for r in h.truth()}
        assert new.id in truth_ids and not {436015, 436022} & truth_ids
        assert [c.kind for c in h.changes] == ["reshoot", "correct", "add", "withdraw:rights",
                                               "withdraw:removed", "reshoot"]
        with pytest.raises(ValueError, match="colour"):
            h.correct(436001, colour="red")
        with pytest.raises(ValueError, match="how must be"):
            h.withdraw(436001, "stolen")
        with pytest.raises(ValueError, match="no photographed image"):
            h.reshoot(436015)
        with pytest.raises(KeyError):
            h.reshoot(436022)
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            h.correct(436001, title="x", date="March")
        overlay = h._overlay_dir
        assert overlay.is_dir()
    assert not overlay.exists()  # the shared image cache was never written to
