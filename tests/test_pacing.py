"""Adaptive pacing (met/pacing.py) against hidden limits (met/protection.py), in virtual time.

The pacer and the emulator's front end share one clock here, a fake one: a run of 300
requests against a 25 s block costs microseconds, and the figures are exact.
"""
from __future__ import annotations

import json
import threading
import time

import pytest

from metfaces_build.met import pacing as pm
from metfaces_build.met.pacing import Pacer, Pacing, PaceEstimate, host_of, load_paces, pace_file
from metfaces_build.met.protection import FrontEnd, Protection


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def simulate(protection, n, pacer=None, t=None, cooldown=30.0, latency=0.05, start=pm.DEFAULT_START,
             block_rate=None):
    """`n` record requests one after another (each takes `latency` s) through `pacer`
    against a front end with `protection`; a refused request pauses for `cooldown` s (a
    block page has no Retry-After) and is sent again. (seconds, front end, pacer, time of
    the first block or None)."""
    t = t or FakeTime()
    p = pacer or Pacer(start, clock=t.clock, sleep=t.sleep, ceiling=pm.DEFAULT_CEILING,
                       block_rate=block_rate)
    fe = FrontEnd(protection)
    t0, done, first_block = t.now, 0, None
    while done < n:
        p.acquire()
        if fe.admit(t.now):
            t.now += latency
            p.succeeded()
            done += 1
        else:
            first_block = t.now - t0 if first_block is None else first_block
            p.cool_down(cooldown)
    return t.now - t0, fe, p, first_block


# the issue's three hidden limits: (protection, objects, allowed time / sustainable time)
LIMITS = [(Protection(2.0, 5.0, 25.0), 300, 1.4),
          (Protection(0.5, 10.0, 25.0), 150, 1.4),
          (Protection(10.0, 3.0, 25.0), 150, 2.0)]


@pytest.mark.parametrize("protection,n,allowed", LIMITS, ids=["2/s", "0.5/s", "10/s"])
def test_default_pacing_finds_the_hidden_limit_with_few_blocks(protection, n, allowed):
    took, fe, p, _ = simulate(protection, n)
    sustainable = n / protection.rate
    assert fe.blocks <= 3, (fe.blocks, took)
    assert took <= allowed * sustainable, (took / sustainable, fe.blocks)
    if fe.blocks:  # it learned where the limit is and holds below it
        assert p.held_rate() <= protection.rate * 1.05 and p.lost >= 25 * fe.blocks
        assert p.block_rate >= protection.rate * 0.9  # ... without a panic far below it


@pytest.mark.parametrize("protection,n,allowed", LIMITS, ids=["2/s", "0.5/s", "10/s"])
def test_second_run_starts_at_the_learned_pace(protection, n, allowed):
    _, _, first, _ = simulate(protection, n)
    took, fe, p, first_block = simulate(protection, n, start=first.held_rate(),
                                        block_rate=first.learned_block_rate())
    assert first_block is None or first_block > 60
    assert took <= 1.15 * n / protection.rate, took / (n / protection.rate)


def test_halving_and_creeping_back_is_what_the_issue_measured():
    """The old policy (halve on a block, creep back up) keeps tripping the limit: the
    reason for the memory. Same simulation, adaptive=False."""
    t = FakeTime()
    old = Pacer(10.0, clock=t.clock, sleep=t.sleep, adaptive=False)
    old.succeeded = _creep(old)
    _, fe_old, _, _ = simulate(Protection(2.0, 5.0, 25.0), 150, pacer=old, t=t)
    _, fe_new, _, _ = simulate(Protection(2.0, 5.0, 25.0), 150)
    assert fe_old.blocks >= 5 and fe_new.blocks <= 1


def _creep(p):
    """The old `succeeded`: +2% of the target rate per success."""
    plain = p.succeeded

    def succeeded():
        plain()
        p.rate = min(p.ceiling, p.rate + 0.02 * p.ceiling)
    return succeeded


def test_a_limit_that_falls_is_learned_again():
    prot = Protection(2.0, 5.0, 25.0, changes=((200.0, 1.0),))
    took, fe, p, _ = simulate(prot, 600)
    assert fe.blocks <= 4
    assert p.held_rate() <= 1.0 and p.learned_block_rate() <= 1.1
    # 400 requests in the first 200 s at 2/s, the other 200 at 1/s; the fall costs two
    # blocks and a hold well below the new limit until a probe (not a target of the issue)
    sustainable = 200 + (600 - 400) / 1.0
    assert took <= 2.0 * sustainable, took / sustainable


def test_a_limit_that_rises_is_found_by_rare_probes():
    prot = Protection(1.0, 5.0, 25.0, changes=((300.0, 3.0),))
    t = FakeTime()
    took, fe, p, _ = simulate(prot, 6000, t=t)
    assert p.held_rate() > 2.0  # found most of the new room ...
    blocks_after_rise = fe.blocks
    assert blocks_after_rise <= 6  # ... probing rarely: a few blocks over more than an hour
    assert took > 3600


def test_a_block_page_right_after_the_pause_is_the_same_block():
    t = FakeTime()
    p = Pacer(4.0, clock=t.clock, sleep=t.sleep, ceiling=9.0)
    for _ in range(40):
        p.acquire()
        p.succeeded()
    blocked_at = t.now
    p.cool_down(30)
    rate, blocks = p.rate, p.blocks
    p.acquire()  # resumes after 30 s: still blocked
    p.cool_down(30)
    assert (p.rate, p.blocks, p.cooldowns) == (rate, blocks, 2)
    p.acquire()
    p.succeeded()
    assert p.lost == pytest.approx(t.now - blocked_at) and p.lost >= 60


def test_hosts_pace_and_block_separately(tmp_path):
    t = FakeTime()
    pacing = Pacing(ceiling=5.0, path=tmp_path / "pace.json", clock=t.clock, sleep=t.sleep)
    api = pacing.for_url("https://collectionapi.metmuseum.org/public/collection/v1/objects/1")
    images = pacing.for_url("https://images.metmuseum.org/CRDImages/ep/original/DT1.jpg")
    assert api is not images and api is pacing.for_host("collectionapi.metmuseum.org")
    api.acquire()
    api.cool_down(30.0)  # a block page from the API host
    before = t.now
    images.acquire()     # the image host does not wait for it
    assert t.now - before < 1.0
    api.acquire()
    assert t.now >= 30.0


def test_progress_shows_each_hosts_pace_and_the_blocks(tmp_path):
    t = FakeTime()
    pacing = Pacing(ceiling=5.0, start=2.0, path=tmp_path / "pace.json", clock=t.clock, sleep=t.sleep)
    pacing.api_host = "api.example"
    api, img = pacing.for_host("api.example"), pacing.for_host("img.example")
    for _ in range(20):
        api.acquire()
        api.succeeded()
    api.cool_down(30.0)
    seen = []

    class Bar:
        def update(self, n, **postfix):
            seen.append(postfix)
    from metfaces_build.met.pacing import PaceProgress
    PaceProgress(Bar(), pacing).update(1, last="ok")
    assert seen == [{"last": "ok", "api": f"{api.rate:.3g}/s", "images": "2/s", "blocks": 1}]
    assert api.rate < api.block_rate and img.rate == 2.0
    line = pacing.summary_line()
    assert line.startswith("pace learned: api.example ") and "1 block, 0 s lost" in line


def test_learned_pace_is_kept_per_host_for_the_next_run(tmp_path):
    path = tmp_path / "cache" / "pace.json"
    t = FakeTime()
    run1 = Pacing(path=path, clock=t.clock, sleep=t.sleep)
    p = run1.for_host("collectionapi.metmuseum.org")
    simulate(Protection(2.0, 5.0, 25.0), 200, pacer=p, t=t)
    run1.for_host("unused.example")  # nothing sent there: not remembered
    run1.save()
    saved = json.loads(path.read_text())["hosts"]
    assert set(saved) == {"collectionapi.metmuseum.org"}
    assert saved["collectionapi.metmuseum.org"]["blocks"] == p.blocks >= 1
    run2 = Pacing(path=path)
    rate, block_rate, source = run2.starting_pace("collectionapi.metmuseum.org")
    assert source == "learned" and rate == pytest.approx(p.held_rate(), abs=1e-3)
    assert block_rate == pytest.approx(p.learned_block_rate(), abs=1e-3)
    assert run2.starting_pace("images.metmuseum.org") == (pm.DEFAULT_START, None, "default start")
    # a lower --rate is still the ceiling; an explicit --rate starts there when nothing is known
    assert Pacing(ceiling=0.5, path=path).starting_pace("collectionapi.metmuseum.org")[0] == 0.5
    assert Pacing(ceiling=50, path=path).starting_pace("new.example") == (50, None, "--rate")
    # blocks add up over runs
    run2.for_host("collectionapi.metmuseum.org").acquire()
    run2.save()
    assert json.loads(path.read_text())["hosts"]["collectionapi.metmuseum.org"]["blocks"] == p.blocks


def test_damaged_pace_file_is_an_empty_memory(tmp_path):
    path = tmp_path / "pace.json"
    for text in ("{not json", '{"hosts": []}', '{"hosts": {"a": {"rate": -1}, "b": {"rate": "x"}}}',
                 '{"hosts": {"c": {"rate": 2, "block_rate": 0}}}'):
        path.write_text(text)
        assert load_paces(path) == {}
    assert load_paces(tmp_path / "missing.json") == {}


def test_pace_file_location(monkeypatch, tmp_path):
    monkeypatch.setenv("METFACES_CACHE_DIR", str(tmp_path / "c"))
    assert pace_file() == tmp_path / "c" / "pace.json"
    monkeypatch.delenv("METFACES_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert pace_file() == tmp_path / "x" / "metfaces-build" / "pace.json"


def test_host_of():
    assert host_of("https://User:pw@Images.MetMuseum.org/CRDImages/a b.JPG") == "images.metmuseum.org"
    assert host_of("http://127.0.0.1:8000/x") == "127.0.0.1:8000"


def test_dry_run_estimate_follows_the_slow_start_and_the_learned_pace(tmp_path):
    pacing = Pacing(path=tmp_path / "pace.json")
    est = PaceEstimate.of(pacing, "collectionapi.metmuseum.org", "images.metmuseum.org")
    lo, hi = est.seconds(150)
    took, fe, _, _ = simulate(Protection(1000.0, 5.0, 25.0), 150)  # no limit in reach
    assert fe.blocks == 0 and lo == pytest.approx(took, rel=0.15)
    assert hi == pytest.approx(lo)  # images in parallel on their own host, same start
    assert "default start" in est.describe()
    same = PaceEstimate.of(pacing, "127.0.0.1:80", "127.0.0.1:80")
    assert same.seconds(150)[1] == pytest.approx(same.api.expected_seconds(300))
    learned = PaceEstimate.of(Pacing(path=_saved(tmp_path, 2.0, 2.2)), "h", "h")
    assert learned.seconds(100)[0] == pytest.approx(50, rel=0.01) and "learned" in learned.describe()


def _saved(tmp_path, rate, block_rate):
    path = tmp_path / "learned.json"
    path.write_text(json.dumps({"hosts": {"h": {"rate": rate, "block_rate": block_rate}}}))
    return path


def test_pacer_is_shared_by_threads_and_grows_only_when_held_back():
    t = FakeTime()
    p = Pacer(1.0, clock=t.clock, sleep=t.sleep, ceiling=9.0)
    for _ in range(20):  # one request every 3 s: the pace is never what holds us back
        p.acquire()
        p.succeeded()
        t.now += 3.0
    assert p.rate == 1.0
    real = Pacer(50, burst=1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [real.acquire() for _ in range(10)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert time.monotonic() - t0 >= 39 / 50 * 0.95


# ---- the front end model ---------------------------------------------------------------------

def test_front_end_blocks_everything_for_the_duration():
    fe = FrontEnd(Protection(2.0, 5.0, 25.0))  # 10 requests within 5 s
    assert all(fe.admit(0.1 * i) for i in range(10))
    assert not fe.admit(1.0) and fe.blocks == 1
    assert not fe.admit(25.9) and fe.blocks == 1  # still the same block
    assert fe.admit(26.1)
    # a steady 2/s is sustainable
    fe = FrontEnd(Protection(2.0, 5.0, 25.0))
    assert all(fe.admit(0.5 * i) for i in range(200)) and fe.blocks == 0


def test_front_end_limit_changes_during_the_run():
    fe = FrontEnd(Protection(2.0, 5.0, 25.0, changes=((100.0, 0.5),)))
    assert all(fe.admit(0.5 * i) for i in range(190))  # 0 .. 94.5 s at 2/s
    assert not all(fe.admit(100 + 0.5 * i) for i in range(20)) and fe.blocks == 1


def test_protection_parse_and_draw():
    p = Protection.parse("2,5,25;60=1;120=4")
    assert (p.rate, p.window, p.duration) == (2, 5, 25)
    assert [p.rate_at(s) for s in (0, 60, 119, 500)] == [2, 1, 1, 4]
    assert Protection.parse("0.5") == Protection(0.5)
    d = Protection.draw(3)
    assert d == Protection.parse("random:3") and 0.5 <= d.rate <= 10 and 2 <= d.window <= 20
    for bad in ("", "0", "1,2,3,4", "2,5,25;x=1", "1;-1=2"):
        with pytest.raises(ValueError):
            Protection.parse(bad)


# ---- on loopback: the emulator's protection mode -----------------------------------------------

def test_image_host_is_not_paused_by_an_api_block_and_cookies_go_back(tmp_path):
    from metfaces_build.met.client import ClientConfig, MetClient
    from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator
    with start_emulator(synthetic=5, protection=Protection(1.0, 2.0, 3.0)) as h:
        c = MetClient(ClientConfig(api_root=h.api_root, rate=50, retries=3, cooldown=3.0,
                                   allowed_hosts=("127.0.0.1",)))
        try:
            rec = c.get_object(SYNTHETIC_BASE + 1).data
            assert rec["primaryImage"].startswith(h.image_url + "/") and h.image_url != h.url
            api = c.pacer
            while not api.cooldowns:  # go too fast until the front end blocks
                try:
                    c.get_object(SYNTHETIC_BASE + 2)
                except Exception:
                    pass
            t0 = time.monotonic()
            d = c.download(rec["primaryImage"], tmp_path, "img")
            assert time.monotonic() - t0 < 1.0 and d.width == 48  # no wait for the API's block
            img = c.pacing.for_url(rec["primaryImage"])
            assert img is not api and img.cooldowns == 0 and api.blocks == 1
        finally:
            c.close()
        stats = h.stats()
        assert len(stats["protection_blocks"]) == 1 and stats["image_requests"] == 1
        # every API request after the first sent the front end's cookie back
        assert stats["with_cookie"] == stats["api_requests"] - 1 >= 2


def test_fetch_reports_pace_and_blocks_and_the_next_dry_run_uses_them(cli, tmp_path):
    import os
    from metfaces_build.met.emulator import SYNTHETIC_BASE, start_emulator
    from metfaces_build.met.pacing import pace_file
    ids = ",".join(str(SYNTHETIC_BASE + i) for i in range(1, 31))
    work = tmp_path / "w"
    with start_emulator(synthetic=30, protection=Protection(4.0, 2.0, 2.0)) as h:
        args = ["fetch", "--work", work, "--api", h.api_root, "--ids", ids, "--allow-host", "127.0.0.1",
                "--rate", "8", "--cooldown", "2", "--workers", "2"]
        rc, out, err = cli(*args, "--quiet")
        assert rc == 0 and "30 ok" in out
        blocks = len(h.stats()["protection_blocks"])
        assert 1 <= blocks <= 3
        api_host = h.api_root.split("/")[2]
        assert f"fetch pace learned: " in out and api_host in out and f"{blocks} block" in out
        assert "s lost to them" in out
        saved = json.loads(pace_file().read_text())["hosts"][api_host]
        # below the limit, not far below: started at twice it, blocked at most 3 times
        assert saved["blocks"] == blocks and 1.0 < saved["rate"] < 4.0 < saved["block_rate"] * 4
        assert str(pace_file()).startswith(os.environ["METFACES_CACHE_DIR"])
        rc, out, _ = cli(*args, "--quiet", "--dry-run", "--force")
        assert rc == 0 and f"estimated time at {saved['rate']:.3g} req/s (learned; at most 8/s)" in out


def test_emulator_protect_flag_usage_errors(cli):
    rc, out, _ = cli("emulator", "--help")
    assert rc == 0 and "--protect" in out
    for bad in ("2,x", "0", "2,5,25;soon=1"):
        rc, _, err = cli("emulator", "--protect", bad)
        assert rc == 2 and "RATE[,WINDOW[,SECONDS]]" in err and "Traceback" not in err
