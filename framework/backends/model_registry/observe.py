"""What MLflow already holds for a step: runs and model versions tagged with Loom's step fingerprints."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.backends.model_registry.tracking import (
    TAG_ADDRESS,
    TAG_FINGERPRINT,
    experiment_id,
    find_runs,
    mlflow_dir,
    recipe_client,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from framework.backends.base import RunContext
    from framework.compile.plan import Step


def store_exists(ctx: "RunContext") -> bool:
    """False when the embedded SQLite store was never created (so nothing can be there)."""
    if ctx.recipe.registry.tracking_uri:
        return True
    return (mlflow_dir(ctx.workspace) / "mlflow.db").is_file()


def open_experiment(ctx: "RunContext") -> tuple["MlflowClient", str | None] | None:
    """(client, experiment id or None) for the recipe, or None when there is no store yet."""
    if not store_exists(ctx):
        return None
    client = recipe_client(ctx.recipe, Path(ctx.workspace))
    return client, experiment_id(client, ctx.recipe, Path(ctx.workspace), create=False)


def step_runs(ctx: "RunContext", address: str, **tags: str) -> list[Any]:
    """Finished runs recorded for ``address`` (newest first), filtered by extra tags."""
    opened = open_experiment(ctx)
    if opened is None:
        return []
    client, exp_id = opened
    return find_runs(client, exp_id, {TAG_ADDRESS: address, **tags})


def observe_run(step: "Step", ctx: "RunContext", tag: str = TAG_FINGERPRINT) -> str | None:
    """``step.fingerprint`` if a run holds it in ``tag``; else the newest run's value; else None."""
    if step_runs(ctx, step.address, **{tag: step.fingerprint}):
        return step.fingerprint
    for run in step_runs(ctx, step.address):
        if tag in run.data.tags:
            return run.data.tags[tag]
    return None


def run_for(ctx: "RunContext", step: "Step") -> Any | None:
    """The newest finished run of ``step`` holding its fingerprint, or None."""
    runs = step_runs(ctx, step.address, **{TAG_FINGERPRINT: step.fingerprint})
    return runs[0] if runs else None


def delete_runs(address: str, ctx: "RunContext") -> int:
    """Soft-delete every run of ``address``; returns how many."""
    opened = open_experiment(ctx)
    if opened is None:
        return 0
    client, exp_id = opened
    runs = find_runs(client, exp_id, {TAG_ADDRESS: address})
    for run in runs:
        client.delete_run(run.info.run_id)
    return len(runs)


OUTPUTS_ARTIFACT = "loom/outputs.json"


def recorded_outputs(ctx: "RunContext", step: "Step") -> dict[str, Any] | None:
    """The outputs a finished run of ``step`` (same fingerprint) recorded, or None.

    Lets ``apply`` reuse an earlier identical run instead of redoing it, and rebuild the outputs
    when the executor's state file does not have them (a fresh checkout against a remote MLflow).
    """
    import json

    import mlflow.artifacts

    run = run_for(ctx, step)
    if run is None:
        return None
    try:
        text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{OUTPUTS_ARTIFACT}")
    except Exception:  # MlflowException/OSError: a run logged before outputs were recorded
        return None
    return json.loads(text)
