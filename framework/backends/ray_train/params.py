"""XGBoost booster params from the recipe: objective, classes, evaluation metric, threads, device."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.spec import Recipe

#: XGBoost evaluation metrics per task; early stopping watches the last one.
EVAL_METRICS = {"binary": ["logloss", "auc"], "multiclass": ["mlogloss"], "regression": ["rmse"]}


def booster_params(recipe: "Recipe", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The params ``xgboost.train`` gets: the recipe's ``model.params`` plus Loom's required ones.

    ``model.extra_params`` (unchecked) follow ``model.params``; ``nthread`` defaults to the
    worker's reserved CPUs unless the recipe sets it.

    Args:
        recipe: the recipe.
        overrides: params that win over ``model.params`` (a sweep's best trial).
    """
    model = recipe.training.model
    params: dict[str, Any] = {"seed": _seed(recipe), **model.params, **model.extra_params,
                              **(overrides or {})}
    params["objective"] = model.objective
    if recipe.task == "multiclass":
        params["num_class"] = model.num_class
    params.setdefault("eval_metric", EVAL_METRICS[recipe.task])
    params.setdefault("nthread", worker_threads(recipe.training.scaling.cpus_per_worker))
    if recipe.training.scaling.use_gpu:
        params["device"] = "cuda"
    return params


def worker_threads(cpus_per_worker: float) -> int:
    """XGBoost threads for a worker reserving ``cpus_per_worker`` CPUs (at least one).

    XGBoost would otherwise start one thread per core of the machine in every worker.
    """
    return max(1, math.floor(cpus_per_worker))


def stopping_metric(params: dict[str, Any]) -> str:
    """The XGBoost metric early stopping watches (the last of ``eval_metric``)."""
    metric = params.get("eval_metric")
    return metric[-1] if isinstance(metric, list) else str(metric)


def _seed(recipe: "Recipe") -> int:
    return int(getattr(recipe.training.split, "seed", 42))
