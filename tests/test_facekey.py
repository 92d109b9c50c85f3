"""FaceKey: the one spelling of a face's id and crop name, and its parsing."""
from hypothesis import given, strategies as st

from metfaces_build.core.records import FaceKey, FaceRecord, FaceSpec
from metfaces_build.core import status


def test_name_and_crop_name():
    k = FaceKey("436015", 3)
    assert str(k) == "436015-03" and k.crop_name == "436015-03.png"
    assert str(FaceKey("1", 123)) == "1-123"


def test_equals_and_hashes_like_the_plain_tuple():
    k = FaceKey("436015", 0)
    assert k == ("436015", 0) and {("436015", 0): 1}[k] == 1
    assert sorted([FaceKey("2", 1), FaceKey("10", 0), FaceKey("2", 0)]) == [("10", 0), ("2", 0), ("2", 1)]


def test_record_key_and_crop_name_use_it():
    spec = FaceSpec((0, 0, 10, 10), tuple((i, i) for i in range(68)), 1)
    r = FaceRecord(obj_id="77", source_path="x.png", face_spec=spec, face_idx=4)
    assert isinstance(r.key, FaceKey) and str(r.key) == "77-04" and r.crop_name == "77-04.png"


@given(st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s), st.integers(0, 10 ** 6))
def test_parse_inverts_str(obj_id, idx):
    k = FaceKey(obj_id, idx)
    assert FaceKey.parse(str(k)) == k
    assert FaceKey.parse(k.crop_name) == k


def test_parse_refuses_what_str_never_writes():
    for bad in ("436015", "436015-0", "436015-003", "-00", "436015-0a", "436015-00.jpg", None, 5):
        assert FaceKey.parse(bad) is None, bad


def test_status_sets_are_made_of_the_constants():
    assert status.FETCH_SETTLED <= set(status.FETCH_STATUSES)
    assert status.FETCH_FAILED <= set(status.FETCH_STATUSES)
    assert status.OK in status.DETECT_DONE and status.ALIGN_RETIRED == ("superseded", "withdrawn")
