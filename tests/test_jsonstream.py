"""Face lists read and written item by item: the same values and bytes as whole-file JSON."""
from __future__ import annotations

import json

import pytest

from metfaces_build.core.errors import UsageError
from metfaces_build.core.records import parse_faces
from metfaces_build.infra import jsonstream
from metfaces_build.infra.faces import load_faces
from metfaces_build.infra.files import atomic_write_json, read_json

from synthfaces import face_json, place

ITEMS = [{"a": 1, "s": "] , [ \" }{ \\", "u": "É\u2603\U0001F600", "n": [1.5e10, -0, None]},
         123456789, "tail ]", [], {}, [[1, [2]], {"x": {"y": [3]}}], True, None, 0.25]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
def test_items_as_whole_json_reads_them_for_any_chunk(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(jsonstream, "CHUNK", chunk)
    p = tmp_path / "l.json"
    for indent in (None, 1, 4):
        p.write_text(json.dumps(ITEMS, indent=indent, ensure_ascii=indent is None))
        assert list(jsonstream.read_json_items(p)) == ITEMS
    p.write_text(" \n[ ] \n")
    assert list(jsonstream.read_json_items(p)) == []
    p.write_text("[NaN, 1]")  # not JSON: becomes null as in files.loads
    assert list(jsonstream.read_json_items(p)) == [None, 1]


def test_list_written_item_by_item_is_byte_identical(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for items in (ITEMS, [], [{"k": "line\nbreak", "l": [1, {"m": []}]}]):
        atomic_write_json(a, items)
        assert jsonstream.atomic_write_json_list(b, iter(items)) == len(items)
        assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("text", ["[1, 2", "[1 2]", "[1,]", "[1] x", "[{\"a\": }]", "[", "[\"\udc80\"]"])
def test_malformed_list_is_a_usage_error(tmp_path, monkeypatch, text):
    monkeypatch.setattr(jsonstream, "CHUNK", 2)
    p = tmp_path / "bad.json"
    p.write_bytes(text.encode("utf-8", "surrogatepass"))
    with pytest.raises(UsageError, match="not valid JSON"):
        list(jsonstream.read_json_items(p, "faces file"))


def test_other_values_are_read_whole(tmp_path):
    p = tmp_path / "o.json"
    p.write_text('{"faces": [1]}')
    assert jsonstream.read_json_items(p) == {"faces": [1]}
    with pytest.raises(UsageError, match="not found"):
        jsonstream.read_json_items(tmp_path / "missing.json")


def test_load_faces_streamed_equals_whole_parse(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK", 100)
    faces = [face_json(str(100 + i), i % 3, place(40 + i, 200, 200), score=0.5 + i / 100)
             for i in range(12)]
    faces.insert(5, {"obj_id": "bad"})           # invalid entry
    faces.append(dict(faces[0]))                 # duplicate key
    p = tmp_path / "faces.json"
    p.write_text(json.dumps(faces, indent=1))
    got = load_faces(p, skip_bad=True)
    want = parse_faces(read_json(p))
    assert got.faces == want.faces and len(got.faces) == 12
    assert [(b.index, b.reason) for b in got.bad] == [(b.index, b.reason) for b in want.bad]
    assert len(got.bad) == 2
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"faces": faces[:3]}))
    assert load_faces(wrapped).faces == want.faces[:3]


def test_packed_faces_write_and_measure_the_same(tmp_path):
    from metfaces_build.core import geometry
    faces = [face_json(str(100 + i), 0, place(40 + 3 * i, 200, 200, angle=i), shrink=1 + i % 3)
             for i in range(5)]
    p = tmp_path / "faces.json"
    p.write_text(json.dumps(faces))
    plain, packed = load_faces(p).faces, load_faces(p, pack=True).faces
    for a, b in zip(plain, packed):
        assert b.to_json() == a.to_json() and json.dumps(b.to_json()) == json.dumps(a.to_json())
        assert b.face_spec == a.face_spec and type(b.face_spec) is not type(a.face_spec)
        assert b.face_spec.landmarks.nbytes == 68 * 2 * 8
        la = geometry.landmarks_full(a.face_spec.landmarks, a.face_spec.shrink)
        lb = geometry.landmarks_full(b.face_spec.landmarks, b.face_spec.shrink)
        assert la.dtype == lb.dtype and (la == lb).all()
    assert packed[0].face_spec != packed[1].face_spec


def test_filter_cache_written_entry_by_entry_is_byte_identical(tmp_path):
    from metfaces_build.stages import filter as flt
    images = {"k1": {"faces": [{"qsize": 1.5, "checks": [["overlap", True, {"iou": 0.0}, "IoU <= 0.3 é"]],
                                "measures": None}]}, "k\"2": {"faces": []}}
    for held in (images, {k: json.dumps(v) for k, v in images.items()}, {}):
        want = {k: v if isinstance(v, dict) else json.loads(v) for k, v in held.items()}
        atomic_write_json(tmp_path / "a.json", {"version": flt.CACHE_VERSION, "images": want}, indent=None)
        flt.write_cache(tmp_path / "b.json", held)
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_work_outcomes_counted_line_by_line(tmp_path):
    from collections import Counter

    from metfaces_build.infra.workdir import Work, latest_records, status_counts
    w = Work(tmp_path)
    w.objects_jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"id": 1, "status": "http_error"}, {"id": 2, "status": "ok"}, {"id": 1, "status": "ok"},
        {"id": 3}, [1, 2], {"status": "ok"}]) + "\n")
    w.detect_journal.write_text("\n".join(json.dumps(r) for r in [
        {"obj_id": "1", "status": "ok", "faces": [{}, {}]}, {"obj_id": "2", "status": "no_face", "faces": []},
        {"obj_id": "1", "status": "ok", "faces": [{}]}, {"obj_id": "3", "status": "ok", "faces": "x"}]) + "\n")
    assert w.face_count() == 1 and w.outcomes() == {
        "fetch": status_counts(latest_records(w.objects_jsonl, "id").values()),
        "detect": Counter({"ok": 2, "no_face": 1})}
    assert w.outcomes()["fetch"] == Counter({"ok": 2, "?": 1})
    w.images_dir.mkdir()
    (w.images_dir / "aligned.json").write_text(json.dumps([{"status": "ok"}, {"status": "failed"}, 3]))
    assert w.outcomes()["align"] == Counter({"ok": 1, "failed": 1})
    (w.images_dir / "aligned.json").write_text('[{"status": "ok"}, ')
    assert "align" not in w.outcomes()
    (w.images_dir / "aligned.json").write_text('{"status": "ok"}')
    assert "align" not in w.outcomes()
