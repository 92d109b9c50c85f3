"""How long an existing review page takes to open in headless Chromium, at any size.

    python tools/bench_review_load.py --page /tmp/scale/w200000/report/review.html
    python tools/bench_review_load.py --page W/report/review.html --runs 3 --inline

Opens the page from disk in a fresh headless Chromium (infra/headless.py) `--runs` times
and reports the medians of: the load event; the first cards on screen (a page with data
files: its first file's cards, before the rest load; a small page: when it is ready); the
page ready (every face loaded, filters counted, the first page of cards built: the page's
own `review-ready` mark); first contentful paint; opening the last face (its landmarks
and measures, from a data file on a large page) until its 68 landmarks are drawn;
applying a filter and a sort over every face (to the next frame); the JS heap; and the
peak resident memory of the browser's processes, sampled every 50 ms while the page
opens (all of Chromium's processes, the empty browser included: see the `blank` row).

--inline also writes and measures the page as one HTML file with every face embedded
(how review wrote every page before pages of cards), from the same data, to compare.
tools/bench_scale.py makes work directories of any size (its `review` stage writes
the page); tools/bench_review.py builds a small one and times the thumbnails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and every process under it (Linux /proc), in MB."""
    children: dict = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total / 2**20


class PeakRSS:
    """The highest tree_rss_mb(pid) seen while the `with` block runs."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(self.every)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, tree_rss_mb(self.pid))


TIMES = f"""{NEXT_FRAME}.then(() => {{
    const mark = (n) => (performance.getEntriesByName(n)[0] || {{}}).startTime;
    const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
    const ready = mark('review-ready');
    return {{load: performance.getEntriesByType('navigation')[0].loadEventEnd,
             first_cards: mark('review-first-cards') || ready, ready,
             fcp: fcp ? fcp.startTime : null, faces: FACES.length,
             cards: document.querySelectorAll('[data-face]').length}}; }})"""

OPEN_LAST = """(async () => {
    const t0 = performance.now();
    select(shown.length - 1, false); openFace(shown[shown.length - 1]);
    while (document.querySelectorAll('#v-full circle').length < 68) await new Promise(r => setTimeout(r, 5));
    const ms = performance.now() - t0; closeFace(); return ms; })()"""


def measure_once(page_path: Path, width: int, height: int, timeout: float) -> dict:
    from metfaces_build.infra.headless import Browser
    with Browser.launch() as b:
        blank = tree_rss_mb(b._proc.pid)
        page = b.new_page(width, height)
        with PeakRSS(b._proc.pid) as peak:
            t0 = time.perf_counter()
            page.goto(page_path.resolve().as_uri(), timeout=timeout)
            while page.eval("document.body.dataset.ready") != "1":
                if time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"{page_path}: not ready within {timeout} s")
                time.sleep(0.02)
            t = page.eval(TIMES, await_promise=True, timeout=timeout)
        t["open_last"] = page.eval(OPEN_LAST, await_promise=True, timeout=timeout)
        for key, js in (("filter", "const s = document.getElementById('f-decision'); s.value = 'rejected';"),
                        ("sort", "const s = document.getElementById('sort'); s.value = 'score';")):
            t[key] = page.eval(f"""(() => {{ const t0 = performance.now(); {js}
                s.dispatchEvent(new Event('change')); document.body.offsetHeight;
                return {NEXT_FRAME}.then(() => performance.now() - t0); }})()""",
                               await_promise=True, timeout=timeout)
        t["heap_mb"] = page.send("Runtime.getHeapUsage")["usedSize"] / 2**20
        t["peak_rss_mb"], t["blank_rss_mb"] = peak.peak, blank
        t["browser"] = b.version.get("product")
        errors = page.console_errors()
        if errors:
            raise SystemExit(f"console errors: {errors[:3]}")
    return t


def inline_copy(page_path: Path) -> Path:
    """The same page with every face embedded (as review wrote every page before)."""
    from metfaces_build.stages.review import render_page
    text = page_path.read_text(encoding="utf-8")
    head = json.loads(re.search(r'<script id="face-data" type="application/json">(.*?)</script>',
                                text, re.S).group(1))
    c = head.pop("chunks", None)
    if c is None:
        return page_path
    faces, objects = [], {}
    for n in range(c["count"]):
        parts = {}
        for kind in ("cards", "details"):
            js = (page_path.parent / c["dir"] / f"{kind}-{n:04d}.js").read_text(encoding="utf-8")
            parts[kind] = json.loads(json.loads(js[js.index(",", js.index(",") + 1) + 1:js.rindex(")")]))
        objects.update(parts["cards"]["objects"])
        for card, detail in zip(parts["cards"]["rows"], parts["details"]["rows"]):
            faces.append({**dict(zip(parts["cards"]["fields"], card)),
                          **dict(zip(parts["details"]["fields"], detail))})
    out = page_path.with_name("review-inline.html")
    out.write_text(render_page({**head, "faces": faces, "objects": objects, "page_cards": 10**9}),
                   encoding="utf-8")
    return out


def report(label: str, page_path: Path, runs: int, args) -> dict:
    rows = [measure_once(page_path, args.width, args.height, args.timeout) for _ in range(runs)]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]
           if isinstance(rows[0][k], (int, float)) and rows[0][k] is not None}
    size = page_path.stat().st_size / 1e6
    data = page_path.parent / "review-data"
    files = sum(p.stat().st_size for p in data.rglob("*.js")) / 1e6 if data.is_dir() and label != "inline" else 0
    print(f"{label}: {page_path} ({size:.1f} MB HTML + {files:.1f} MB data files), {rows[0]['browser']}, "
          f"{args.width}x{args.height}, median of {runs} fresh browsers:")
    names = (("faces", "faces", ""), ("cards", "cards in the DOM", ""), ("load", "load event", " ms"),
             ("fcp", "first contentful paint", " ms"), ("first_cards", "first cards on screen", " ms"),
             ("ready", "ready (every face loaded, filters counted)", " ms"),
             ("open_last", "open the last face (landmarks drawn)", " ms"),
             ("filter", "filter: rejected, over every face", " ms"), ("sort", "sort by score", " ms"),
             ("heap_mb", "JS heap", " MB"), ("peak_rss_mb", "peak RSS, all browser processes", " MB"),
             ("blank_rss_mb", "  of which the browser before the page", " MB"))
    for key, name, unit in names:
        if key in med:
            print(f"  {name:<44} {med[key]:,.0f}{unit}")
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps({"label": label, "page": str(page_path), "html_mb": round(size, 2),
                                "data_mb": round(files, 2), **{k: round(v, 1) for k, v in med.items()},
                                "when": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--page", type=Path, required=True, help="a review.html written by `review`")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--inline", action="store_true", help="also measure the one-file page of the same data")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--results", type=Path, default=None, help="append one JSON line per page")
    args = ap.parse_args()
    if not args.page.is_file():
        raise SystemExit(f"--page {args.page}: no such file")
    report("pages", args.page, args.runs, args)
    if args.inline:
        copy = inline_copy(args.page)
        try:
            report("inline", copy, args.runs, args)
        finally:
            if copy != args.page:
                copy.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
