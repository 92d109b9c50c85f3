"""What each stage keeps in the work directory's recipe, and how options meet it.

A stage's options come from three places, later ones winning: the options dataclass's
defaults, the recipe's table for that stage, and what the caller gave explicitly (flags
on the command line, keywords in Python). What was given explicitly is written back to
the recipe, so the next command (or `run --work DIR` alone) does the same; each change is
reported as one line ("recipe: filter.min_size 1024.0 -> 48.0"). Run-time choices
(workers, --force, --quiet, --since, --dry-run) never enter the recipe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from ..core.errors import UsageError
from ..infra.recipe import Recipe, changes, load_recipe, save_recipe, write_stamp
from ..infra.stage import check_values, default_of, fields_by_name, option_names, recipe_fields
from ..infra.workdir import Work
from ..met.probe import unreachable
from .align import AlignOptions, align
from .detect import DetectOptions, detect
from .fetch import FetchOptions, check_options, fetch
from .filter import (CONFIG_FIELDS, FilterConfig, build_config, config_from_mapping,
                     filter as filter_stage)

# the options of each table: those declared with recipe=True (the rest is run-time only)
FETCH_SELECTION = ("departments", "search", "ids", "ids_file", "from_json", "from_csv")
FETCH_KEYS = recipe_fields(FetchOptions)
DETECT_KEYS = recipe_fields(DetectOptions)
ALIGN_KEYS = recipe_fields(AlignOptions)
KEYS = {"fetch": FETCH_KEYS, "detect": DETECT_KEYS, "align": ALIGN_KEYS}
# filter's table holds its thresholds (FilterConfig's fields), resolved


class ApiGone(UsageError):
    """The API root does not answer at all (refused, unknown host): said at once."""


@dataclass
class RecipeUse:
    """Options after the recipe, and what changed in the recipe on the way."""
    options: Any
    changed: list = field(default_factory=list)   # "fetch.rate 10.0 -> 2.0"
    created: bool = False

    def notes(self, work: Work) -> list:
        if self.created:
            return [f"recipe: wrote {work.recipe_toml} (rerun with `metfaces-build run --work "
                    f"{work.path}` alone)"]
        return [f"recipe: {c}" for c in self.changed]


def explicit_fields(opts, given: Optional[set] = None) -> set:
    """The option names a caller chose: `given` when known (the CLI's flags, Python's
    keywords), else the fields that differ from their defaults."""
    if given is not None:
        return set(given)
    cls = type(opts)
    return {name for name in option_names(cls)
            if not _has_default(cls, name) or getattr(opts, name) != default_of(cls, name)}


def _has_default(cls, name: str) -> bool:
    f = fields_by_name(cls)[name]
    return f.default is not dataclasses.MISSING or \
        f.default_factory is not dataclasses.MISSING  # type: ignore[misc]


def table_of(opts, keys: tuple) -> dict:
    """The recipe table of `opts`: its recipe fields, None left out, tuples as lists."""
    out = {}
    for k in keys:
        v = getattr(opts, k)
        if v is not None and v is not False and v != ():  # absent: the default
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def options_from_table(opts, table: dict, keys: tuple, explicit: set, where: str):
    """`opts` with each recipe value not given explicitly, checked by the one validation
    path of flags and keywords (infra.stage.check_values: types, choices, limits), so a
    hand-edited recipe is refused exactly as the same value on the command line."""
    values = {k: table[k] if k in table else default_of(type(opts), k)
              for k in keys if k not in explicit}
    return dataclasses.replace(opts, **check_values(type(opts), values, where))


def _merge(table: dict, opts, keys: tuple, explicit: set) -> dict:
    new = dict(table)
    for k in keys:
        if k in explicit:
            v = getattr(opts, k)
            if v is None or v == () or v is False and k not in table:
                new.pop(k, None)
            else:
                new[k] = list(v) if isinstance(v, tuple) else v
    return new


# ---- per stage -----------------------------------------------------------------------------

def use_fetch(work: Work, opts, given: Optional[set] = None, save: bool = True) -> RecipeUse:
    """fetch's options with the recipe: a selection given now replaces the recorded one
    (departments, search, ids, ids_file, from_json, from_csv together); without one the
    recorded selection is fetched again (new objects only: settled ones are skipped)."""
    explicit = explicit_fields(opts, given)
    recipe = load_recipe(work.recipe_toml)
    if recipe is None:
        if not _has_selection(opts) and not opts.since:
            raise UsageError(f"{work.path} has no recipe yet ({work.recipe_toml.name}): say what "
                             "to fetch once (--departments, --search, --ids, --ids-file, "
                             "--from-csv or --from-json); it is recorded there, and later "
                             f"`metfaces-build run --work {work.path}` alone repeats it")
        use = RecipeUse(opts, created=_has_selection(opts))
        if use.created and save and not opts.dry_run:
            save_recipe(work.recipe_toml, Recipe({"fetch": table_of(opts, FETCH_KEYS)}))
        return use
    if any(k in explicit for k in FETCH_SELECTION) or (opts.since and not _has_selection(
            _fetch_from_table(opts, recipe.section("fetch"), explicit))):
        explicit |= set(FETCH_SELECTION)  # a new selection replaces the old one whole
    table = recipe.section("fetch")
    merged = _merge(table, opts, FETCH_KEYS, explicit)
    new_opts = _fetch_from_table(opts, merged, explicit)
    use = RecipeUse(new_opts, changes(table, merged, "fetch"))
    if use.changed and save and not opts.dry_run:
        recipe.sections["fetch"] = merged
        save_recipe(work.recipe_toml, recipe)
    return use


def _fetch_from_table(opts, table: dict, explicit: set):
    return options_from_table(opts, table, FETCH_KEYS, explicit, "recipe.toml [fetch]")


def _has_selection(opts) -> bool:
    return any(getattr(opts, k) not in (None, "", ()) for k in FETCH_SELECTION)


def use_table(work: Work, section: str, opts, given: Optional[set] = None,
              save: bool = True) -> RecipeUse:
    """detect's or align's options with the recipe's table (written back when a value
    was given explicitly; a directory without a recipe gets none)."""
    keys = KEYS[section]
    explicit = explicit_fields(opts, given)
    recipe = load_recipe(work.recipe_toml)
    if recipe is None:
        return RecipeUse(opts)
    table = recipe.section(section)
    if section not in recipe.sections:  # first use: record the options in force
        merged = table_of(opts, keys)
    else:
        merged = _merge(table, opts, keys, explicit)
    use = RecipeUse(options_from_table(opts, merged, keys, explicit, f"recipe.toml [{section}]"),
                    changes(table, merged, section) if section in recipe.sections else [])
    if save and merged != table:
        recipe.sections[section] = merged
        save_recipe(work.recipe_toml, recipe)
    return use


def use_filter(work: Work, opts, given: Optional[set] = None, save: bool = True) -> RecipeUse:
    """filter's options with the recipe's thresholds: defaults, then the recipe (or, when
    a config file is given, that file instead), then threshold flags; the thresholds in
    force are written back, so a later `filter --overrides` keeps the run's config."""
    explicit = explicit_fields(opts, given)
    recipe = load_recipe(work.recipe_toml)
    if recipe is None:
        return RecipeUse(opts)
    table = recipe.section("filter")
    if "config" not in explicit and table:
        opts = _filter_from_table(opts, table, explicit)
    cfg = build_config(opts)
    resolved = filter_table(cfg)
    use = RecipeUse(opts, changes(table, resolved, "filter") if "filter" in recipe.sections else [])
    if save and resolved != table:
        recipe.sections["filter"] = resolved
        save_recipe(work.recipe_toml, recipe)
    return use


def filter_table(cfg) -> dict:
    """The recipe's [filter] table of a FilterConfig (the `[filter]` TOML `--config` reads)."""
    return {k: v for k, v in cfg.to_json().items() if v is not None}


def filter_config_of(recipe: Optional[Recipe]):
    """The FilterConfig the recipe says (defaults without one)."""
    if recipe is None or "filter" not in recipe.sections:
        return FilterConfig()
    return config_from_mapping(recipe.section("filter"), where="recipe.toml [filter]")


def _filter_from_table(opts, table: dict, explicit: set):
    cfg = config_from_mapping(table, where="recipe.toml [filter]")  # checks names and types
    values = {}
    for name in CONFIG_FIELDS:
        if name in explicit or name in ("crop_tests",):
            continue
        v = getattr(cfg, name)
        if name == "min_score":
            values[name] = tuple(f"{k}={x}" for k, x in v.items())
        elif hasattr(opts, name):
            values[name] = v
    if "no_crop_tests" not in explicit:
        values["no_crop_tests"] = not cfg.crop_tests
    return dataclasses.replace(opts, **values)


def recipe_of(work: Work) -> Optional[Recipe]:
    return load_recipe(work.recipe_toml)


# ---- the stages on a work directory, with its recipe ------------------------------------
# The CLI's commands, the Python API and `run` all call these, so they always agree.

def _noted(summary, use: RecipeUse, work: Work):
    summary.notes = use.notes(work) + list(summary.notes)
    return summary


def fetch_work(work: Work, opts, given: Optional[set] = None):
    """fetch with the recipe's selection and network options; once it has finished, the
    recipe's [fetch] table is stamped as fetched (`status` compares the two)."""
    use = use_fetch(work, opts, given)
    check_options(use.options)  # a usage error first, then whether the API is there
    why = unreachable(use.options.api)
    if why is not None:
        raise ApiGone(f"the API root {use.options.api} does not answer ({why}). If it was an "
                      "emulator (the demo's is gone when the demo ends), start one with "
                      "`metfaces-build emulator` and give its URL with --api (the recipe keeps "
                      "it); otherwise check the address or try again later")
    summary = fetch(work, use.options)
    recipe = recipe_of(work)
    if not use.options.dry_run and recipe is not None and summary.outage is None:
        write_stamp(work.stamps_json, "fetch", {"recipe": recipe.digest("fetch")})
    return _noted(summary, use, work)


def detect_work(work: Work, opts, given: Optional[set] = None):
    use = use_table(work, "detect", opts, given)
    return _noted(detect(work, use.options), use, work)


def filter_work(work: Work, opts, given: Optional[set] = None):
    use = use_filter(work, opts, given)
    return _noted(filter_stage(work, use.options), use, work)


def align_work(work: Work, opts, given: Optional[set] = None):
    """align of the work directory: its filtered.json, sources and images/, with the
    recipe's [align] table."""
    opts = dataclasses.replace(opts, json=str(work.filtered_json), source_images=str(work.path),
                               output_dir=str(work.images_dir))
    use = use_table(work, "align", opts, given)
    return _noted(align(use.options), use, work)
