"""Operational commands beside plan/apply: cluster, features, registry, predict, export, rollout.

Like ``api``, this is a seam the CLI calls; every function takes the same ``recipe=NAME [overrides]``
arguments, loads the recipe, and calls one backend function (heavy SDKs load inside those).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from framework import api
from framework.backends.base import RunContext
from framework.spec.env import Env


def _ctx(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None) -> RunContext:
    loaded = api.validate(args, templates, project_dir)
    return api.context(loaded.recipe, loaded.project_dir)


def _cluster_target(args: list[str], templates: tuple[str, ...], project_dir: Path | None) -> tuple[Any, Path]:
    """The recipe (or Env defaults when no recipe is named) and its workspace."""
    if any(a.startswith("recipe=") for a in args):
        ctx = _ctx(args, templates, project_dir)
        return ctx.recipe, ctx.workspace
    if args:
        from framework.errors import CompositionError, Problem

        raise CompositionError(Problem(path="recipe", message="Overrides need a recipe.",
                                       hint=f"Add recipe=NAME before {args[0]}."))
    project = (project_dir or Path.cwd()).resolve()
    env = Env()
    return SimpleNamespace(env=env), project / env.workspace_dir


def cluster(action: str, args: list[str], templates: tuple[str, ...] = (),
            project_dir: Path | None = None) -> dict[str, Any]:
    """``loom up|down|env``: the workspace's embedded Ray head (``status`` reports it too); ``env``:
    the variables the ``ray``/``serve`` CLIs need for it (``ray_cli_env.cli_env``)."""
    from framework.backends.ray_serve import commands

    recipe, workspace = _cluster_target(args, templates, project_dir)
    if action == "env":
        from framework.backends import ray_cli_env

        return ray_cli_env.cli_env(recipe, workspace)
    if action == "up":
        return commands.cluster_up(recipe, workspace)
    if action == "down":
        return commands.cluster_down(workspace)
    return commands.cluster_status(workspace)


def status(args: list[str], templates: tuple[str, ...] = (),
           project_dir: Path | None = None) -> dict[str, Any]:
    """``loom status [recipe=NAME]``: every applied recipe (or one in detail) and the Ray head."""
    from framework.backends.ray_serve import commands
    from framework.execute import overview

    recipe, workspace = _cluster_target(args, templates, project_dir)
    out: dict[str, Any] = {"workspace": str(workspace), "cluster": commands.cluster_status(workspace)}
    if hasattr(recipe, "name"):
        out["recipe"] = overview.detail(workspace, recipe.name)
    else:
        out["recipes"] = overview.recipes(workspace)
    return out


def status_table(rows: list[dict[str, Any]]) -> str:
    """``loom status``'s table of applied recipes."""
    from framework.execute.overview import format_table

    return format_table(rows)


def _split_pairs(args: list[str], templates: tuple[str, ...],
                 project_dir: Path | None) -> tuple[list[str], list[str]]:
    """``recipe=churn env=cluster customer_id=42`` → recipe args (recipe, overrides) and name=value pairs.

    Dotted keys, ``+``/``~`` overrides and template groups (``env=cluster``) are overrides.
    """
    from framework.loading.paths import template_dirs

    groups = {p.name for d in template_dirs((project_dir or Path.cwd()).resolve(), templates)
              for p in d.iterdir() if p.is_dir()}

    def is_recipe_arg(arg: str) -> bool:
        key = arg.split("=", 1)[0]
        return key == "recipe" or key in groups or "." in key or arg.startswith(("+", "~"))

    return [a for a in args if is_recipe_arg(a)], [a for a in args if not is_recipe_arg(a)]


def predict(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None) -> dict[str, Any]:
    """``loom predict recipe=churn customer_id=C000042 [feature=value ...]``."""
    from framework.backends.ray_serve import commands

    recipe_args, pairs = _split_pairs(args, templates, project_dir)
    ctx = _ctx(recipe_args, templates, project_dir)
    return commands.predict(ctx.recipe, ctx.workspace, pairs)


def export_serve_config(args: list[str], out: Path, templates: tuple[str, ...] = (),
                        project_dir: Path | None = None) -> Path:
    """``loom export serve-config``: a Serve config file that ``serve deploy`` accepts."""
    from framework.backends.ray_serve import commands

    ctx = _ctx(args, templates, project_dir)
    return commands.export_serve_config(ctx.recipe, ctx.workspace, ctx.project_dir, out)


def export_kuberay(args: list[str], out_dir: Path, templates: tuple[str, ...] = (),
                   project_dir: Path | None = None) -> list[Path]:
    """``loom export kuberay``: a RayJob, a RayService and the Secret's keys, in ``out_dir``."""
    from framework.backends import kuberay

    loaded = api.validate(args, templates, project_dir)
    ctx = api.context(loaded.recipe, loaded.project_dir)
    return kuberay.export_kuberay(ctx.recipe, ctx.workspace, ctx.project_dir, out_dir,
                                  recipe_data=loaded.data)


def launch_summary(ctx: RunContext) -> list[str]:
    """The endpoint, versions and a ready-to-paste curl, after a launch that deployed."""
    from framework.backends.ray_serve import commands

    outputs = ctx.outputs.get("serving.deploy") or {}
    return commands.launch_summary(ctx.recipe, outputs, ctx.project_dir) if outputs else []


def materialize(args: list[str], end: datetime | None = None, templates: tuple[str, ...] = (),
                project_dir: Path | None = None) -> dict[str, Any]:
    """``loom features materialize``: load feature values up to ``end`` (default now) online."""
    from framework.backends.feast import commands

    return commands.materialize(_ctx(args, templates, project_dir), end)


def features_get(args: list[str], templates: tuple[str, ...] = (),
                 project_dir: Path | None = None) -> dict[str, Any]:
    """``loom features get recipe=churn customer_id=C000042``: the online features of one entity."""
    from framework.backends.feast import commands

    recipe_args, pairs = _split_pairs(args, templates, project_dir)
    ctx = _ctx(recipe_args, templates, project_dir)
    return commands.get_online(ctx, dict(a.split("=", 1) for a in pairs if "=" in a))


def registry(action: str, args: list[str], version: str | None = None, templates: tuple[str, ...] = (),
             project_dir: Path | None = None) -> Any:
    """``loom registry list|show|promote``: the recipe's registered model versions."""
    from framework.backends.model_registry import versions

    ctx = _ctx(args, templates, project_dir)
    if action == "list":
        return versions.list_versions(ctx)
    if action == "show":
        return versions.show_version(ctx, version or ctx.recipe.registry.champion_alias)
    return versions.promote(ctx, version or ctx.recipe.registry.candidate_alias)


def rollout_status(args: list[str], templates: tuple[str, ...] = (), project_dir: Path | None = None) -> str:
    """``loom rollout status``: current step, weights, last analyses and a timeline (from files)."""
    from framework.rollout.status import format_status, status

    ctx = _ctx(args, templates, project_dir)
    return format_status(status(ctx.workspace, ctx.recipe.app_name))


def rollout_command(name: str, args: list[str], reason: str | None = None, templates: tuple[str, ...] = (),
                    project_dir: Path | None = None) -> str:
    """``loom rollout promote|abort|rollback``: tell the running controller, then show the status."""
    from framework.rollout import actor, engines
    from framework.rollout.status import format_status

    ctx = _ctx(args, templates, project_dir)
    recipe, ws = ctx.recipe, ctx.workspace
    actor.connect(recipe, ws)
    ports = engines.ports_for(recipe, ws)
    kwargs = {"reason": reason} if reason else {}
    return format_status(getattr(actor, name)(ws, recipe.app_name, ports, **kwargs))


def render_optimize(out: dict[str, Any]) -> str:
    """The table ``loom optimize`` prints."""
    lines = [f"{out['model']} version {out['version']}: the compiled model predicts what XGBoost "
             f"predicts (within {out['tolerance']:g}); library {out['library']}", "",
             f"{'rows per call':>14}  {'xgboost us/row':>15}  {'treelite us/row':>16}  {'speed-up':>8}"]
    for row in out["table"]:
        lines.append(f"{row['rows']:>14,}  {row['xgboost_us_per_row']:>15.3f}  "
                     f"{row['treelite_us_per_row']:>16.3f}  {row['speedup']:>7.2f}x")
    picks = out["auto_picks"]
    lines += ["", f"Faster online (one row, what serving.predictor: auto picks): {picks['online']}; "
                  f"faster at {out['table'][-1]['rows']:,} rows per call: {picks['batch']} "
                  "(batch.predictor: auto times the recipe's batch.batch_size)"]
    return "\n".join(lines)
