"""Typed readers of rejected.jsonl and aligned.json (infra/readers.py): records with
checked shapes, and damage read the way each caller always tolerated it."""
from __future__ import annotations

import json

import pytest

from metfaces_build.core.errors import UsageError
from metfaces_build.core.records import AlignEntry, FaceKey, Rejection
from metfaces_build.infra.readers import (aligned_entries, manifest_complete, previous_aligned,
                                          read_aligned, read_rejections, scan_aligned)
from metfaces_build.infra.workdir import ALIGN_JOURNAL, MANIFEST


def _entry(obj_id, idx, status="ok", **kw):
    return {"record": {"obj_id": obj_id, "face_idx": idx, "source_path": "a.jpg"},
            "output": f"{obj_id}-{idx:02d}.png", "status": status, "reason": "",
            "file_md5": "f" * 32, "pixel_md5": "p" * 32, "params": {"size": 8},
            "versions": {"numpy": "1"}, "inputs": ["../filtered.json"], **kw}


def test_rejections_typed_and_damaged_lines_left_out(tmp_path):
    path = tmp_path / "rejected.jsonl"
    lines = [json.dumps({"obj_id": 5, "face_idx": 1, "reasons": ["yaw", 3], "values": []}),
             "{not json",
             json.dumps({"obj_id": "6", "face_idx": "1", "reasons": ["yaw"]}),  # no integer idx
             json.dumps({"face_idx": 0, "reasons": ["yaw"]}),                   # no obj_id
             json.dumps({"obj_id": "7", "face_idx": 0, "reasons": ["resolution"],
                         "values": {"qsize": 100}, "limits": {"resolution": 1024}})]
    path.write_text("\n".join(lines) + "\n")
    got = list(read_rejections(path))
    assert got == [Rejection("5", 1, ["yaw"], {}, {}),
                   Rejection("7", 0, ["resolution"], {"qsize": 100}, {"resolution": 1024})]
    assert list(read_rejections(tmp_path / "absent.jsonl")) == []


def test_align_entry_shapes():
    e = AlignEntry.from_json(_entry("436015", 0, extra_key=1))
    assert e.key == FaceKey("436015", 0) and e.key == ("436015", 0)
    assert (e.status, e.file_md5, e.params, e.inputs) == ("ok", "f" * 32, {"size": 8},
                                                          ["../filtered.json"])
    assert e.to_json()["extra_key"] == 1  # kept verbatim for the next manifest
    odd = AlignEntry.from_json({"record": {"obj_id": 3, "face_idx": 2}, "status": 7,
                                "params": [1], "versions": "x", "inputs": "a.json"})
    assert odd.key == FaceKey("3", 2)
    assert (odd.status, odd.params, odd.versions, odd.inputs) == ("", None, None, None)
    for bad in (["a list"], None, 5, {"record": {"obj_id": None, "face_idx": 0}},
                {"record": {"obj_id": "1", "face_idx": "0"}}, {"record": "x"}):
        assert AlignEntry.from_json(bad).key is None


def test_manifest_readers_on_missing_damaged_and_good(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        list(aligned_entries(tmp_path))
    assert list(scan_aligned(tmp_path)) == [] and read_aligned(tmp_path) is None
    (tmp_path / MANIFEST).write_text(json.dumps({"not": "a list"}))
    with pytest.raises(UsageError, match="expected a list"):
        list(aligned_entries(tmp_path))
    assert list(scan_aligned(tmp_path)) == [] and read_aligned(tmp_path) is None
    (tmp_path / MANIFEST).write_text(json.dumps([_entry("1", 0), "junk", _entry("2", 0)]))
    for got in (list(aligned_entries(tmp_path)), list(scan_aligned(tmp_path)),
                read_aligned(tmp_path)):
        assert [e.key for e in got] == [FaceKey("1", 0), None, FaceKey("2", 0)]
        assert got[1].status == "" and got[1].raw == "junk"
    # cut short mid-list: the strict reader says so, the scanning one stops at the damage
    (tmp_path / MANIFEST).write_text(json.dumps([_entry("1", 0), _entry("2", 0)])[:-40])
    with pytest.raises(UsageError, match="not valid JSON"):
        list(aligned_entries(tmp_path))
    assert [e.key for e in scan_aligned(tmp_path)] == [FaceKey("1", 0)]
    assert read_aligned(tmp_path) is None


def test_previous_aligned_journal_wins(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps([_entry("1", 0), _entry("2", 0, "error"),
                                                 {"record": "no face"}]))
    (tmp_path / ALIGN_JOURNAL).write_text(json.dumps(_entry("2", 0, reason="again")) + "\n"
                                          + "{torn line\n")
    prev = previous_aligned(tmp_path)
    assert list(prev) == [FaceKey("1", 0), FaceKey("2", 0)]
    assert prev[("2", 0)].status == "ok" and prev[("2", 0)].raw["reason"] == "again"
    assert previous_aligned(tmp_path / "absent") == {}


def test_previous_aligned_gives_back_each_entry_as_written(tmp_path):
    """Earlier entries are held compressed, one at a time (a 200,000-face rerun does not
    hold 200,000 parsed entries), and come back equal, keys in their order, whatever
    they hold (a note, text beyond ASCII, nested values, large numbers)."""
    odd = _entry("9", 3, note={"by": "Zoë ✓", "list": [1, 2.5, None, True]}, big=2 ** 70)
    entries = [_entry("1", 0), odd, _entry("2", 1, "error", reason="x" * 5000)]
    (tmp_path / MANIFEST).write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    prev = previous_aligned(tmp_path)
    assert len(prev) == 3 and FaceKey("9", 3) in prev and ("9", 4) not in prev
    for e in entries:
        got = prev[AlignEntry.from_json(e).key]
        assert got.raw == e and list(got.raw) == list(e)
        assert json.dumps(got.raw) == json.dumps(e)
    assert prev.get(("5", 0)) is None
    assert [k for k, _ in prev.items()] == [("1", 0), ("9", 3), ("2", 1)]


def test_damaged_manifest_gives_no_earlier_entries_but_the_journal(tmp_path):
    """As before the manifest was streamed: a manifest cut short, or not a list, counts
    for nothing (not its entries before the damage); the journal still does."""
    (tmp_path / ALIGN_JOURNAL).write_text(json.dumps(_entry("3", 0)) + "\n")
    for text in (json.dumps([_entry("1", 0), _entry("2", 0)])[:-40], '{"a": 1}', "not json"):
        (tmp_path / MANIFEST).write_text(text)
        assert list(previous_aligned(tmp_path)) == [("3", 0)]
        assert not manifest_complete(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps([_entry("1", 0), "junk"]))
    assert list(previous_aligned(tmp_path)) == [("1", 0), ("3", 0)]
    assert manifest_complete(tmp_path) and not manifest_complete(tmp_path / "absent")
    (tmp_path / MANIFEST).write_text("[]")
    assert manifest_complete(tmp_path)
