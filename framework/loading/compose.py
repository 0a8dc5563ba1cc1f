"""Composes a recipe with Hydra's Compose API and validates it into a Recipe, reporting every problem."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from framework.errors import CompositionError, Problem, RecipeError
from framework.loading import bounds, hostile, provenance, sweeps
from framework.loading.fastyaml import libyaml_loader
from framework.loading.paths import SearchPath, display, resolve_recipe, template_dirs
from framework.spec import Recipe, run_checks
from framework.spec.checks import did_you_mean


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe with everything needed to explain it: data, origins, warnings."""

    recipe: Recipe
    data: dict[str, Any]
    file: Path
    project_dir: Path
    origins: provenance.Origins
    warnings: tuple[str, ...]


def split_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``['recipe=churn', 'rollout=canary']`` → ``('churn', ['rollout=canary'])``."""
    recipe, rest = None, []
    for arg in args:
        if arg.startswith("recipe="):
            recipe = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return recipe, rest


def _parse_overrides(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if not overrides:
        return []
    parser = OverridesParser.create()
    parsed, problems = [], []
    for text in overrides:
        if bounds.nesting_depth(text) > bounds.MAX_DEPTH:
            problems.append(Problem(path=text.split("=", 1)[0].lstrip("+~"), file=provenance.COMMAND_LINE,
                                    message=f"This override nests brackets more than {bounds.MAX_DEPTH} "
                                            "deep; that is the limit.",
                                    hint="Flatten the value: recipes need only a few levels."))
            continue
        try:
            parsed.extend(parser.parse_overrides([text]))
        except OverrideParseException as exc:
            problems.append(Problem(path=text.split("=", 1)[0], file=provenance.COMMAND_LINE,
                                    value=text, has_value=True, message="Cannot parse this override.",
                                    hint="Use key=value, +key=value to add a key, ~key to delete; "
                                         f"Hydra said: {str(exc).splitlines()[0]}"))
    if problems:
        raise CompositionError(problems, title="Cannot compose the recipe")
    return parsed


def _escaping_choice(ov: Any, text: str, search: SearchPath) -> Problem | None:
    """A Problem when a template choice such as ``serving=../../x`` names a file outside the search path."""
    key = ov.key_or_group.lstrip("+~")
    group = "/" in key or ("." not in key and any((d / key).is_dir() for d in search.dirs))
    values = ov.value() if isinstance(ov.value(), list) else [ov.value()]
    if not group or not (bounds.leaves_search_path(key.lstrip("/"))
                         or any(isinstance(v, str) and bounds.leaves_search_path(v) for v in values)):
        return None
    group_dir = key.strip("/")
    options = sorted({p.stem for d in search.dirs for p in (d / group_dir).glob("*.yaml")}) \
        if not bounds.leaves_search_path(group_dir) else []
    return Problem(path=key, file=provenance.COMMAND_LINE, value=text, has_value=True,
                   message="A template choice may not leave the template folders: '..' and absolute "
                           "paths are refused.",
                   hint=f"Name an option of the group. {did_you_mean('', options)}")


def shadow_warnings(search: SearchPath) -> list[str]:
    """One warning per template option found in more than one folder (the first one wins)."""
    seen: dict[str, Path] = {}
    warnings = []
    for folder in search.template_dirs:
        for file in sorted(folder.glob("*/*.yaml")):
            rel = file.relative_to(folder).as_posix()
            if rel in seen:
                warnings.append(f"Template '{rel[:-5]}' in {display(seen[rel])} shadows "
                                f"{display(file)}; the first one is used.")
            else:
                seen[rel] = file
    return warnings


def _hydra_problem(exc: Exception, recipe_file: Path, search: SearchPath) -> Problem:
    """A Hydra or YAML failure as a Problem: unknown option, bad key override, unreadable YAML."""
    if isinstance(exc, bounds.LimitError):
        return exc.problem_at(display)
    text = str(exc)
    missing = re.search(r"Could not find '([^']+)'", text)
    if missing:
        group, _, option = missing.group(1).rpartition("/")
        options = sorted({p.stem for d in search.dirs for p in (d / group).glob("*.yaml")}) if group else []
        return Problem(path=group or "recipe", file=display(recipe_file), value=option, has_value=True,
                       message=f"Could not find template '{missing.group(1)}'.",
                       hint=f"Searched {', '.join(display(d) for d in search.dirs)}. "
                            + did_you_mean(option, options))
    present = re.search(r"An item is already at '([^']+)'", text)
    if present:
        return Problem(path=present.group(1), file=provenance.COMMAND_LINE,
                       message="This key is already in the recipe, so '+' cannot add it.",
                       hint=f"Set it without the '+': {present.group(1)}=... "
                            f"(or '++{present.group(1)}=...' to add or override).")
    override = re.search(r"Could not (?:override|append to config\.|delete from config\.) '?([^'.\s][^'\s]*)'?", text)
    if override:
        return Problem(path=override.group(1), file=provenance.COMMAND_LINE,
                       message="This key is not in the recipe, so the override cannot set it.",
                       hint=f"Check the spelling (`loom schema` lists every key); to add a new key use "
                            f"+{override.group(1)}=...")
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return Problem(path="", file=f"{display(mark.name)}:{mark.line + 1}",
                       message=f"Unreadable YAML: {getattr(exc, 'problem', text)}"
                               + (" (python tags never load)" if "python/" in text else "."),
                       hint="Recipes are plain YAML: no !!python tags, balanced brackets and quotes.")
    return Problem(path="", file=display(recipe_file), message=text.splitlines()[0] if text else repr(exc))


def _compose(recipe_file: Path, search: SearchPath, overrides: list[str]) -> tuple[Any, list[tuple[str, str]]]:
    """The composed (unresolved) OmegaConf config and the merge order as (config_path, package)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from yaml import YAMLError

    searchpath = "hydra.searchpath=[" + ",".join(f"file://{d}" for d in search.template_dirs) + "]"
    GlobalHydra.instance().clear()
    try:
        with libyaml_loader(), initialize_config_dir(config_dir=str(recipe_file.parent),
                                                     version_base="1.3"):
            cfg = compose(recipe_file.stem, overrides=[*overrides, searchpath], return_hydra_config=True)
    except (HydraException, YAMLError, ValueError) as exc:
        raise CompositionError(_hydra_problem(exc, recipe_file, search),
                               title="Cannot compose the recipe") from exc
    finally:
        GlobalHydra.instance().clear()
    # Hydra records the chosen option of every group, last merged first.
    choices = [(f"{group}/{option}", group) for group, option in cfg.hydra.runtime.choices.items()
               if option and not group.startswith("hydra/")][::-1]
    with open_dict(cfg):
        del cfg["hydra"]
    order = [(path, provenance.package_of(path, group, search.dirs)) for path, group in choices]
    return cfg, (order + [("", "")]) if provenance.self_last(recipe_file) else ([("", "")] + order)


def load_recipe(args: list[str], templates: list[str] | tuple[str, ...] = (),
                project_dir: Path | None = None) -> LoadedRecipe:
    """Compose ``recipe=NAME`` plus Hydra overrides, reject hostile content, validate, run the checks.

    Raises:
        RecipeError: with every problem found, each naming file, key path, value, rule and hint.
    """
    from omegaconf import OmegaConf

    project_dir = (project_dir or Path.cwd()).resolve()
    name, overrides = split_args(args)
    if name is None:
        names = sorted(p.stem for p in (project_dir / "recipes").glob("*.y*ml"))
        raise CompositionError(Problem(path="recipe", message="No recipe given.",
                                       hint=f"Add recipe=NAME, e.g. recipe={names[0] if names else 'churn'}. "
                                            + did_you_mean("", names)), title="Cannot compose the recipe")
    recipe_file = resolve_recipe(name, project_dir)
    search = SearchPath(recipe_file, template_dirs(project_dir, templates))
    parsed = _parse_overrides(overrides)
    escapes = [p for ov, text in zip(parsed, overrides) if (p := _escaping_choice(ov, text, search))]
    if escapes:
        raise CompositionError(escapes, title="Cannot compose the recipe")
    sweep_dims, sweep_problems, plain = {}, [], []
    for ov, text in zip(parsed, overrides):
        if ov.is_sweep_override():
            key = ov.key_or_group
            problem = sweeps.sweep_problem(key, text)
            if problem:
                sweep_problems.append(problem)
                continue
            try:
                sweep_dims[key[len(sweeps.PARAMS_PREFIX):]] = sweeps.search_dim(ov)
            except ValueError as exc:
                sweep_problems.append(Problem(path=key, file=provenance.COMMAND_LINE, value=text,
                                              has_value=True, message=str(exc) + ".",
                                              hint="e.g. choice(3,6,9), range(2,10), "
                                                   "tag(log,interval(0.01,0.3))"))
        else:
            plain.append(text)
    if sweep_problems:
        raise CompositionError(sweep_problems, title="Cannot compose the recipe")
    cfg, order = _compose(recipe_file, search, plain)
    origins = provenance.build(order, search.dirs, recipe_file,
                               [(ov.key_or_group.lstrip("+~"), ov.value()) for ov in parsed
                                if not ov.is_sweep_override() and "/" not in ov.key_or_group
                                and not ov.is_delete()])
    raw = OmegaConf.to_container(cfg, resolve=False)
    problems, secrets = hostile.scan(raw, origins)
    if problems:
        raise RecipeError(problems)
    for path, var in secrets.items():
        OmegaConf.update(cfg, path, {"env": var}, merge=False)
    data = _resolve(cfg, origins)
    sweeps.apply_sweeps(data, sweep_dims)
    recipe = validate_dict(data, origins, secrets)
    return LoadedRecipe(recipe=recipe, data=_env_references(data, raw), file=recipe_file,
                        project_dir=project_dir, origins=origins,
                        warnings=tuple(shadow_warnings(search)))


def _resolve(cfg: Any, origins: Any) -> dict[str, Any]:
    """The config with ``${...}`` resolved; a missing environment variable is a Problem."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise RecipeError(Problem(path=key, file=origins(key), message=str(exc).splitlines()[0],
                                  hint="Set the environment variable, or give a default: "
                                       "${oc.env:VAR,default}.")) from exc


def _env_references(data: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """``data`` with environment-driven fields back to their ``${oc.env:...}`` text.

    This is the form plans, ``--show`` and lineage carry: a tracking URI or Redis address from the
    environment may hold credentials, so its value never leaves the process that resolved it.
    """
    shown = copy.deepcopy(data)
    for path, value in hostile.walk(raw):
        if isinstance(value, str) and "${oc.env" in value and hostile.field_role(path) == "env":
            hostile.set_path(shown, path, value)
    return shown


def resolve_saved(data: dict[str, Any]) -> Recipe:
    """Validate the recipe a saved plan carries, resolving its ``${oc.env:...}`` references now."""
    from omegaconf import OmegaConf

    problems, _ = hostile.scan(data, lambda path: "plan")
    if problems:
        raise RecipeError(problems, title="The saved plan's recipe is refused")
    return validate_dict(_resolve(OmegaConf.create(data), lambda path: "plan"))


def validate_dict(data: dict[str, Any], origins: Any = None, secrets: dict[str, str] | None = None) -> Recipe:
    """Validate a composed dict: the models first, then every cross-section check."""
    origins = origins or (lambda path: None)
    secret_paths = set(secrets or ())
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        from framework.loading.report import problems_from

        raise RecipeError(problems_from(exc, origins, lambda p: p in secret_paths
                                        or hostile.field_role(p) == "secret")) from exc
    problems = [Problem(path=p.path, file=origins(p.path), value=p.value, has_value=p.has_value,
                        message=p.message, hint=p.hint) for p in run_checks(recipe)]
    if problems:
        raise RecipeError(problems)
    return recipe
