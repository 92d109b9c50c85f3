"""`metfaces-build emulator`: serve the sample Met API on loopback until Ctrl-C."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Optional

from ...core.errors import UsageError
from ...infra.stage import opt
from ...met import emulator as emulator_module
from ...met.emulator import FAULT_KINDS, BlockRule, start_emulator
from ...met.protection import Protection
from ..flags import add_options, nonneg_float

# the long manual (docs/commands.md, tools/make_command_docs.py): the module's own account
MANUAL = emulator_module.__doc__

ABOUT = f"""\
Serve a sample Met Collection API (35 objects in 5 departments, with known faces) on
loopback, with switchable faults ({", ".join(FAULT_KINDS)}), rate limits and a bot
protection, so fetch and run work offline. Stop it with Ctrl-C."""

EXAMPLES = """\
metfaces-build emulator --faults 429,5xx,reset --fault-rate 0.2
metfaces-build emulator --port 8000 --protect 2,5,25"""


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


@dataclass(frozen=True)
class EmulatorOptions:
    """The emulator's flags (met.emulator.start_emulator's arguments)."""
    host: str = opt("127.0.0.1", "address to listen on", metavar="HOST")
    port: int = opt(0, "port; 0 picks a free one", metavar="PORT", limits="0..65535")
    faults: tuple = opt((), "faults to inject, comma-separated, or all", metavar="LIST",
                        parse=_fault_list, shown="none")
    fault_rate: float = opt(0.0, "share of requests that get a fault", metavar="P",
                            parse=_rate)
    seed: int = opt(0, "fault seed", metavar="N")
    rate_limit: float = opt(0.0, "429 above N requests/s per client; 0: off", metavar="N",
                            limits=">= 0")
    block: Optional[BlockRule] = opt(None, "after N requests in WINDOW s, 403 for SECONDS s",
                               metavar="N,WINDOW,SECONDS", parse=_block_rule)
    protect: Optional[Protection] = opt(None, "a hidden limit: RATE[,WINDOW[,SECONDS]] or random",
                                 metavar="SPEC", parse=_protection)
    retry_after: float = opt(1.0, "Retry-After sent with 429/503, s", metavar="S",
                             limits=">= 0")
    slow: float = opt(2.0, "delay of a 'slow' fault, s", metavar="S", limits=">= 0")
    synthetic: int = opt(0, "add N image-less objects (benchmarks)", metavar="N")
    cache_dir: Optional[str] = opt(None, "cache of the sample images", metavar="DIR",
                                   shown="~/.cache/metfaces-build")


def configure_parser(p: argparse.ArgumentParser) -> None:
    add_options(p, EmulatorOptions)


def main(args) -> int:
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
