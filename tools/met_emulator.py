#!/usr/bin/env python3
"""Run the loopback Met API emulator standalone (same as `metfaces-build emulator`).

example:
  python tools/met_emulator.py --port 8765 --faults 429,5xx,reset --fault-rate 0.1
"""
import sys

from metfaces_build.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["emulator", *sys.argv[1:]]))
