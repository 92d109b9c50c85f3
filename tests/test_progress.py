"""Progress output (issue 19): plain periodic lines without carriage returns when stderr
is not a terminal, nothing for a stage with nothing to do."""
from __future__ import annotations

import io

from metfaces_build.infra.executors import Progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_not_a_terminal_gives_plain_periodic_lines():
    out, clock = io.StringIO(), Clock()
    with Progress(10, "detect", unit="img", stream=out, clock=clock) as p:
        p.update(1)
        clock.t += 10
        p.update(1)
        assert out.getvalue() == ""                  # within LOG_INTERVAL: quiet
        clock.t += Progress.LOG_INTERVAL
        p.update(1, passed=3)
        assert out.getvalue() == "detect: 3/10 img (30%) in 40 s, 0.1 img/s, passed=3\n"
        clock.t += 5
        p.update(7)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "detect: 10/10 img (100%) in 45 s, 0.2 img/s, passed=3"
    assert len(lines) == 2 and "\r" not in out.getvalue()


def test_nothing_done_prints_nothing():
    out = io.StringIO()
    with Progress(None, "fetch", unit="obj", stream=out, clock=Clock()):
        pass
    with Progress(0, "fetch", unit="obj", stream=out, clock=Clock()) as p:
        p.close()
    assert out.getvalue() == ""


def test_quiet_prints_nothing():
    out = io.StringIO()
    with Progress(3, "align", quiet=True, stream=out, clock=Clock()) as p:
        p.update(3)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar_once_work_starts():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    with Progress(2, "align", unit="face", stream=out, clock=Clock()) as p:
        assert out.getvalue() == ""
        p.update(2)
    assert "align" in out.getvalue() and "2/2" in out.getvalue()
