#!/usr/bin/env python3
"""Write docs/commands.md: every subcommand's manual (its module docstring, the long form
of `metfaces-build COMMAND --help`, which shows the summary and examples first and the
details after the flags). Rerun after changing a command's docstring:

    python tools/make_command_docs.py
"""
import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    from metfaces_build.app.cli import COMMANDS
    out = ["# Commands", "",
           "Every subcommand's manual, as `metfaces-build COMMAND --help` prints it "
           "(written by `tools/make_command_docs.py` from the command modules' docstrings; "
           "the flags are listed by `--help`).", ""]
    out += [f"- [{name}](#{name}): {summary}" for name, _, summary in COMMANDS] + [""]
    for name, modname, summary in COMMANDS:
        mod = importlib.import_module(modname)
        doc = (getattr(mod, "DESCRIPTION", None) or mod.__doc__ or summary).strip()
        out += [f"## {name}", "", "```text", doc, "```", ""]
    path = REPO / "docs" / "commands.md"
    path.write_text("\n".join(out))
    print(f"wrote {path} ({len(COMMANDS)} commands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
