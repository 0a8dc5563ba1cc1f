"""Log a training run to MLflow: params, per-round metrics, test metrics, UBJ model, signature, lineage."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from framework.backends.model_registry import lineage
from framework.backends.model_registry.observe import OUTPUTS_ARTIFACT
from framework.backends.model_registry.profile import PROFILE_FILE, reference_profile
from framework.backends.model_registry.tracking import (
    TAG_ADDRESS,
    TAG_FINGERPRINT,
    TAG_MODEL_URI,
    experiment_id,
    recipe_client,
    redact_uri,
)
from framework.errors import BackendError

if TYPE_CHECKING:
    from framework.backends.base import RunContext
    from framework.compile.plan import Step

MODEL_ARTIFACT = "model"
DATA_CHECKS_ARTIFACT = "loom/data_checks.json"
_BATCH = 900  # MLflow accepts at most 1,000 metrics per log_batch call


@dataclass
class TrainingRecord:
    """Everything about one finished training that goes into its MLflow run."""

    booster: Any
    params: dict[str, Any]
    settings: dict[str, Any]
    evals: dict[str, list[float]]
    test_metrics: dict[str, float]
    feature_names: list[str]
    feature_types: dict[str, str]
    x_sample: np.ndarray
    profile_x: np.ndarray
    profile_pred: np.ndarray
    outputs: dict[str, Any]
    categories: dict[str, list[str]] = field(default_factory=dict)
    #: The data checks run before training (``backends.data_quality.run_checks``' report).
    data_checks: dict[str, Any] | None = None


def log_training_run(ctx: "RunContext", step: "Step", record: TrainingRecord) -> tuple[str, str]:
    """Create the MLflow run for ``step``; return ``(run_id, logged model URI)``.

    The ``loom.fingerprint`` tag is set last, so a run interrupted half-way never counts as applied.

    Raises:
        BackendError: MLflow refused (unreachable server, read-only store...).
    """
    import mlflow

    client = recipe_client(ctx.recipe, ctx.workspace)
    try:
        exp_id = experiment_id(client, ctx.recipe, ctx.workspace)
        tags = {**lineage.lineage_tags(ctx), TAG_ADDRESS: step.address}
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{ctx.recipe.name}-train", tags=tags) as run:
            run_id = run.info.run_id
            _log_params(record)
            _log_metrics(client, run_id, record)
            model_uri = _log_model(record)
            _log_lineage_artifacts(ctx, record)
            _log_data_checks(record.data_checks)
            mlflow.log_dict(record.outputs, OUTPUTS_ARTIFACT)
            mlflow.set_tags({TAG_MODEL_URI: model_uri, TAG_FINGERPRINT: step.fingerprint})
    except BackendError:
        raise
    except Exception as exc:  # MlflowException, OSError, requests errors from a remote server
        raise BackendError(
            redact_uri(f"MLflow could not record the training run ({type(exc).__name__}: {exc}). "
                       "Check registry.tracking_uri and that the store is writable.")
        ) from exc
    return run_id, model_uri


def _log_params(record: TrainingRecord) -> None:
    import mlflow

    flat = {k: ",".join(map(str, v)) if isinstance(v, list) else v for k, v in record.params.items()}
    mlflow.log_params({**flat, **record.settings})


def _log_metrics(client: Any, run_id: str, record: TrainingRecord) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(f"validation_{name}", float(v), now, i)
               for name, values in record.evals.items() for i, v in enumerate(values)]
    metrics += [Metric(f"test_{k}", float(v), now, 0) for k, v in record.test_metrics.items()
                if v == v]  # MLflow rejects NaN in some stores; a NaN metric is simply absent
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + _BATCH])


def _log_model(record: TrainingRecord) -> str:
    import mlflow.xgboost
    import xgboost

    with warnings.catch_warnings():
        # MLflow warns that integer columns cannot hold missing values; the schema is still right.
        warnings.simplefilter("ignore")
        signature = _signature(record)
        # Pinning requirements skips MLflow's slow import-scanning inference (~2 s).
        info = mlflow.xgboost.log_model(
            record.booster, name=MODEL_ARTIFACT, model_format="ubj", signature=signature,
            pip_requirements=[f"xgboost=={xgboost.__version__}"],
        )
    return info.model_uri


def _signature(record: TrainingRecord) -> Any:
    import pandas as pd
    import xgboost
    from mlflow.models import infer_signature

    sample = pd.DataFrame(record.x_sample, columns=record.feature_names)
    for name, dtype in record.feature_types.items():
        if name in record.categories:  # the signature shows the categories, not their codes
            cats = record.categories[name]
            sample[name] = [cats[int(v)] if v == v else None for v in sample[name]]
        else:
            sample[name] = sample[name].astype(dtype)
    dmatrix = xgboost.DMatrix(
        record.x_sample, feature_names=record.feature_names, enable_categorical=bool(record.categories),
        feature_types=["c" if n in record.categories else "q" for n in record.feature_names])
    return infer_signature(sample, record.booster.predict(dmatrix))


def _log_lineage_artifacts(ctx: "RunContext", record: TrainingRecord) -> None:
    import mlflow

    fp, text = lineage.recipe_identity(ctx)
    name = "loom/recipe.yaml" if not text.lstrip().startswith("{") else "loom/recipe.json"
    mlflow.log_text(text, name)
    mlflow.log_dict({
        "recipe": ctx.recipe.name, "recipe_fingerprint": fp,
        "data": lineage.data_fingerprints(ctx), "feature_views": lineage.feature_views(ctx),
        "features": record.feature_names, "code_version": lineage.code_version(),
    }, "loom/lineage.json")
    if record.outputs.get("contract"):
        mlflow.log_dict(record.outputs["contract"], "loom/contract.json")
    profile = reference_profile(record.profile_x, record.feature_names, record.profile_pred,
                                {n: len(c) for n, c in record.categories.items()})
    mlflow.log_dict(profile, f"loom/{PROFILE_FILE}")


def _log_data_checks(report: dict[str, Any] | None) -> None:
    """``loom/data_checks.json`` and metrics: checks passed and failed, rows per checked source."""
    import mlflow

    if not report or not report.get("sources"):
        return
    mlflow.log_dict(report, DATA_CHECKS_ARTIFACT)
    mlflow.log_metrics({"data_checks_passed": report["passed"], "data_checks_failed": report["failed"],
                        **{f"data_rows.{name}": s["rows"] for name, s in report["sources"].items()}})
