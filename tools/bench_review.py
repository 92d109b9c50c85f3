"""How fast the review page opens and filters with many faces, in headless Chromium.

    python tools/bench_review.py                      # 10,000 faces in a temp work dir
    python tools/bench_review.py --faces 2000 --runs 5
    python tools/bench_review.py --screenshot docs/review.png --work metfaces-demo

Builds a work directory of synthetic faces (4 per 512x512 original, 5 departments, API
records, filter run with --no-crop-tests so about half are rejected for resolution),
writes its review page with `write_review` (thumbnails included, timed apart), then opens
the page from disk in a fresh headless Chromium tab `--runs` times and reports the
medians of: navigation to the load event, to the page's own "ready" mark (every card
built and filtered), to the first paint after that, and the time to apply a filter and a
sort (to the next frame). With --screenshot and an existing --work (e.g. the demo's),
it only takes the README's screenshot of that page.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synthfaces: the tests' synthetic 68-point faces

DEPARTMENTS = ["European Paintings", "Drawings and Prints", "Photographs",
               "American Paintings and Sculpture", "The Robert Lehman Collection"]


def build_work(work: Path, n_faces: int, seed: int = 1) -> None:
    """faces.json, originals/, api/, objects.jsonl for n_faces faces, 4 per original."""
    import numpy as np
    from PIL import Image

    from synthfaces import face_json, place, texture
    rng = np.random.RandomState(seed)
    (work / "originals").mkdir(parents=True, exist_ok=True)
    (work / "api").mkdir(exist_ok=True)
    bases = []
    for k in range(8):  # a few distinct pictures, copied as bytes (content does not matter)
        buf = io.BytesIO()
        Image.fromarray(texture(k, 512, 512)).save(buf, format="JPEG", quality=85)
        bases.append(buf.getvalue())
    faces, rows = [], []
    n_images = (n_faces + 3) // 4
    for i in range(n_images):
        oid = str(100000 + i)
        (work / "originals" / f"{oid}.jpg").write_bytes(bases[i % len(bases)])
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        api = {"objectID": int(oid), "title": f"Portrait no. {i}", "artistDisplayName": f"Painter {i % 97}",
               "department": dept, "objectDate": str(1500 + i % 400),
               "objectURL": f"https://www.metmuseum.org/art/collection/search/{oid}"}
        (work / "api" / f"{oid}.json").write_text(json.dumps(api))
        rows.append({"id": int(oid), "status": "ok", "department": dept, "path": f"originals/{oid}.jpg",
                     "width": 512, "height": 512})
        for j in range(min(4, n_faces - 4 * i)):
            cx, cy = 128 + 256 * (j % 2), 128 + 256 * (j // 2)
            scale = rng.uniform(30, 70)  # qsize 77..180: about half below --min-size 120
            faces.append(face_json(oid, j, place(scale, cx, cy, angle=rng.uniform(-10, 10)),
                                   source_path=f"originals/{oid}.jpg", detector="hog",
                                   score=round(float(rng.uniform(0, 2)), 4), size=(512, 512)))
    (work / "faces.json").write_text(json.dumps(faces))
    (work / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def measure(page_path: Path, runs: int, width: int, height: int) -> dict:
    from metfaces_build.infra.headless import Browser
    out: dict = {k: [] for k in ("goto_s", "ready_ms", "first_paint_after_ready_ms", "load_ms",
                                 "filter_ms", "sort_ms", "heap_mb")}
    with Browser.launch() as b:
        version = b.version.get("product")
        for _ in range(runs):
            page = b.new_page(width, height)
            out["goto_s"].append(page.goto(page_path.resolve().as_uri(), timeout=300))
            t = page.eval(f"""{NEXT_FRAME}.then(() => {{
                const nav = performance.getEntriesByType('navigation')[0];
                const ready = performance.getEntriesByName('review-ready')[0].startTime;
                return {{ready, load: nav.loadEventEnd, painted: performance.now() - ready}}; }})""",
                          await_promise=True, timeout=120)
            out["ready_ms"].append(t["ready"])
            out["load_ms"].append(t["load"])
            out["first_paint_after_ready_ms"].append(t["painted"])
            for key, js in (("filter_ms", "const s = document.getElementById('f-test'); s.value = 'resolution';"),
                            ("sort_ms", "const s = document.getElementById('sort'); s.value = 'score';")):
                out[key].append(page.eval(f"""(() => {{ const t0 = performance.now(); {js}
                    s.dispatchEvent(new Event('change')); document.body.offsetHeight;
                    return {NEXT_FRAME}.then(() => performance.now() - t0); }})()""",
                                          await_promise=True, timeout=120))
            heap = page.send("Runtime.getHeapUsage")
            out["heap_mb"].append(heap["usedSize"] / 1e6)
            errors = page.console_errors()
            if errors:
                raise SystemExit(f"console errors: {errors[:3]}")
            b.send("Target.closeTarget", {"targetId": page.target})
    return {"browser": version, **{k: statistics.median(v) for k, v in out.items() if isinstance(v, list)}}


def screenshot(page_path: Path, out: Path, width: int = 1400, height: int = 860) -> Path:
    """The page as a person first sees it, then with one card open; a small PNG."""
    from PIL import Image

    from metfaces_build.infra.headless import Browser
    with Browser.launch() as b, tempfile.TemporaryDirectory() as tmp:
        page = b.new_page(width, height)
        page.goto(page_path.resolve().as_uri())
        page.eval("""(() => { const s = document.getElementById('sort'); s.value = 'qsize';
                     s.dispatchEvent(new Event('change')); })()""")
        time.sleep(1.0)  # lazy thumbnails
        grid = page.screenshot(Path(tmp) / "grid.png")
        page.press("ArrowRight")
        page.press("Enter")
        time.sleep(1.5)  # the original
        card = page.screenshot(Path(tmp) / "card.png")
        errors = page.console_errors()
        if errors:
            raise SystemExit(f"console errors: {errors[:3]}")
        a, c = Image.open(grid).convert("RGB"), Image.open(card).convert("RGB")
        half = (width // 2, height // 2)
        sheet = Image.new("RGB", (width, height // 2), (255, 255, 255))
        sheet.paste(a.resize(half, Image.Resampling.LANCZOS), (0, 0))
        sheet.paste(c.resize(half, Image.Resampling.LANCZOS), (width // 2, 0))
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temp one)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--screenshot", type=Path, default=None,
                    help="only take a screenshot of --work's existing review page")
    args = ap.parse_args()

    from metfaces_build.app.cli import main as cli
    from metfaces_build.stages.review import write_review
    if args.screenshot:
        if args.work is None:
            raise SystemExit("--screenshot needs --work (a work directory with filter output)")
        page = write_review(args.work, workers=args.workers).page
        print(f"screenshot: {screenshot(page, args.screenshot)} ({args.screenshot.stat().st_size // 1024} kB)")
        return 0
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-review-")
        args.work = Path(tmp.name) / "work"
    try:
        work = args.work
        if not (work / "faces.json").exists():
            t0 = time.perf_counter()
            build_work(work, args.faces)
            print(f"built {args.faces} faces in {time.perf_counter() - t0:.1f} s")
        if cli(["filter", "--work", str(work), "--no-crop-tests", "--min-size", "120", "--quiet",
                "--workers", str(args.workers)]) != 0:
            raise SystemExit("filter failed")
        t0 = time.perf_counter()
        paths = write_review(work, workers=args.workers)
        made = time.perf_counter() - t0
        thumbs = sum(p.stat().st_size for p in paths.thumbs.glob("*.jpg"))
        print(f"review page: {paths.faces} faces, {paths.thumbs_made} thumbnails made in {made:.1f} s; "
              f"page {paths.page.stat().st_size / 1e6:.2f} MB, thumbnails {thumbs / 1e6:.1f} MB "
              f"({thumbs / max(paths.faces, 1) / 1e3:.1f} kB each)")
        r = measure(paths.page, args.runs, args.width, args.height)
        print(f"{r['browser']}, {args.width}x{args.height}, median of {args.runs} fresh tabs:")
        print(f"  ready (cards built and filtered)  {r['ready_ms']:.0f} ms")
        print(f"  load event                        {r['load_ms']:.0f} ms")
        print(f"  first paint after ready           {r['first_paint_after_ready_ms']:.0f} ms")
        print(f"  navigation to load (client side)  {r['goto_s'] * 1000:.0f} ms")
        print(f"  filter by failed test             {r['filter_ms']:.0f} ms")
        print(f"  sort by score                     {r['sort_ms']:.0f} ms")
        print(f"  JS heap                           {r['heap_mb']:.0f} MB")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
