"""Where recipes and templates are found: the project directory, template folders and recipe names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from framework.errors import CompositionError, Problem
from framework.spec.checks import did_you_mean

TEMPLATE_PATH_ENV = "LOOM_TEMPLATE_PATH"
#: The template library shipped beside the package (a source checkout or an editable install).
BUNDLED_CONF = Path(__file__).resolve().parents[2] / "conf"


@dataclass(frozen=True)
class SearchPath:
    """Folders Hydra searches for template options, first match wins."""

    recipe_file: Path
    template_dirs: tuple[Path, ...]

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Recipe folder first (Hydra's primary config dir), then team templates, then shared conf."""
        return (self.recipe_file.parent, *self.template_dirs)


def display(path: Path | str) -> str:
    """A path as a person reads it: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def template_dirs(project_dir: Path, extra: list[str] | tuple[str, ...] = ()) -> tuple[Path, ...]:
    """``--templates`` folders, then ``$LOOM_TEMPLATE_PATH`` entries, then the project's ``conf/``."""
    env = [p for p in os.environ.get(TEMPLATE_PATH_ENV, "").split(os.pathsep) if p]
    dirs: list[Path] = []
    problems = []
    for origin, raw in [("--templates", p) for p in extra] + [(TEMPLATE_PATH_ENV, p) for p in env]:
        path = Path(raw).expanduser().resolve()
        if not path.is_dir():
            problems.append(Problem(path=origin, message=f"Template folder '{raw}' does not exist.",
                                    hint="Pass an existing directory with group folders such as rollout/."))
        elif path not in dirs:
            dirs.append(path)
    if problems:
        raise CompositionError(problems, title="Cannot compose the recipe")
    conf = project_dir / "conf"
    shared = conf if conf.is_dir() else BUNDLED_CONF
    if shared.is_dir() and shared.resolve() not in dirs:
        dirs.append(shared.resolve())
    return tuple(dirs)


def resolve_recipe(spec: str, project_dir: Path) -> Path:
    """``churn`` → ``<project>/recipes/churn.yaml``; a path to a YAML file is taken as it is."""
    as_path = Path(spec).expanduser()
    if as_path.suffix in (".yaml", ".yml") or os.sep in spec:
        path = as_path if as_path.is_absolute() else Path.cwd() / as_path
        if path.is_file():
            return path.resolve()
        raise CompositionError(Problem(path="recipe", value=spec, has_value=True,
                                       message="No recipe file at this path.",
                                       hint="Give a recipe name from recipes/ or a path to a YAML file."),
                               title="Cannot compose the recipe")
    recipes = project_dir / "recipes"
    for ext in (".yaml", ".yml"):
        if (recipes / f"{spec}{ext}").is_file():
            return (recipes / f"{spec}{ext}").resolve()
    names = sorted(p.stem for p in recipes.glob("*.y*ml")) if recipes.is_dir() else []
    raise CompositionError(Problem(path="recipe", value=spec, has_value=True,
                                   message=f"Could not find recipe '{spec}' in {display(recipes)}.",
                                   hint=did_you_mean(spec, names)),
                           title="Cannot compose the recipe")
