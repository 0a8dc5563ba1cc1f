"""RayTrainBackend: applies ``training.train`` with Ray Train V2 and records the run in MLflow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from framework.backends.data_quality import OUTPUTS_KEY, check_before_apply, remember_rows
from framework.backends.evaluation import evaluate
from framework.backends.ray_train.dataset import Splits, load_splits
from framework.backends.ray_train.params import booster_params, stopping_metric
from framework.backends.run_storage import remove_run, storage_target
from framework.compile.contract import Contract, parse, recipe_contract
from framework.compile.fingerprint import short
from framework.errors import DataError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.backends.ray_train._core import TrainJob, TrainResult
    from framework.compile.plan import Step

_PROFILE_ROWS = 5_000


class RayTrainBackend:
    """Trains the recipe's model with ``XGBoostTrainer`` (kind ``training.train``).

    Steps of kind ``training.tune`` are handed to ``RayTuneBackend``, so one class serves the
    whole Ray side of training. The step's fingerprint is stored as the MLflow run tag
    ``loom.fingerprint``: a finished run with the same fingerprint means the model is already
    trained (the fingerprint skip).
    """

    kinds: ClassVar[tuple[str, ...]] = ("training.tune", "training.train")

    def observe(self, step: "Step", ctx: "RunContext") -> str | None:
        """The fingerprint of the newest finished training (or sweep) run for ``step.address``, if any."""
        from framework.backends.model_registry.observe import observe_run

        return observe_run(step, ctx)

    def apply(self, step: "Step", ctx: "RunContext") -> dict[str, Any]:
        """Split the dataset, train, evaluate on the test split, log the run; return the outputs."""
        if step.kind == "training.tune":
            from framework.backends.ray_tune.backend import RayTuneBackend

            return RayTuneBackend().apply(step, ctx)
        reused = _reuse(step, ctx)
        if reused is not None:
            return reused
        checks = _data_checks(ctx)
        splits = self._splits(step, ctx)
        params = booster_params(ctx.recipe, ctx.upstream(step, "training.tune").get("best_params"))
        result = self._train(step, ctx, splits, params)
        booster = _load_booster(result.model_bytes)
        test_pred = booster.predict(dmatrix(splits.x_test, splits))
        metrics = evaluate(ctx.recipe.task, splits.y_test, test_pred)
        ctx.progress("test: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        contract = recipe_contract(ctx.recipe).with_categories(splits.categories)
        model_path = _save_model(ctx, step, result.model_bytes, contract)
        outputs = {
            "model_path": str(model_path), "metrics": metrics, "best_iteration": result.best_iteration,
            "params": params, "feature_names": splits.feature_names, "rows": splits.rows,
            "elapsed_s": round(result.elapsed_s, 2), "contract": contract.model_dump(mode="json"),
        }
        if splits.categories:
            ctx.progress("categorical: " + ", ".join(f"{n} ({len(c)} categories)"
                                                      for n, c in splits.categories.items()))
        run_id = self._log(step, ctx, booster, splits, outputs, result, test_pred, checks)
        ctx.progress(f"logged MLflow run {run_id} (experiment loom/{ctx.recipe.name})")
        remember_rows(ctx.workspace, ctx.recipe.name, checks, run_id)
        return {"run_id": run_id, **outputs}

    def delete(self, address: str, ctx: "RunContext") -> None:
        """Mark every run of ``address`` deleted in MLflow (a soft delete MLflow can undo)."""
        from framework.backends.model_registry.observe import delete_runs

        delete_runs(address, ctx)

    def _splits(self, step: "Step", ctx: "RunContext") -> Splits:
        dataset = ctx.upstream(step, "training.dataset")
        if not dataset.get("path"):
            raise DataError(
                f"{step.address}: no training dataset: the 'training.dataset' step has no output "
                f"in this run. Run the whole plan (`loom launch recipe={ctx.recipe.name}`) so the feature "
                "store builds it."
            )
        splits = load_splits(dataset["path"], ctx.recipe)
        split = ctx.recipe.training.split
        how = f"seed {split.seed}" if split.type == "random" else "by event_timestamp"
        rows = splits.rows
        ctx.progress(f"dataset: {sum(rows.values()):,} rows x {len(splits.feature_names)} features "
                     f"-> train {rows['train']:,} / validation {rows['validation']:,} / "
                     f"test {rows['test']:,} ({split.type} split, {how})")
        return splits

    def _train(self, step: "Step", ctx: "RunContext", splits: Splits, params: dict) -> "TrainResult":
        from framework.backends.ray_runtime import ray_for
        from framework.backends.ray_train._core import run_train_job

        job = make_job(step, ctx, params)
        ctx.progress(f"training: {job.num_workers} worker(s) x {job.cpus_per_worker:g} CPU, "
                     f"up to {job.num_boost_round} rounds, early stopping on validation "
                     f"{stopping_metric(params)} after {job.early_stopping_rounds or '-'}")
        arrays = {"x_train": splits.x_train, "y_train": splits.y_train,
                  "x_val": splits.x_val, "y_val": splits.y_val}
        try:
            with ray_for(ctx.recipe, ctx.workspace, ctx.progress):
                result = run_train_job(job, arrays, splits.feature_names, splits.xgb_types,
                                       progress=ctx.progress)
        finally:
            remove_run(job.storage_path, job.name, job.storage_filesystem)
        metric = stopping_metric(params)
        best = result.evals.get(metric, [float("nan")])[result.best_iteration]
        ctx.progress(f"trained: {result.rounds} rounds (best {result.best_iteration + 1}), "
                     f"validation {metric} {best:.4f}, {result.elapsed_s:.1f} s")
        return result

    def _log(self, step: "Step", ctx: "RunContext", booster: Any, splits: Splits,
             outputs: dict[str, Any], result: "TrainResult", test_pred: np.ndarray,
             checks: dict[str, Any]) -> str:
        from framework.backends.model_registry.run_log import TrainingRecord, log_training_run

        model = ctx.recipe.training.model
        scaling = ctx.recipe.training.scaling
        record = TrainingRecord(
            booster=booster, params=outputs["params"], evals=result.evals,
            test_metrics=outputs["metrics"], outputs=outputs,
            settings={"num_boost_round": model.num_boost_round,
                      "early_stopping_rounds": model.early_stopping_rounds,
                      "best_iteration": result.best_iteration, "num_workers": scaling.num_workers,
                      "cpus_per_worker": scaling.cpus_per_worker, "split": ctx.recipe.training.split.type},
            feature_names=splits.feature_names, feature_types=splits.feature_types,
            categories=splits.categories,
            x_sample=splits.x_test[:20], profile_x=splits.x_test[:_PROFILE_ROWS],
            profile_pred=test_pred[:_PROFILE_ROWS], data_checks=checks,
        )
        run_id, _ = log_training_run(ctx, step, record)
        return run_id


def _data_checks(ctx: "RunContext") -> dict[str, Any]:
    """The data checks this apply ran before any step, or, when none ran (a backend applied on
    its own), run now on the data; raises RecipeError when one fails, before training."""
    if OUTPUTS_KEY in ctx.outputs:
        return ctx.outputs[OUTPUTS_KEY]
    return check_before_apply(ctx)


def make_job(step: "Step", ctx: "RunContext", params: dict[str, Any]) -> "TrainJob":
    """The TrainJob for a recipe: rounds, early stopping, scaling; storage under the workspace."""
    from framework.backends.ray_train._core import TrainJob

    model = ctx.recipe.training.model
    scaling = ctx.recipe.training.scaling
    path, filesystem = storage_target(ctx.recipe, ctx.workspace)
    return TrainJob(
        params=params, num_boost_round=model.num_boost_round,
        early_stopping_rounds=model.early_stopping_rounds, num_workers=scaling.num_workers,
        cpus_per_worker=scaling.cpus_per_worker, use_gpu=scaling.use_gpu,
        max_failures=scaling.max_failures, resource_wait_s=scaling.resource_wait_s,
        resources=dict(scaling.resources_per_worker),
        storage_path=path, storage_filesystem=filesystem,
        # A fresh name per run: Train V2 resumes a run whose name and storage path already exist.
        name=f"train-{ctx.recipe.model_id}-{short(step.fingerprint, 8)}-{int(time.time() * 1000)}",
    )


def _reuse(step: "Step", ctx: "RunContext") -> dict[str, Any] | None:
    """Outputs of an earlier finished run with this step's fingerprint (its UBJ restored if gone)."""
    from framework.backends.model_registry.observe import recorded_outputs, run_for

    outputs = recorded_outputs(ctx, step)
    run = run_for(ctx, step) if outputs is not None else None
    if outputs is None or run is None:
        return None
    path = Path(outputs["model_path"])
    if not path.is_file():
        path = _restore_model(ctx, step, run.data.tags.get("loom.model_uri", ""),
                              parse(outputs.get("contract")))
    ctx.progress(f"training: reusing MLflow run {run.info.run_id} (same data, features and config)")
    return {**outputs, "run_id": run.info.run_id, "model_path": str(path), "reused": True}


def _restore_model(ctx: "RunContext", step: "Step", model_uri: str, contract: Contract | None) -> Path:
    import tempfile

    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return _save_model(ctx, step, Path(tmp, "model.ubj").read_bytes(), contract)


def _load_booster(model_bytes: bytes) -> Any:
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(bytearray(model_bytes))
    return booster


def dmatrix(x: np.ndarray, splits: Splits, label: np.ndarray | None = None) -> Any:
    """An XGBoost DMatrix of rows of ``splits``' features (categorical codes typed ``c``)."""
    import xgboost

    return xgboost.DMatrix(x, label=label, feature_names=splits.feature_names,
                           feature_types=splits.xgb_types, enable_categorical=bool(splits.categories))


def _save_model(ctx: "RunContext", step: "Step", model_bytes: bytes, contract: Contract | None) -> Path:
    """``<workspace>/models/<model id>/<fingerprint>/model.ubj``: the booster serving loads.

    Its contract (task, labels, features and their frozen categories) lies beside it in
    ``contract.json``, so whoever loads the booster can answer in that version's contract.
    """
    from framework.compile.contract import CONTRACT_FILE

    path = Path(ctx.workspace).resolve() / "models" / ctx.recipe.model_id / short(step.fingerprint, 16)
    path.mkdir(parents=True, exist_ok=True)
    target = path / "model.ubj"
    target.write_bytes(model_bytes)
    if contract is not None:
        (path / CONTRACT_FILE).write_text(contract.to_json(), encoding="utf-8")
    return target
