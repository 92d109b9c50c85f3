"""A large review page: its faces in data files beside it, its cards in pages.

The same six-face work directory as test_review.py, written with two faces per data file
and two cards per page, so every path of a 200,000-face page runs on six faces."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from metfaces_build.stages import review
from metfaces_build.stages.filter import OVERRIDES_FILE

from test_review import FILTER_FLAGS, decisions, make_review_work, page_data

SMALL = {"chunk_faces": 2, "page_cards": 2}


def chunked_faces(page: Path) -> tuple:
    """(head, faces, objects) of a page whose data is in files: the files read back."""
    head = page_data(page)
    c = head["chunks"]
    faces, objects = [], {}
    for n in range(c["count"]):
        parts = {}
        for kind in ("cards", "details"):
            text = (page.parent / c["dir"] / f"{kind}-{n:04d}.js").read_text(encoding="utf-8")
            m = re.fullmatch(r'metfacesReview\("(\w+)",(\d+),(".*")\);\n', text, re.S)
            assert m and m.group(1) == kind and int(m.group(2)) == n
            parts[kind] = json.loads(json.loads(m.group(3)))
        objects.update(parts["cards"]["objects"])
        for card, detail in zip(parts["cards"]["rows"], parts["details"]["rows"], strict=True):
            f = {**dict(zip(parts["cards"]["fields"], card)), **dict(zip(parts["details"]["fields"], detail))}
            faces.append({k: v for k, v in f.items() if not (k == "stored" and v is None)})
    assert len(faces) == c["faces"]
    return head, faces, objects


@pytest.fixture
def work(tmp_path, cli):
    return make_review_work(tmp_path, cli)


def test_data_files_hold_the_same_entries_as_a_small_page(work):
    whole = review.collect(work, work, work / "report")
    paths = review.write_review(work, **SMALL)
    head, faces, objects = chunked_faces(paths.page)
    assert "faces" not in head and head["chunks"]["count"] == 3 and head["chunks"]["size"] == 2
    assert faces == whole["faces"] and objects == whole["objects"]
    assert head["overrides"] == whole["overrides"] and head["page_cards"] == 2
    assert "'self'" in paths.page.read_text().split("script-src")[1].split(";")[0]
    first = head["chunks"]["dir"]
    # a rerun: a new generation of files, the old one gone, no thumbnail made again
    again = review.write_review(work, **SMALL)
    second = page_data(again.page)["chunks"]["dir"]
    assert second != first and not (paths.page.parent / first).exists()
    assert again.thumbs_made == 0 and (paths.page.parent / second / "details-0002.js").is_file()
    # a small page again: every face inline, no data files left
    small = review.write_review(work)
    assert len(page_data(small.page)["faces"]) == 6
    assert "'self'" not in small.page.read_text().split("script-src")[1].split(";")[0]
    assert list((paths.page.parent / "review-data").iterdir()) == []


def test_a_failed_run_leaves_the_page_and_no_half_written_files(work, monkeypatch):
    first = review.write_review(work, **SMALL)
    before = first.page.read_bytes()

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(review.ThumbRun, "make", broken)
    with pytest.raises(OSError):
        review.write_review(work, **SMALL)
    assert first.page.read_bytes() == before
    assert [p.name for p in (first.page.parent / "review-data").iterdir()] == \
        [page_data(first.page)["chunks"]["dir"].split("/")[1]]


# ---- in Chromium ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from metfaces_build.infra.headless import Browser, find_chromium
    if not find_chromium():
        if os.environ.get("METFACES_REQUIRE_BROWSER") == "1":
            pytest.fail("METFACES_REQUIRE_BROWSER=1 but no Chromium found")
        pytest.skip("no Chromium found")
    with Browser.launch() as b:
        yield b


ON_PAGE = "[...document.querySelectorAll('[data-face]')].map(c => c.dataset.face)"


def choose(page, select_id: str, value: str) -> None:
    page.eval(f"""(() => {{ const s = document.getElementById({json.dumps(select_id)});
        s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()""")


def test_paged_cards_keyboard_details_filters_and_save(browser, work, tmp_path, cli):
    (work / OVERRIDES_FILE).write_text(json.dumps({"faces": {"104-00": "reject", "999-00": "keep"}}))
    assert cli("filter", "--work", work, *FILTER_FLAGS)[0] == 1  # 999-00: not a face, kept
    paths = review.write_review(work, **SMALL)
    truth = decisions(work)
    order = ["100-00", "101-00", "102-00", "103-00", "103-01", "104-00"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(downloads)
    p = browser.new_page(width=1280, height=900)
    try:
        p.goto(paths.page.resolve().as_uri())
        deadline = time.monotonic() + 10
        while p.eval("document.body.dataset.ready") != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.eval("document.body.dataset.ready") == "1"
        assert p.eval("performance.getEntriesByName('review-first-cards').length") == 1
        # two cards a page, three pages, every face counted
        assert p.eval(ON_PAGE) == order[:2]
        assert p.eval("document.getElementById('count').textContent").startswith("6 of 6 faces shown")
        assert p.eval("document.getElementById('pages').textContent") == "page 1 of 3"
        # the keyboard crosses pages
        for _ in range(3):
            p.press("ArrowRight")
        assert p.eval("document.querySelector('.card.sel').dataset.face") == "102-00"
        assert p.eval(ON_PAGE) == order[2:4]
        # opening a card loads its landmarks and measures from its data file
        p.press("Enter")
        deadline = time.monotonic() + 10
        while p.eval("document.querySelectorAll('#v-full circle').length") != 68 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.eval("document.querySelectorAll('#v-zoom circle').length") == 136
        assert p.eval("document.querySelector('#info h2').textContent") == "102-00"
        p.press("ArrowRight")  # the next face, still open
        assert p.eval("document.querySelector('#info h2').textContent") == "103-00"
        p.press("Escape")
        # a decision in force about a face on another page shows when its page does
        p.click("#next")
        assert p.eval(ON_PAGE) == order[4:]
        assert p.eval("document.querySelector('[data-face=\"104-00\"]').dataset.mark") == "reject"
        # filters run over every face, not the page; the selected face (103-01) stays in view
        assert p.eval("document.querySelector('.card.sel').dataset.face") == "103-01"
        choose(p, "f-decision", "rejected")
        rejected = [k for k in order if truth[k][0] == "rejected"]
        assert rejected == ["101-00", "102-00", "103-01", "104-00"]
        assert p.eval(ON_PAGE) == rejected[2:]
        assert p.eval("document.getElementById('pages').textContent") == "page 2 of 2"
        n = sum(1 for v in truth.values() if v[0] == "rejected")
        assert p.eval("document.getElementById('count').textContent").startswith(f"{n} of 6 faces shown")
        choose(p, "f-decision", "")
        assert p.eval(ON_PAGE) == order[4:]
        p.click("#prev")
        p.click("#prev")
        assert p.eval(ON_PAGE) == order[:2] and p.eval("document.getElementById('prev').disabled")
        # mark a face, save: the decisions about faces not shown (other pages, absent) too
        p.click('[data-face="100-00"] .fid')
        p.press("k")
        p.press("Escape")
        p.click("#save")
        target = downloads / "overrides.json"
        deadline = time.monotonic() + 15
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(target.read_text()) == \
            {"faces": {"100-00": "keep", "104-00": "reject", "999-00": "keep"}}
        assert p.console_errors() == []
    finally:
        browser.send("Target.closeTarget", {"targetId": p.target})


def test_thumbnails_a_killed_run_journaled_are_review_s_to_delete(work):
    """Each chunk's thumbnails are appended to a journal before they are written; a run
    killed before the record is rewritten leaves them there, and the next run treats them
    as its own (an unused one goes), never a person's file."""
    paths = review.write_review(work, **SMALL)
    folder = paths.thumbs
    assert not (folder / "made-by-review.journal").exists()
    recorded = set(json.loads((folder / "made-by-review.json").read_text())["thumbs"])
    assert recorded == {p.name for p in folder.glob("*.jpg")}
    (folder / "100-00-qdeadbeef00.jpg").write_bytes(b"\xff\xd8 left by a killed run")
    (folder / "mine.jpg").write_bytes(b"\xff\xd8 a person's")
    (folder / "made-by-review.journal").write_text("100-00-qdeadbeef00.jpg\n")
    again = review.write_review(work, **SMALL)
    assert again.thumbs_made == 0
    assert {p.name for p in folder.glob("*.jpg")} == recorded | {"mine.jpg"}
    assert not (folder / "made-by-review.journal").exists()
