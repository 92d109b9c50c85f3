"""The review page in a real browser: headless Chromium over the DevTools protocol.

Needs Debian's `chromium` (or $METFACES_CHROMIUM). Without one these tests skip, except
when METFACES_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure."""
from __future__ import annotations

import json
import os
import time

import pytest

from metfaces_build.infra.headless import Browser, BrowserError, find_chromium
from metfaces_build.stages import review
from metfaces_build.stages.filter import OVERRIDES_FILE

from test_review import FILTER_FLAGS, decisions, make_review_work


@pytest.fixture(scope="module")
def browser():
    if not find_chromium():
        why = ("no Chromium found: install Debian's `chromium` package (apt-get install "
               "chromium) or set METFACES_CHROMIUM to a Chromium/Chrome binary")
        if os.environ.get("METFACES_REQUIRE_BROWSER") == "1":
            pytest.fail(f"METFACES_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    with Browser.launch() as b:
        yield b


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    from metfaces_build.app.cli import main

    def cli(*argv):
        return main([str(a) for a in argv]), "", ""
    w = make_review_work(tmp_path_factory.mktemp("review"), cli)
    review.write_review(w)
    return w


@pytest.fixture
def page(browser, work):
    p = browser.new_page(width=1280, height=900)
    p.goto((work / "report" / "review.html").resolve().as_uri())
    assert p.eval("document.body.dataset.ready") == "1"
    yield p
    assert p.console_errors() == []
    browser.send("Target.closeTarget", {"targetId": p.target})


VISIBLE = "[...document.querySelectorAll('.card:not([hidden])')].map(c => c.dataset.face)"


def choose(page, select_id: str, value: str) -> None:
    page.eval(f"""(() => {{ const s = document.getElementById({json.dumps(select_id)});
        s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()""")


def test_one_card_per_face_with_the_right_decision(page, work):
    cards = page.eval("Object.fromEntries([...document.querySelectorAll('[data-face]')]"
                      ".map(c => [c.dataset.face, c.dataset.decision]))")
    assert cards == {k: v[0] for k, v in decisions(work).items()}
    assert page.eval("document.querySelectorAll('[data-face]').length") == 6
    assert page.eval("document.getElementById('count').textContent").startswith("6 of 6 faces shown")
    # reasons with measured value and limit are on the card
    text = page.eval("document.querySelector('[data-face=\"102-00\"] .fails').textContent")
    assert text == "score: 0.1 needs >= 0.3 (cnn)"
    # thumbnails load (no broken image) and the escaped title shows as text
    page.eval("window.scrollTo(0, document.body.scrollHeight)")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not page.eval(
            "[...document.images].every(i => i.complete && i.naturalWidth > 0)"):
        time.sleep(0.1)
    assert page.eval("[...document.images].every(i => i.complete && i.naturalWidth === 192)")
    assert page.eval("window.pwned === undefined")
    assert "</script>" in page.eval("document.querySelector('[data-face=\"100-00\"] .meta').textContent")


def test_filtering_by_failed_test_decision_and_department(page, work):
    truth = decisions(work)
    choose(page, "f-test", "resolution")
    assert page.eval(VISIBLE) == [k for k, v in truth.items() if "resolution" in v[1]] == ["101-00", "103-01"]
    assert page.eval("document.getElementById('count').textContent").startswith("2 of 6 faces shown")
    choose(page, "f-test", "")
    choose(page, "f-decision", "kept")
    assert page.eval(VISIBLE) == [k for k, v in truth.items() if v[0] == "kept"]
    choose(page, "f-dept", "European Paintings")
    assert page.eval(VISIBLE) == [k for k, v in truth.items() if v[0] == "kept" and k[:3] in ("100", "103")]
    choose(page, "f-decision", "")
    choose(page, "f-dept", "")
    choose(page, "sort", "score")
    faces = {f["id"]: f for f in json.loads(page.eval("document.getElementById('face-data').textContent"))["faces"]}
    assert page.eval(VISIBLE) == sorted(faces, key=lambda k: -faces[k]["score"])
    choose(page, "sort", "-qsize")
    shown = page.eval(VISIBLE)
    assert [faces[k]["qsize"] for k in shown] == sorted(f["qsize"] for f in faces.values())


def test_keyboard_and_opening_a_card(page):
    page.press("ArrowRight")
    assert page.eval("document.querySelector('.card.sel').dataset.face") == "100-00"
    page.press("ArrowRight")
    page.press("ArrowRight")
    assert page.eval("document.querySelector('.card.sel').dataset.face") == "102-00"
    page.press("ArrowLeft")
    assert page.eval("document.querySelector('.card.sel').dataset.face") == "101-00"
    page.press("r")
    assert page.eval("document.querySelector('[data-face=\"101-00\"]').dataset.mark") == "reject"
    page.press("u")
    assert page.eval("document.querySelector('[data-face=\"101-00\"]').dataset.mark") is None
    page.press("Enter")
    assert page.eval("document.getElementById('modal').classList.contains('open')")
    # the original with the face box and 68 landmarks; zoom: stored + regenerated
    assert page.eval("document.querySelectorAll('#v-full circle').length") == 68
    assert page.eval("document.querySelectorAll('#v-full rect').length") == 1
    assert page.eval("document.querySelectorAll('#v-zoom circle').length") == 136
    assert page.eval("document.querySelector('#v-full image').getAttribute('href')") == "../originals/101.png"
    assert "resolution" in page.eval("document.getElementById('info').textContent")
    page.press("ArrowRight")  # next face, still open
    assert page.eval("document.querySelector('#info h2').textContent") == "102-00"
    page.press("Escape")
    assert not page.eval("document.getElementById('modal').classList.contains('open')")


def test_mark_two_faces_save_and_apply(page, browser, work, tmp_path, cli):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(downloads)
    before = decisions(work)
    page.click('[data-face="100-00"]')      # opens it
    page.press("r")
    page.press("Escape")
    page.click('[data-face="103-01"] .fid')
    page.press("k")
    page.press("Escape")
    marks = page.eval("Object.fromEntries([...document.querySelectorAll('[data-mark]')]"
                      ".map(c => [c.dataset.face, c.dataset.mark]))")
    assert marks == {"100-00": "reject", "103-01": "keep"}
    choose(page, "f-decision", "marked")
    assert page.eval(VISIBLE) == ["100-00", "103-01"]
    page.click("#save")
    target = downloads / "overrides.json"
    deadline = time.monotonic() + 15
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    saved = json.loads(target.read_text())
    assert saved == {"faces": {"100-00": "reject", "103-01": "keep"}}

    rc, out, err = cli("filter", "--work", work, "--overrides", target, *FILTER_FLAGS)
    assert rc == 0, err
    after = decisions(work)
    assert {k for k in before if before[k] != after[k]} == {"100-00", "103-01"}
    assert after["100-00"] == ("rejected", ["override"]) and after["103-01"] == ("kept", [])
    # the regenerated page starts from the decisions in force and saves them all
    review.write_review(work)
    page.goto((work / "report" / "review.html").resolve().as_uri())
    assert page.eval("document.querySelector('[data-face=\"100-00\"]').dataset.decision") == "rejected"
    assert page.eval("document.querySelector('[data-face=\"100-00\"]').dataset.mark") == "reject"
    (work / OVERRIDES_FILE).unlink()  # leave the shared work directory as it was
    assert cli("filter", "--work", work, *FILTER_FLAGS)[0] == 0
    review.write_review(work)


def test_the_error_check_catches_errors(browser, tmp_path):
    """What the page fixture asserts empty does see console errors, exceptions and broken loads."""
    (tmp_path / "bad.html").write_text("<img src='missing.jpg'><script>console.error('boom');"
                                       "setTimeout(() => { throw new Error('late') }, 10)</script>")
    p = browser.new_page()
    p.goto((tmp_path / "bad.html").as_uri())
    deadline = time.monotonic() + 5
    while len(p.console_errors()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    errors = p.console_errors()
    assert any("boom" in e for e in errors) and any("late" in e for e in errors)
    assert any("missing.jpg" in e for e in errors)
    with pytest.raises(BrowserError, match="JavaScript error"):
        p.eval("no_such_function()")
    browser.send("Target.closeTarget", {"targetId": p.target})


def test_many_faces_fill_cards_as_they_scroll_into_view(browser, work):
    """Beyond the first screen a card is an empty element (with its hooks) until it comes
    near the viewport: the page stays light with 10,000 faces (tools/bench_review.py)."""
    from test_review import page_data
    data = page_data(work / "report" / "review.html")
    base = data["faces"]
    data["faces"] = [dict(base[k % len(base)], id=f"{900000 + k}-00") for k in range(600)]
    big = work / "report" / "big.html"
    big.write_text(review.render_page(data), encoding="utf-8")
    p = browser.new_page(width=1280, height=900)
    try:
        p.goto(big.resolve().as_uri())
        assert p.eval("document.querySelectorAll('[data-face]').length") == 600
        assert p.eval("document.querySelectorAll('.card .fid').length") < 200
        last = '[data-face="900599-00"]'
        assert p.eval(f"document.querySelector('{last}').children.length") == 0
        p.eval(f"document.querySelector('{last}').scrollIntoView()")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not p.eval(f"!!document.querySelector('{last} .fid')"):
            time.sleep(0.05)
        assert p.eval(f"document.querySelector('{last} .fid').textContent") == "900599-00"
        choose(p, "f-decision", "rejected")
        n = sum(1 for f in data["faces"] if f["decision"] == "rejected")
        assert len(p.eval(VISIBLE)) == n
        assert p.console_errors() == []
    finally:
        browser.send("Target.closeTarget", {"targetId": p.target})
        big.unlink()


def test_the_page_saves_decisions_about_faces_it_does_not_show(browser, tmp_path, cli):
    """A decision in overrides.json about a face an update withdrew is not on the page,
    yet saving from the page keeps it, and applying the file keeps it in force."""
    w = make_review_work(tmp_path / "own", cli)
    faces = json.loads((w / "faces.json").read_text())
    (w / OVERRIDES_FILE).write_text(json.dumps({"faces": {"100-00": "reject", "104-00": "reject"}}))
    (w / "faces.json").write_text(json.dumps([f for f in faces if f["obj_id"] != "100"]))
    assert cli("filter", "--work", w, *FILTER_FLAGS)[0] == 1  # 100-00: stale, reported
    review.write_review(w)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(downloads)
    p = browser.new_page(width=1280, height=900)
    try:
        p.goto((w / "report" / "review.html").resolve().as_uri())
        assert p.eval("document.body.dataset.ready") == "1"
        assert p.eval("document.querySelector('[data-face=\"100-00\"]')") is None
        assert p.eval("document.querySelector('[data-face=\"104-00\"]').dataset.mark") == "reject"
        p.click('[data-face="101-00"] .fid')
        p.press("k")
        p.press("Escape")
        assert "3 decisions" in p.eval("document.getElementById('save').textContent")
        p.click("#save")
        target = downloads / "overrides.json"
        deadline = time.monotonic() + 15
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        saved = json.loads(target.read_text())
        assert saved == {"faces": {"100-00": "reject", "101-00": "keep", "104-00": "reject"}}
        assert p.console_errors() == []
    finally:
        browser.send("Target.closeTarget", {"targetId": p.target})
    rc, _, err = cli("filter", "--work", w, "--overrides", target, *FILTER_FLAGS)
    assert rc == 1 and "100-00" in err
    assert json.loads((w / OVERRIDES_FILE).read_text()) == saved
    (w / "faces.json").write_text(json.dumps(faces))  # the Met restores object 100
    assert cli("filter", "--work", w, *FILTER_FLAGS)[0] == 0
    assert decisions(w)["100-00"] == ("rejected", ["override"])
    assert decisions(w)["101-00"] == ("kept", [])
