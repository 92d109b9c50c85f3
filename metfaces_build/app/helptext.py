"""A subcommand's --help: one paragraph of what it does (the command module's `ABOUT`),
the options with their defaults, 2-4 examples (`EXAMPLES`) and a pointer to the long
manual in docs/commands.md (tools/make_command_docs.py writes it from `MANUAL` and the
help)."""
from __future__ import annotations

import textwrap

MANUAL_DOC = "docs/commands.md"


def command_help(name: str, mod) -> tuple:
    """(description, epilog) for argparse from the command module `mod`."""
    examples = textwrap.indent(mod.EXAMPLES.strip("\n"), "  ")
    return (textwrap.fill(" ".join(mod.ABOUT.split()), width=79),
            f"examples:\n{examples}\n\nmanual: {MANUAL_DOC}#{name}")
