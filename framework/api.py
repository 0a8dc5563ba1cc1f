"""Loom's Python API, the seam the CLI and Python users call: validate, plan, apply, launch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from framework.backends.base import Backend, RunContext
from framework.errors import PlanError
from framework.loading import LoadedRecipe, load_recipe, resolve_saved

if TYPE_CHECKING:  # planning and applying load lazily: `loom validate` needs none of it
    from framework.compile.plan import Plan, Step
    from framework.execute.executor import StepResult
    from framework.execute.state import State
    from framework.spec import Recipe

#: Step kinds that run on Ray, and those that need a cluster that outlives the command.
RAY_KINDS = {"training.tune", "training.train", "serving.deploy", "rollout.step"}
SERVING_KINDS = {"serving.deploy", "rollout.step"}


def validate(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None) -> LoadedRecipe:
    """Compose and validate ``recipe=NAME`` plus overrides; raises RecipeError listing every problem."""
    import dataclasses

    loaded = load_recipe(list(args), templates, project_dir)
    extra = _extra_params_warning(loaded.recipe)
    return dataclasses.replace(loaded, warnings=loaded.warnings + extra) if extra else loaded


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
    #: True once the preflight passed for this plan (``apply`` then does not repeat it).
    preflighted: bool = False


def plan(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
         refresh: bool = False, backend: Backend | None = None,
         progress: Callable[[str], None] = lambda s: None, until_kind: str | None = None) -> Planned:
    """Compile the recipe, diff it against what is applied, and run the preflight.

    Without ``refresh`` the comparison uses the workspace state only (fast; no engine SDK is
    imported); with it, every backend reports what its engine holds. The preflight (real
    backends only) checks, before any work, that the data matches the recipe and that every
    secret the changed steps need resolves.

    Args:
        until_kind: cut the plan after its last step of this kind (``loom train``:
            ``registry.register``) before the preflight, so it checks only what runs.

    Raises:
        RecipeError: "Preflight: ..." listing every data and secret problem at once.
    """
    from framework.backends.data_files import fingerprint_sources
    from framework.compile.compiler import compile_plan
    from framework.execute import executor
    from framework.execute.backends import Backends
    from framework.execute.inputs import data_fingerprints

    loaded = validate(args, templates, project_dir)
    project = loaded.project_dir
    # The preflight reports missing files with every other problem, so they do not stop the plan here.
    fingerprints = (fingerprint_sources(loaded.recipe, project) if backend is None
                    else data_fingerprints(loaded.recipe, project))
    missing = len(fingerprints) < len(loaded.recipe.data.sources)
    compiled = compile_plan(loaded.recipe, loaded.data, fingerprints, str(project))
    ctx = context(loaded.recipe, project, progress)
    ctx.data_fingerprints = fingerprints
    state = state_of(loaded.recipe, ctx.workspace, _relative(loaded.file, project))
    diffed = executor.plan_against(compiled, ctx, state, Backends(backend), refresh and not missing)
    if until_kind is not None:
        diffed = until(diffed, until_kind)
    planned = Planned(diffed, ctx, state, loaded.warnings)
    if backend is None:
        _preflight(planned, loaded.origins, check_data=missing)
    return planned


def _extra_params_warning(recipe: Recipe) -> tuple[str, ...]:
    extra = recipe.training.model.extra_params
    if not extra:
        return ()
    return (f"training.model.extra_params: {', '.join(sorted(extra))} passed to XGBoost unchecked "
            "(Loom checks only training.model.params).",)


def apply(planned: Planned | Plan, backend: Backend | None = None,
          progress: Callable[[str], None] = lambda s: None,
          on_step: Callable[[Step, str], None] = lambda step, phase: None,
          options: dict[str, dict[str, Any]] | None = None) -> list[StepResult]:
    """Apply exactly the plan's changes (a saved Plan is re-validated and checked for staleness).

    Steps that need Ray share one connection; with serving steps the workspace's Ray head is
    started first. ``options`` passes constructor arguments to backends by class name, e.g.
    ``{"RolloutBackend": {"wait": False}}`` for ``loom launch --detach``.
    """
    from framework.compile.plan import Plan
    from framework.execute import executor
    from framework.execute.backends import Backends

    if isinstance(planned, Plan):
        planned = _replan_context(planned, progress)
    planned.ctx.progress = progress
    backends = Backends(backend, options)
    changed = {s.kind for s in planned.plan.changes}
    if backend is None and not planned.preflighted:
        _preflight(planned)
    if backend is None:
        _check_data(planned, changed)
    if backend is not None or not changed & RAY_KINDS:
        return executor.apply(planned.plan, planned.ctx, planned.state, backends, on_step)
    from framework.backends.session import engine_session

    with engine_session(planned.ctx, serving=bool(changed & SERVING_KINDS)):
        return executor.apply(planned.plan, planned.ctx, planned.state, backends, on_step)


def plan_destroy(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
                 purge_registry: bool = False) -> Planned:
    """The plan that removes recipe ``args``'s steps from the workspace (``loom destroy``)."""
    from framework.compile.compiler import compile_plan
    from framework.execute.destroy import destroy_plan

    loaded = validate(args, templates, project_dir)
    recipe, project = loaded.recipe, loaded.project_dir
    ctx = context(recipe, project)
    state = state_of(recipe, ctx.workspace, _relative(loaded.file, project))
    compiled = compile_plan(recipe, loaded.data, {}, str(project))
    return Planned(destroy_plan(compiled, state, recipe.project, purge_registry), ctx, state,
                   loaded.warnings)


def destroy(planned: Planned, purge_registry: bool = False, backend: Backend | None = None,
            progress: Callable[[str], None] = lambda s: None,
            on_step: Callable[[Step, str], None] = lambda step, phase: None) -> list[StepResult]:
    """Apply a destroy plan, then forget the recipe: its state section and finished rollout.

    Serving steps are removed from the recipe's running cluster; when none runs, nothing is
    deployed, so they are only forgotten (no cluster is started to destroy).
    """
    from framework.execute import executor
    from framework.execute.backends import Backends
    from framework.execute.destroy import HISTORY_KINDS

    planned.ctx.progress = progress
    ctx, kinds = planned.ctx, {s.kind for s in planned.plan.steps}
    forget = set() if purge_registry else set(HISTORY_KINDS)
    if backend is None and kinds & SERVING_KINDS:
        from framework.backends import ray_runtime

        if not ray_runtime.connect(ctx.recipe, ctx.workspace, start=False):
            forget |= SERVING_KINDS
    results = executor.apply(planned.plan, ctx, planned.state, Backends(backend), on_step,
                             forget_only=frozenset(forget))
    planned.state.drop(ctx.recipe.app_name)
    return results


def _preflight(planned: Planned, origin: Callable[[str], str | None] | None = None,
               check_data: bool = False) -> None:
    """Data and secrets must be ready for the plan's changes before any step runs.

    Raises:
        RecipeError: "Preflight: ..." with every problem (file, recipe key, fix).
    """
    from framework.backends import preflight

    kinds = {s.kind for s in planned.plan.changes} | (preflight.DATA_KINDS if check_data else set())
    problems = preflight.preflight(planned.ctx.recipe, planned.ctx.project_dir, kinds,
                                   origin or (lambda path: None))
    preflight.raise_for(problems)
    planned.preflighted = True


def _check_data(planned: Planned, changed: set[str]) -> None:
    """Before a plan that reads the data applies anything, its checks run on the data itself;
    the training run logs the results (``backends.data_quality``).

    Raises:
        RecipeError: every failed check; nothing is applied.
    """
    from framework.backends import data_quality
    from framework.backends.preflight import DATA_KINDS

    if changed & DATA_KINDS:
        planned.ctx.outputs[data_quality.OUTPUTS_KEY] = data_quality.check_before_apply(planned.ctx)


def _replan_context(saved: Plan, progress: Callable[[str], None]) -> Planned:
    """Context for a saved plan; refuses it when its inputs (data files, Loom) changed since."""
    from framework.compile.compiler import compile_plan
    from framework.execute.inputs import data_fingerprints

    project = Path(saved.project_dir)
    recipe = resolve_saved(saved.recipe)
    fingerprints = data_fingerprints(recipe, project)
    fresh = compile_plan(recipe, saved.recipe, fingerprints, str(project))
    saved_fps = [(s.address, s.fingerprint) for s in saved.steps if s.action != "delete"]
    if [(s.address, s.fingerprint) for s in fresh.steps] != saved_fps:
        raise PlanError("The plan's inputs changed since it was made (a data file, or Loom itself). "
                        f"Make a new plan with `loom plan recipe={recipe.name} -o plan.json` (and the "
                        "overrides you planned with).")
    ctx = context(recipe, project, progress)
    ctx.data_fingerprints = fingerprints
    return Planned(saved, ctx, state_of(recipe, ctx.workspace), warnings=())


def state_of(recipe: Recipe, workspace: Path, recipe_file: str | None = None) -> State:
    """The recipe's own section of the workspace state, and what to record about the recipe."""
    from framework.execute.state import State

    about = {"model_id": recipe.model_id, "app_name": recipe.app_name,
             "feast_project": recipe.project}
    if recipe_file:
        about["recipe_file"] = recipe_file
    return State(workspace, recipe.name, about)


def _relative(path: Path, project: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(project.resolve()))
    except ValueError:  # a recipe from a template folder outside the project
        return str(path)


def until(plan: Plan, last_kind: str) -> Plan:
    """The plan cut after its last step of ``last_kind`` (``loom train`` stops at registration)."""
    last = max(i for i, s in enumerate(plan.steps) if s.kind == last_kind)
    return plan.model_copy(update={"steps": tuple(s for s in plan.steps[: last + 1] if s.action != "delete")})


def load_plan(path: Path) -> Plan:
    """Read a plan saved with ``loom plan -o``."""
    from framework.compile.plan import Plan

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"Cannot read plan file {path}: {exc.strerror}.") from exc
    return Plan.from_json(text, source=str(path))


@dataclass(frozen=True)
class BatchOptions:
    """``loom batch``'s command-line choices; None takes the recipe's ``batch`` section."""

    input: Path | None = None
    output: Path | None = None
    version: str | None = None
    alias: str | None = None
    as_of: str | None = None
    force: bool = False


def batch(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
          options: BatchOptions = BatchOptions(),
          progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Score a table of entities with a registered version (``loom batch``); returns the summary.

    Raises:
        RecipeError: no input given (``--input`` or ``batch.input``).
        DataError / BackendError: from the job (bad input, no such version, a failed engine).
    """
    from framework.backends.batch import BatchRequest, run_batch
    from framework.errors import Problem, RecipeError

    loaded = validate(args, templates, project_dir)
    recipe, project = loaded.recipe, loaded.project_dir
    given = options.input or (Path(recipe.batch.input) if recipe.batch.input else None)
    if given is None:
        raise RecipeError([Problem(path="batch.input", message="No input to score.",
                                   hint="Give --input PATH (parquet or CSV of entity keys), or set "
                                        "batch.input in the recipe.")])
    ctx = context(recipe, project, progress)
    out = options.output or (Path(recipe.batch.output) if recipe.batch.output else
                             ctx.workspace / "batch" / recipe.name / "predictions.parquet")
    req = BatchRequest(input=_in_project(given, project), output=_in_project(out, project),
                       version=options.version, alias=options.alias, as_of=options.as_of,
                       force=options.force)
    return run_batch(ctx, req)


def optimize(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
             version: str | None = None, alias: str | None = None,
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """``loom optimize``: compile a registered version (or reuse its checked library), check it
    against XGBoost and time both at ``compiled.BATCH_SIZES`` rows; returns the table.

    Raises:
        BackendError: no such version, no C compiler, or the library predicts differently.
    """
    from framework.backends import compiled
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.model_registry.versions import resolve_model

    loaded = validate(args, templates, project_dir)
    recipe = loaded.recipe
    ctx = context(recipe, loaded.project_dir, progress)
    uri = tracking_uri(recipe, ctx.workspace)
    model = resolve_model(uri, recipe.model_id, version or alias or recipe.registry.champion_alias)
    progress(f"version {model['version']}: compiling (or reusing its library) and checking it "
             "against XGBoost")
    return compiled.optimize(uri, model, progress)


def stream(action: str, args: list[str], templates: tuple[str, ...] = (),
           project_dir: Path | None = None,
           progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """``loom stream up | status | down``: the recipe's stream consumers; returns their status.

    Raises:
        RecipeError: the recipe has no ``streaming`` section.
        BackendError: the model is not served, the bus does not answer, or CPUs are short.
    """
    from framework.streaming import control

    loaded = validate(args, templates, project_dir)
    ctx = context(loaded.recipe, loaded.project_dir, progress)
    actions = {"up": lambda: control.up(ctx, progress), "status": lambda: control.status(ctx),
               "down": lambda: control.down(ctx)}
    return actions[action]()


def monitor(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None,
            window: str | None = "1h") -> dict[str, Any]:
    """``loom monitor``: drift and data quality of the prediction log over ``window`` (``1h``,
    ``7d``, ``all``), per version against its training reference profile. A version whose flags
    changed since the last run gets a ``drift`` line in the model's rollout audit log.

    Raises:
        DataError: a malformed window.
    """
    from framework.monitor.audit import record_drift
    from framework.monitor.logread import parse_window
    from framework.monitor.report import monitor_report

    loaded = validate(args, templates, project_dir)
    ctx = context(loaded.recipe, loaded.project_dir)
    recipe = loaded.recipe
    report = monitor_report(recipe, ctx.workspace, parse_window(window))
    # Outside a rollout monitoring.on_drift has nothing to act on: a change of findings is recorded.
    report["recorded"] = record_drift(ctx.workspace, recipe.app_name, report,
                                      recipe.monitoring.on_drift)
    return report


def monitor_evaluate(args: list[str], labels: Path, templates: tuple[str, ...] = (),
                     project_dir: Path | None = None, label_column: str | None = None,
                     time_column: str | None = None, window: str | None = None) -> dict[str, Any]:
    """``loom monitor evaluate``: the prediction log joined with labels that arrived later; the
    task's metrics per version and per day, and fairness per ``monitoring.fairness.group_by`` group.

    Raises:
        DataError: no log, or a labels file that cannot be read or joined (names file, column, fix).
    """
    from framework.monitor.logread import parse_window
    from framework.monitor.report import EvaluateRequest, evaluate_report

    loaded = validate(args, templates, project_dir)
    ctx = context(loaded.recipe, loaded.project_dir)
    req = EvaluateRequest(labels=_in_project(labels, loaded.project_dir), label_column=label_column,
                          time_column=time_column, window_s=parse_window(window))
    return evaluate_report(loaded.recipe, ctx.workspace, req)


def _in_project(path: Path, project: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else (project / path).resolve()


def schema() -> dict[str, Any]:
    """JSON Schema of the recipe language (for editors and `loom schema`)."""
    from framework.spec import Recipe

    out = Recipe.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Loom recipe"
    out.setdefault("properties", {})["defaults"] = {
        "type": "array", "description": "Hydra defaults list: template options from conf/ (group: option)."}
    return out
