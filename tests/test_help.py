"""Issue 23: each command's --help is for users (a usage line, one paragraph, the options
with help and defaults, examples that parse, a link to the manual; at most 60 lines of 80
columns), and each option is declared once, with its help, in its options dataclass."""
from __future__ import annotations

import argparse
import dataclasses
import shlex

import pytest

from metfaces_build.app.cli import COMMANDS, build_parser
from metfaces_build.app.commands.emulator import EmulatorOptions
from metfaces_build.app.flags import default_text
from metfaces_build.app.run import RunOptions
from metfaces_build.infra.stage import check_values, recipe_fields
from metfaces_build.met.client import ClientConfig
from metfaces_build.stages.align import AlignOptions
from metfaces_build.stages.compare import CompareOptions
from metfaces_build.stages.detect import DetectOptions
from metfaces_build.stages.export import ExportOptions
from metfaces_build.stages.fetch import FetchOptions, client_config
from metfaces_build.stages.filter import THRESHOLDS, FilterConfig, FilterOptions, build_config
from metfaces_build.stages.report import ReportOptions
from metfaces_build.stages.review import ReviewOptions
from metfaces_build.stages.verify import VerifyOptions

NAMES = [c[0] for c in COMMANDS]
OPTIONS = [FetchOptions, DetectOptions, FilterOptions, FilterConfig, AlignOptions,
           CompareOptions, ExportOptions, ReportOptions, ReviewOptions, VerifyOptions,
           RunOptions, EmulatorOptions]
# each command's options class: its flags are made from it
CLASS_OF = {"fetch": FetchOptions, "detect": DetectOptions, "filter": FilterOptions,
            "align": AlignOptions, "compare": CompareOptions, "export": ExportOptions,
            "report": ReportOptions, "review": ReviewOptions, "verify": VerifyOptions,
            "run": RunOptions, "emulator": EmulatorOptions}


def _parser(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.fixture
def columns80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


def _help(name: str) -> str:
    return _parser(name).format_help()


def _flag_actions(p: argparse.ArgumentParser) -> list:
    return [a for a in p._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("name", NAMES)
def test_help_layout(name, columns80):
    text = _help(name)
    lines = text.splitlines()
    assert lines[0] == f"usage: metfaces-build {name} [options]", lines[0]
    assert len(lines) <= 60, (name, len(lines))
    long = [line for line in lines if len(line) > 80]
    assert not long, (name, long)
    assert lines[1] == "" and lines[2] and not lines[2].startswith(" ")  # the paragraph
    assert lines[-1] == f"manual: docs/commands.md#{name}"
    assert text.index("options:") < text.index("\nexamples:\n")


def test_top_level_help_fits_80_columns(columns80):
    lines = build_parser().format_help().splitlines()
    assert not [line for line in lines if len(line) > 80]


@pytest.mark.parametrize("name", NAMES)
def test_every_flag_has_help_and_shows_its_default(name, columns80):
    p = _parser(name)
    text = p.format_help()
    for a in _flag_actions(p):
        flag = a.option_strings[0]
        shown = a.help if a.help != argparse.SUPPRESS else getattr(a, "full_help", "")
        assert shown and shown.strip(), (name, flag)
        if a.help == argparse.SUPPRESS:  # listed by name, in full in another command's help
            assert flag in text, (name, flag)
        if a.default not in (None, False, [], ()):
            assert "(default: " in shown, (name, flag, shown)
        if a.help != argparse.SUPPRESS:
            assert flag in text, (name, flag)
    cls = CLASS_OF.get(name)
    if cls is not None:  # the default said is the options class's
        for a in _flag_actions(p):
            f = {f.name: f for f in dataclasses.fields(cls)}.get(a.dest)
            said = f and default_text(cls, a.dest)
            if said:
                shown = a.help if a.help != argparse.SUPPRESS else a.full_help
                assert f"(default: {said})" in shown, (name, a.dest, shown)


def test_compact_flags_are_in_full_where_they_point(columns80):
    """run lists the fetch and detect options it shares by name: each is in full, with
    its help and default, in `fetch --help` or `detect --help`."""
    run_help = _help("run")
    assert "see `metfaces-build fetch --help`" in run_help
    assert "see `metfaces-build detect --help`" in run_help
    homes = {"fetch": _parser("fetch"), "detect": _parser("detect")}
    for a in _flag_actions(_parser("run")):
        if a.help != argparse.SUPPRESS:
            continue
        home = next(n for n, p in homes.items() if a.dest in {b.dest for b in p._actions})
        b = next(b for b in homes[home]._actions if b.dest == a.dest)
        assert b.help == argparse.SUPPRESS or b.help == a.full_help, (a.dest, home)
        assert a.option_strings[0] in homes[home].format_help()


@pytest.mark.parametrize("name", NAMES)
def test_examples_parse(name, columns80):
    lines = _help(name).splitlines()
    start = lines.index("examples:")
    examples = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        examples.append(line.strip())
    assert 2 <= len(examples) <= 4, (name, examples)
    for line in examples:
        words = shlex.split(line)
        assert words[0] == "metfaces-build", line
        parser = build_parser(words[1])
        parser.parse_args(words[1:])  # a UsageError (cli._Parser.error) fails the test


@pytest.mark.parametrize("cls", OPTIONS, ids=lambda c: c.__name__)
def test_every_option_is_declared_with_help(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help"
        assert len(f.metadata["help"]) <= 50, f"{cls.__name__}.{f.name}: help is one short line"


def test_worker_counts_and_pixel_limits_are_bounded_where_declared():
    for cls in OPTIONS:
        for f in dataclasses.fields(cls):
            if f.name in ("workers", "fetch_workers", "max_pixels"):
                assert f.metadata["limits"] == (1, None, False), (cls.__name__, f.name)


def test_choices_and_limits_come_from_the_declaration():
    """check_values (the CLI's and the API's one check) reads each field's choices and
    limits: the API refuses what the flag's parser refuses."""
    from metfaces_build.core.errors import UsageError
    with pytest.raises(UsageError, match="detector must be one of hog, cnn, cascade"):
        check_values(DetectOptions, {"detector": "CNN"})
    with pytest.raises(UsageError, match="rate must be > 0"):
        check_values(FetchOptions, {"rate": 0.0})
    with pytest.raises(UsageError, match="png_level must be from 0 to 9"):
        check_values(AlignOptions, {"png_level": 10})
    with pytest.raises(UsageError, match="max_padding must be >= 0"):
        check_values(FilterOptions, {"max_padding": -0.5})
    assert check_values(RunOptions, {"detector": "cascade"})["detector"] == "cascade"
    with pytest.raises(UsageError, match="detector must be one of"):
        check_values(RunOptions, {"detector": "mtcnn"})


def test_filter_thresholds_are_declared_once_in_filter_config(cli, columns80):
    """Each threshold's flag is made from its FilterConfig field: its default is the
    config's, and build_config hands each one to the config."""
    p = _parser("filter")
    text = p.format_help()
    defaults = FilterConfig()
    for name in THRESHOLDS:
        flag = "--" + name.replace("_", "-")
        assert flag in text
        a = next(a for a in p._actions if a.dest == name)
        if getattr(defaults, name) is not None:
            assert f"(default: {getattr(defaults, name)})" in a.help, name
        assert getattr(FilterOptions(), name) is None  # unset: the TOML file's or the default
    given = {name: (7 if name in ("max_hash_distance", "crop_size") else 0.25)
             for name in THRESHOLDS}
    given.update(crop_size=64, eye_jaw_min=0.2, eye_jaw_max=0.9)
    cfg = build_config(FilterOptions(**given))
    assert {name: getattr(cfg, name) for name in THRESHOLDS} == given


def test_network_defaults_come_from_the_client_and_convert_back():
    """FetchOptions takes its network defaults from ClientConfig; client_config is one
    copy of the same-named fields (plus the three named otherwise)."""
    for name in ("retries", "timeout", "backoff_base", "backoff_max", "cooldown", "max_outage",
                 "max_pixels", "rate"):
        assert getattr(FetchOptions(), name) == getattr(ClientConfig(), name), name
    assert FetchOptions().api == ClientConfig().api_root
    opts = FetchOptions(retries=2, timeout=5.0, cooldown=1.0, rate=3.0, allow_host=("h",),
                        workers=8, api="http://127.0.0.1:1/v1", max_pixels=99)
    cfg = client_config(opts)
    assert (cfg.retries, cfg.timeout, cfg.cooldown, cfg.rate, cfg.max_pixels) == (2, 5.0, 1.0, 3.0, 99)
    assert cfg.allowed_hosts == ("h",) and cfg.api_root == opts.api and cfg.pool_size == 16


def test_align_params_and_run_conversions():
    a = AlignOptions("j", "s", "o", size=64, supersampling=2, no_rotation=True, png_level=1,
                     random_shift=0.2, retry_crops=True)
    p = a.params
    assert (p.size, p.supersampling, p.rotate, p.padding, p.png_level, p.random_shift,
            p.retry_crops) == (64, 2, False, True, 1, 0.2, True)
    assert AlignOptions("j", "s", "o").params == type(p)()  # one set of defaults
    r = RunOptions(filter_config="f.toml", overrides="o.json", workers=3, force=True,
                   max_pixels=77, executor="dask", fetch_workers=9)
    f = r.filter_options()
    assert (f.config, f.overrides, f.workers, f.force, f.min_size) == ("f.toml", "o.json", 3, True, None)
    assert r.fetch_options().workers == 9 and r.detect_options().executor == "dask"


def test_recipe_tables_are_the_options_declared_for_it():
    from metfaces_build.stages import recipe
    assert recipe.FETCH_KEYS == recipe_fields(FetchOptions)
    assert recipe.FETCH_KEYS[:len(recipe.FETCH_SELECTION)] == recipe.FETCH_SELECTION
    assert "since" not in recipe.FETCH_KEYS and "workers" not in recipe.FETCH_KEYS
    assert recipe.DETECT_KEYS == ("detector", "upsample", "cnn_upsample", "cascade_score",
                                  "max_side", "min_face", "models_dir")
    assert recipe.ALIGN_KEYS == ("random_shift", "retry_crops", "no_rotation", "no_padding",
                                 "size", "supersampling", "png_level")


def test_commands_md_is_current(monkeypatch):
    """docs/commands.md is what tools/make_command_docs.py writes now: every command's
    --help, every option in full and its manual (rerun the tool after changing them)."""
    import importlib.util

    from conftest import REPO
    spec = importlib.util.spec_from_file_location("make_command_docs",
                                                  REPO / "tools" / "make_command_docs.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setenv("COLUMNS", "80")
    text = tool.render()
    assert (REPO / "docs" / "commands.md").read_text() == text, \
        "docs/commands.md is stale: run python tools/make_command_docs.py"
    for name in NAMES:
        assert f"\n## {name}\n" in text and f"usage: metfaces-build {name} [options]" in text
    assert "| `--retries N` | retries per request (default: 8) |" in text  # compact in --help
