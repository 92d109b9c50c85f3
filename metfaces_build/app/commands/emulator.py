"""`metfaces-build emulator`: serve the sample Met API on loopback until Ctrl-C."""
from __future__ import annotations

import argparse
import sys
import time

from ...met.emulator import FAULT_KINDS, BlockRule, start_emulator
from ...met.protection import Protection
from ...met import emulator as stage
from ..flags import nonneg_float

DESCRIPTION = stage.__doc__


def _fault_list(s: str) -> list:
    items = [f.strip() for f in s.split(",") if f.strip()]
    if items == ["all"]:
        return list(FAULT_KINDS)
    bad = [f for f in items if f not in FAULT_KINDS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {', '.join(bad)}; choose from "
                                          f"{', '.join(FAULT_KINDS)} or 'all'")
    return items


def _block_rule(s: str) -> BlockRule:
    try:
        n, w, t = s.split(",")
        rule = BlockRule(int(n), float(w), float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,WINDOW,SECONDS (e.g. 30,2,30), got {s!r}") from None
    if rule.requests < 1 or rule.window <= 0 or rule.duration < 0:
        raise argparse.ArgumentTypeError(f"expected N >= 1, WINDOW > 0, SECONDS >= 0, got {s!r}")
    return rule


def _protection(s: str) -> Protection:
    try:
        return Protection.parse(s)
    except (ValueError, TypeError) as e:
        raise argparse.ArgumentTypeError(f"expected RATE[,WINDOW[,SECONDS]][;AT=RATE...] (e.g. "
                                          f"2,5,25 or 2,5,25;60=1) or random[:SEED], got {s!r}: {e}") from None


def _rate(s: str) -> float:
    v = nonneg_float(s)
    if v > 1:
        raise argparse.ArgumentTypeError(f"expected a probability within 0..1, got {s}")
    return v


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    p.add_argument("--faults", type=_fault_list, default=[], metavar="LIST",
                   help="comma-separated faults to inject: " + ",".join(FAULT_KINDS) + ", or all")
    p.add_argument("--fault-rate", type=_rate, default=0.0, metavar="P",
                   help="probability that a request gets one of --faults (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="fault seed (default: %(default)s)")
    p.add_argument("--rate-limit", type=nonneg_float, default=0.0, metavar="N",
                   help="answer 429 with Retry-After above N requests/s per client (0 = off)")
    p.add_argument("--block", type=_block_rule, default=None, metavar="N,WINDOW,SECONDS",
                   help="after N requests within WINDOW s, 403 HTML to everything for SECONDS s")
    p.add_argument("--protect", type=_protection, default=None, metavar="SPEC",
                   help="protection mode: a hidden limit on API requests, RATE[,WINDOW[,SECONDS]] "
                        "(more than RATE x WINDOW requests within WINDOW s (default 5) blocks "
                        "every API request with 403 HTML for SECONDS (default 25)); ';AT=RATE' "
                        "changes it AT s after the first request; 'random[:SEED]' draws one. "
                        "Images then come from a second port (fetch --allow-host 127.0.0.1)")
    p.add_argument("--retry-after", type=nonneg_float, default=1.0, metavar="S",
                   help="Retry-After sent with 429/503 (default: %(default)s)")
    p.add_argument("--slow", type=nonneg_float, default=2.0, metavar="S",
                   help="delay of a 'slow' fault in seconds (default: %(default)s)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="add N image-less filler objects to /objects (benchmarks)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where the generated sample images are cached (default: "
                        "$METFACES_EMULATOR_CACHE or ~/.cache/metfaces-build)")


def main(args) -> int:
    from ...core.errors import UsageError
    try:
        handle = start_emulator(args.faults, args.fault_rate, args.rate_limit, args.block, args.seed,
                                args.retry_after, args.slow, args.host, args.port, args.synthetic,
                                args.cache_dir, log=lambda m: print(m, file=sys.stderr),
                                protection=args.protect)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    print(f"Met API emulator: {handle.api_root}", flush=True)
    print(f"ground truth:     {handle.url}/_emulator/truth.json", flush=True)
    allow = ""
    if handle.image_server is not None:
        allow = f" --allow-host {args.host}"
        print(f"images:           {handle.image_url} (a separate host, not limited)", flush=True)
        if args.protect is not None:
            print("protection:       on (hidden limit; blocks are counted in /_emulator/stats)",
                  file=sys.stderr, flush=True)
    print(f"try: metfaces-build fetch --api {handle.api_root} --departments 11 --work ./emu-work{allow}",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(f"stopped; {handle.stats()['requests']} requests served", file=sys.stderr)
    finally:
        handle.stop()
    return 0
