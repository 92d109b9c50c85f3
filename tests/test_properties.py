"""Property tests (hypothesis): arbitrary input in, a recorded failure or a valid value
out, never an exception. The record validator, the URL check, the JSON decoding of
answers and the journal reader are the places hostile input enters."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from metfaces_build.core.records import MAX_COORD, FaceRecord, parse_faces
from metfaces_build.infra.files import read_jsonl
from metfaces_build.met.client import MAX_OBJECT_ID, MET_IMAGE_HOST, as_object_id, decode_json, \
    image_url_problem, parse_object_ids

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=20)


def _near_valid_record():
    """Records close to valid, with any field swapped for arbitrary JSON: the interesting
    region for a validator (fully random dicts are rejected at the first key)."""
    coord = st.one_of(st.integers(-5, 5000), st.integers(-2 ** 80, 2 ** 80), json_values)
    landmarks = st.one_of(st.lists(st.lists(coord, min_size=2, max_size=2), min_size=68, max_size=68),
                          json_values)
    spec = st.fixed_dictionaries({
        "rect": st.one_of(st.lists(coord, min_size=4, max_size=4), json_values),
        "landmarks": landmarks, "shrink": st.one_of(st.integers(-3, 10 ** 12), json_values)})
    return st.fixed_dictionaries({
        "obj_id": st.one_of(st.text(max_size=300), st.integers(-10, 10 ** 30), json_values),
        "source_path": st.one_of(st.text(max_size=40), json_values),
        "face_spec": st.one_of(spec, json_values),
        "face_idx": st.one_of(st.integers(-3, 10 ** 9), json_values),
    }, optional={"title": json_values, "source_url": json_values, "extra_key": json_values})


@SETTINGS
@given(st.one_of(_near_valid_record(), json_values))
def test_record_validator_accepts_or_explains(d):
    try:
        rec = FaceRecord.from_json(d, 3)
    except ValueError as e:
        assert str(e).startswith("record 3")
        return
    # a valid record: a usable file name, bounded numbers, and it survives a round trip
    assert len(rec.crop_name.encode("utf-8", "surrogatepass")) <= 255
    assert "/" not in rec.crop_name and not rec.crop_name.startswith(".")
    assert all(abs(v) <= MAX_COORD for p in rec.face_spec.landmarks for v in p)
    assert 1 <= rec.face_spec.shrink <= MAX_COORD
    again = FaceRecord.from_json(json.loads(json.dumps(rec.to_json())), 3)
    assert again.to_json() == rec.to_json()


@SETTINGS
@given(json_values)
def test_parse_faces_collects_bad_entries(data):
    try:
        loaded = parse_faces(data)
    except Exception as e:
        from metfaces_build.core.errors import RecordError
        assert isinstance(e, RecordError)
        return
    n = len(data["faces"] if isinstance(data, dict) else data)
    assert len(loaded.faces) + len(loaded.bad) == n


# ---- the URL check ----------------------------------------------------------------------

API = "http://127.0.0.1:8000/public/collection/v1"
ALLOWED = {("127.0.0.1", 8000), (MET_IMAGE_HOST, 80), (MET_IMAGE_HOST, 443)}
pieces = st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "", "//", "\\", "@", ":", "/",
                          "?", "#", "%5C", "%40", "127.0.0.1", ":8000", ":8001", MET_IMAGE_HOST,
                          "attacker.example", "user:pw", "[::1]", " ", "\t", "\n", "\x00", "ä",
                          ".", "img/x.jpg", ":443", ":99999", "%00", "xn--"])


@SETTINGS
@given(st.one_of(st.lists(pieces, min_size=1, max_size=10).map("".join), st.text(max_size=60)))
def test_url_check_passes_only_what_requests_sends_to_an_allowed_host(url):
    why = image_url_problem(url, API)
    assert why is None or isinstance(why, str)
    if why is not None:
        return
    import requests
    from urllib3.util import parse_url
    sent = parse_url(requests.Request("GET", url).prepare().url)
    port = sent.port or (443 if sent.scheme == "https" else 80)
    assert sent.auth is None
    assert (sent.host, port) in ALLOWED, (url, sent)


@SETTINGS
@given(st.sampled_from(["http", "https"]), st.sampled_from(sorted(h for h, _ in ALLOWED)),
       st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_url_check_keeps_ordinary_met_urls(scheme, host, path):
    assume("\\" not in path and "@" not in path and "#" not in path and "?" not in path)
    assume(all(ord(c) >= 0x20 and ord(c) != 0x7f for c in path))
    port = ":8000" if host == "127.0.0.1" else ""
    url = f"{scheme}://{host}{port}/{path}"
    assume(not (host == "127.0.0.1" and scheme == "https"))
    assert image_url_problem(url, API) is None, url


# ---- answers and ids ----------------------------------------------------------------------

@SETTINGS
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_decode_json_is_a_value_or_a_value_error(body):
    try:
        data = decode_json(body)
    except ValueError:
        return
    json.dumps(data, allow_nan=False)  # strict JSON out: no NaN/Infinity floats survive


def test_decode_json_depth_and_encoding():
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(b"[" * 100_000 + b"]" * 100_000)
    assert decode_json(b'{"t":"Portr\xe4t","n":NaN}') == {"t": "Portr\ufffdt", "n": None}
    assert decode_json(b'\xef\xbb\xbf{"a":1}') == {"a": 1}


@SETTINGS
@given(json_values)
def test_object_ids_are_int64_or_dropped(data):
    try:
        ids = parse_object_ids(data)
    except ValueError:
        return
    assert all(isinstance(i, int) and 0 < i <= MAX_OBJECT_ID for i in ids)
    v = as_object_id(data)
    assert v is None or 0 < v <= MAX_OBJECT_ID


# ---- the journal reader ------------------------------------------------------------------

line = st.one_of(st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda i, s: json.dumps({"id": i, "status": s}).encode(),
                           st.one_of(st.integers(-2 ** 70, 2 ** 70), json_values),
                           st.one_of(st.sampled_from(["ok", "not_found", "bogus"]), json_values)),
                 st.just(b'{"id":1,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"))


@SETTINGS
@given(st.lists(line, max_size=12))
def test_journal_reader_and_index_never_raise(tmp_path_factory, lines):
    from metfaces_build.stages.fetch import STATUSES, JournalIndex, compact_journal
    p = tmp_path_factory.mktemp("j") / "objects.jsonl"
    p.write_bytes(b"\n".join(lines))
    rows = list(read_jsonl(p))
    assert all(isinstance(r, dict) for r in rows)
    idx = JournalIndex(p)
    assert all(0 < int(i) <= MAX_OBJECT_ID for i in idx.ids)
    kept = compact_journal(p)
    assert kept == len(idx.ids) or not p.read_bytes().endswith(b"\n") or kept <= len(rows)
    for r in read_jsonl(p):  # the compacted journal holds only well-formed id lines
        assert as_object_id(r["id"]) is not None and not isinstance(r["id"], str)
    assert all(s in STATUSES for s in idx.statuses(idx.ids))
    assert not any(isinstance(v, float) and math.isnan(v) for r in rows for v in r.values())
