"""A subcommand's --help from its manual (the command module's docstring): what it does
and examples first, then the flags, then the details, so the first screen says how to use
it. docs/commands.md holds the same manuals (tools/make_command_docs.py writes it)."""
from __future__ import annotations

import re

from .. import PROJECT_URL

EXAMPLES = re.compile(r"^examples?:\s*$")
EXIT = re.compile(r"^exit status:")


def _sections(doc: str) -> list:
    """The docstring as blocks: paragraphs, and each `examples:` / `exit status:` block
    (a header line with its indented lines, blank lines inside included)."""
    lines = doc.strip("\n").splitlines()
    blocks, cur = [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        if EXAMPLES.match(line) or EXIT.match(line):
            if cur:
                blocks.append(cur)
            cur = [line]
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()
                                      or (EXIT.match(cur[0]) and lines[i].strip()
                                          and not EXAMPLES.match(lines[i]))):
                if not lines[i].strip() and (i + 1 >= len(lines) or not lines[i + 1][:1].isspace()):
                    break
                cur.append(lines[i])
                i += 1
            blocks.append(cur)
            cur = []
            continue
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = []
        else:
            cur.append(line)
        i += 1
    if cur:
        blocks.append(cur)
    return ["\n".join(b).rstrip() for b in blocks if any(x.strip() for x in b)]


def split_manual(doc: str, name: str) -> tuple:
    """(description, epilog) for argparse: the summary paragraph, the examples and the
    exit status first; every other paragraph after the flags, under `details:`."""
    blocks = _sections(doc)
    if not blocks:
        return doc, None
    first = blocks[0]
    examples = [b for b in blocks[1:] if EXAMPLES.match(b.splitlines()[0])]
    exits = [b for b in blocks[1:] if EXIT.match(b.splitlines()[0])]
    rest = [b for b in blocks[1:] if b not in examples and b not in exits]
    description = "\n\n".join([first, *exits, *examples])
    if not rest:
        return description, None
    epilog = ("details:\n\n" + "\n\n".join(rest)
              + f"\n\nThis manual is also in docs/commands.md ({PROJECT_URL}/blob/main/docs/commands.md#{name}).")
    return description, epilog
