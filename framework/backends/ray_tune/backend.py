"""RayTuneBackend: applies ``training.tune`` as a Ray Tune sweep and records the best trial in MLflow."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from framework.backends.ray_train.dataset import load_splits
from framework.backends.ray_train.params import booster_params
from framework.backends.run_storage import remove_run, storage_target
from framework.compile.fingerprint import short
from framework.errors import BackendError, DataError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.backends.ray_tune._core import SweepJob
    from framework.compile.plan import Step
    from framework.spec.training import Tuning


class RayTuneBackend:
    """Runs the recipe's sweep (kind ``training.tune``); ``training.train`` then uses ``best_params``.

    The sweep's summary is an MLflow run tagged with the step fingerprint, which ``observe`` finds.
    """

    kinds: ClassVar[tuple[str, ...]] = ("training.tune",)

    def observe(self, step: "Step", ctx: "RunContext") -> str | None:
        """The fingerprint of the newest finished sweep run for ``step.address``, if any."""
        from framework.backends.model_registry.observe import observe_run

        return observe_run(step, ctx)

    def apply(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        """Sweep, pick the best trial by ``training.tuning.metric``; return its params."""
        from framework.backends.model_registry.observe import recorded_outputs
        from framework.backends.ray_runtime import ray_for
        from framework.backends.ray_tune._core import run_sweep

        reused = recorded_outputs(ctx, step)
        if reused is not None:
            ctx.progress(f"tuning: reusing sweep run {reused['run_id']} (same data and search space)")
            return reused
        tuning = _tuning(step, ctx)
        data, feature_types = self._data(step, ctx)
        job = make_sweep(step, ctx, feature_types)
        ctx.progress(f"tuning: {tuning.num_samples} trials ({tuning.scheduler}, "
                     f"{tuning.max_concurrent_trials} at once) over {', '.join(sorted(job.space))}, "
                     f"{tuning.mode} {tuning.metric}")
        try:
            with ray_for(ctx.recipe, ctx.workspace, ctx.progress):
                summary = run_sweep(job, data, progress=ctx.progress)
        finally:
            remove_run(job.storage_path, job.name, job.storage_filesystem)
        ctx.progress(f"tuned: best {tuning.metric} {summary['best_metric']:.4f} of {summary['trials']} "
                     f"trials with {summary['best_params']}, {summary['elapsed_s']:.1f} s")
        return _log_sweep(step, ctx, summary)

    def delete(self, address: str, ctx: "RunContext") -> None:
        """Mark every sweep run of ``address`` deleted in MLflow."""
        from framework.backends.model_registry.observe import delete_runs

        delete_runs(address, ctx)

    def _data(self, step: "Step", ctx: "RunContext") -> tuple[dict[str, Any], list[str]]:
        dataset = ctx.upstream(step, "training.dataset")
        if not dataset.get("path"):
            raise DataError(f"{step.address}: no training dataset: the 'training.dataset' step has no "
                            f"output in this run. Run the whole plan (`loom launch recipe={ctx.recipe.name}`).")
        splits = load_splits(dataset["path"], ctx.recipe)
        ctx.progress(f"dataset: train {splits.rows['train']:,} / validation {splits.rows['validation']:,} "
                     "rows for the sweep (the test split stays unseen)")
        return {"x_train": splits.x_train, "y_train": splits.y_train,
                "x_val": splits.x_val, "y_val": splits.y_val}, splits.xgb_types


def make_sweep(step: "Step", ctx: "RunContext", feature_types: list[str] | None = None) -> "SweepJob":
    """The SweepJob for a recipe's ``training.tuning`` (``feature_types``: XGBoost's q/c per feature)."""
    from framework.backends.ray_tune._core import SweepJob
    from framework.backends.ray_tune.space import tune_space

    recipe = ctx.recipe
    tuning = _tuning(step, ctx)
    if tuning.metric not in recipe.metrics:
        raise BackendError(f"training.tuning.metric: Got {tuning.metric!r}. A {recipe.task} model "
                           f"reports {', '.join(recipe.metrics)}; pick one of them.")
    model, scaling = recipe.training.model, recipe.training.scaling
    path, filesystem = storage_target(ctx.recipe, ctx.workspace)
    return SweepJob(
        base_params=booster_params(recipe), space=tune_space(tuning),
        num_boost_round=model.num_boost_round, early_stopping_rounds=model.early_stopping_rounds,
        metric=tuning.metric, mode=tuning.mode, task=recipe.task, num_samples=tuning.num_samples,
        scheduler=tuning.scheduler, max_concurrent=tuning.max_concurrent_trials,
        cpus_per_trial=scaling.cpus_per_worker, resource_wait_s=scaling.resource_wait_s,
        resources=dict(scaling.resources_per_worker),
        storage_path=path, storage_filesystem=filesystem,
        name=f"tune-{recipe.model_id}-{short(step.fingerprint, 8)}-{int(time.time() * 1000)}",
        feature_types=list(feature_types or []),
    )


def _tuning(step: "Step", ctx: "RunContext") -> "Tuning":
    tuning = ctx.recipe.training.tuning
    if tuning is None:
        raise BackendError(f"{step.address}: the recipe has no training.tuning section to sweep.")
    return tuning


def _log_sweep(step: "Step", ctx: "RunContext", summary: dict[str, Any]) -> dict[str, Any]:
    """Record the sweep as an MLflow run; return the step's outputs (with the run id)."""
    import mlflow

    from framework.backends.model_registry import lineage
    from framework.backends.model_registry.observe import OUTPUTS_ARTIFACT
    from framework.backends.model_registry.tracking import (
        TAG_ADDRESS,
        TAG_FINGERPRINT,
        experiment_id,
        recipe_client,
    )

    client = recipe_client(ctx.recipe, ctx.workspace)
    exp_id = experiment_id(client, ctx.recipe, ctx.workspace)
    tags = {**lineage.lineage_tags(ctx), TAG_ADDRESS: step.address}
    try:
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{ctx.recipe.name}-tune", tags=tags) as run:
            mlflow.log_params({f"best_{k}": v for k, v in summary["best_params"].items()})
            mlflow.log_metrics({f"best_{_tuning(step, ctx).metric}": summary["best_metric"],
                                "trials": summary["trials"]})
            mlflow.log_dict({"trials": summary["table"]}, "loom/trials.json")
            outputs = {"best_params": summary["best_params"], "best_metric": summary["best_metric"],
                       "trials": summary["trials"], "run_id": run.info.run_id}
            mlflow.log_dict(outputs, OUTPUTS_ARTIFACT)
            mlflow.set_tag(TAG_FINGERPRINT, step.fingerprint)
            return outputs
    except Exception as exc:  # MlflowException, OSError
        raise BackendError(
            f"MLflow could not record the sweep ({exc}); check registry.tracking_uri."
        ) from exc
