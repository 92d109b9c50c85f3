#!/usr/bin/env python3
"""Write docs/commands.md: for every subcommand its `--help` (at 80 columns), every
option in full (the ones --help lists compactly too), and its long manual (the command
module's `MANUAL`: what it writes, its statuses, formats and details). Rerun after
changing an option, a command's help or a manual:

    python tools/make_command_docs.py
"""
import argparse
import importlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def command_parser(name: str) -> argparse.ArgumentParser:
    from metfaces_build.app.cli import build_parser
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def option_rows(p: argparse.ArgumentParser) -> list:
    """| flag | help (default) | for every flag, the compactly listed ones included."""
    rows = ["| option | what it does |", "| --- | --- |"]
    formatter = p._get_formatter()
    for a in p._actions:
        if not a.option_strings or a.dest == "help":
            continue
        text = a.help if a.help != argparse.SUPPRESS else getattr(a, "full_help", "")
        flag = formatter._format_action_invocation(a).split(", ")[-1]
        rows.append(f"| `{_cell(flag)}` | {_cell(text)} |")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def filter_toml_keys() -> list:
    """The [filter] table's keys (FilterConfig's fields), for the filter manual."""
    import dataclasses

    from metfaces_build.stages.filter import FilterConfig
    rows = ["| key | default | what it sets |", "| --- | --- | --- |"]
    for f in dataclasses.fields(FilterConfig):
        default = getattr(FilterConfig(), f.name)
        rows.append(f"| `{f.name}` | `{default!r}` | {f.metadata.get('help', '')} |")
    return rows


def section(name: str, modname: str) -> list:
    mod = importlib.import_module(modname)
    p = command_parser(name)
    out = [f"## {name}", "", "```text", p.format_help().rstrip(), "```", "",
           f"### {name}: every option", ""] + option_rows(p) + [""]
    if name == "filter":
        out += ["### filter: the TOML file's keys (`--config`, the recipe's `[filter]`)", ""]
        out += filter_toml_keys() + [""]
    manual = (getattr(mod, "MANUAL", None) or "").strip()
    if manual:
        out += [f"### {name}: manual", "", "```text", manual, "```", ""]
    return out


def render() -> str:
    """docs/commands.md's text (at 80 columns, as a user's terminal shows --help)."""
    os.environ["COLUMNS"] = "80"
    from metfaces_build.app.cli import COMMANDS
    out = ["# Commands", "",
           "Every subcommand: its `--help`, every option in full, then its manual (written "
           "by `tools/make_command_docs.py` from the options' declarations and the command "
           "modules).", ""]
    out += [f"- [{name}](#{name}): {summary}" for name, _, summary in COMMANDS] + [""]
    for name, modname, _ in COMMANDS:
        out += section(name, modname)
    return "\n".join(out)


def main() -> int:
    path = REPO / "docs" / "commands.md"
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
