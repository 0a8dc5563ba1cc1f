"""Loom's Python API, the seam the CLI and Python users call: validate, plan, apply, launch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framework.backends.base import Backend, RunContext
from framework.compile.compiler import compile_plan
from framework.compile.plan import Plan, Step
from framework.errors import PlanError
from framework.execute import executor
from framework.execute.backends import Backends
from framework.execute.inputs import data_fingerprints
from framework.execute.state import State
from framework.loading import LoadedRecipe, load_recipe, validate_dict
from framework.spec import Recipe


def validate(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None) -> LoadedRecipe:
    """Compose and validate ``recipe=NAME`` plus overrides; raises RecipeError listing every problem."""
    return load_recipe(list(args), templates, project_dir)


def workspace_of(recipe: Recipe, project_dir: Path) -> Path:
    """The absolute workspace directory of a recipe."""
    path = Path(recipe.env.workspace_dir).expanduser()
    return path if path.is_absolute() else (project_dir / path).resolve()


def context(recipe: Recipe, project_dir: Path, progress: Callable[[str], None] = lambda s: None) -> RunContext:
    """The run context backends see for this recipe."""
    return RunContext(recipe=recipe, project_dir=project_dir, workspace=workspace_of(recipe, project_dir),
                      progress=progress)


@dataclass
class Planned:
    """A plan with the context it was made in."""

    plan: Plan
    ctx: RunContext
    state: State
    warnings: tuple[str, ...]


def plan(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
         refresh: bool = False, backend: Backend | None = None,
         progress: Callable[[str], None] = lambda s: None) -> Planned:
    """Compile the recipe and diff it against what is applied.

    Without ``refresh`` the comparison uses the workspace state only (fast; no engine SDK is
    imported); with it, every backend reports what its engine holds.
    """
    loaded = validate(args, templates, project_dir)
    project = loaded.project_dir
    compiled = compile_plan(loaded.recipe, loaded.data, data_fingerprints(loaded.recipe, project), str(project))
    ctx = context(loaded.recipe, project, progress)
    state = State(ctx.workspace)
    diffed = executor.plan_against(compiled, ctx, state, Backends(backend), refresh)
    return Planned(diffed, ctx, state, loaded.warnings)


def apply(planned: Planned | Plan, backend: Backend | None = None,
          progress: Callable[[str], None] = lambda s: None,
          on_step: Callable[[Step, str], None] = lambda step, phase: None) -> list[executor.StepResult]:
    """Apply exactly the plan's changes (a saved Plan is re-validated and checked for staleness)."""
    if isinstance(planned, Plan):
        planned = _replan_context(planned, progress)
    planned.ctx.progress = progress
    return executor.apply(planned.plan, planned.ctx, planned.state, Backends(backend), on_step)


def _replan_context(saved: Plan, progress: Callable[[str], None]) -> Planned:
    """Context for a saved plan; refuses it when its inputs (data files, Loom) changed since."""
    project = Path(saved.project_dir)
    recipe = validate_dict(saved.recipe)
    fresh = compile_plan(recipe, saved.recipe, data_fingerprints(recipe, project), str(project))
    saved_fps = [(s.address, s.fingerprint) for s in saved.steps if s.action != "delete"]
    if [(s.address, s.fingerprint) for s in fresh.steps] != saved_fps:
        raise PlanError("The plan's inputs changed since it was made (a data file, or Loom itself). "
                        "Make a new plan with `loom plan -o plan.json`.")
    ctx = context(recipe, project, progress)
    return Planned(saved, ctx, State(ctx.workspace), warnings=())


def load_plan(path: Path) -> Plan:
    """Read a plan saved with ``loom plan -o``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"Cannot read plan file {path}: {exc.strerror}.") from exc
    return Plan.from_json(text, source=str(path))


def schema() -> dict[str, Any]:
    """JSON Schema of the recipe language (for editors and `loom schema`)."""
    out = Recipe.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Loom recipe"
    out.setdefault("properties", {})["defaults"] = {
        "type": "array", "description": "Hydra defaults list: template options from conf/ (group: option)."}
    return out
