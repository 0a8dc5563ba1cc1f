"""The recipe's search space as Ray Tune sampling distributions, and tuning metrics as XGBoost sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework.spec.training import Tuning

#: Recipe metric → (XGBoost eval metric per task, transform), for metrics XGBoost tracks every round.
NATIVE_METRICS: dict[str, dict[str, str]] = {
    "auc": {"binary": "auc"},
    "logloss": {"binary": "logloss", "multiclass": "mlogloss"},
    "accuracy": {"binary": "error", "multiclass": "merror"},
    "rmse": {"regression": "rmse"},
    "mae": {"regression": "mae"},
}


def tune_space(tuning: "Tuning") -> dict[str, Any]:
    """``training.tuning.search_space`` as ``ray.tune`` distributions, by param name."""
    from ray import tune

    space: dict[str, Any] = {}
    for name, dim in tuning.search_space.items():
        if dim.type == "choice":
            space[name] = tune.choice(list(dim.values))
        elif dim.type == "uniform":
            space[name] = tune.uniform(dim.low, dim.high)
        elif dim.type == "loguniform":
            space[name] = tune.loguniform(dim.low, dim.high)
        else:
            space[name] = tune.randint(dim.low, dim.high)
    return space


def native_metric(metric: str, task: str) -> str | None:
    """The XGBoost eval metric that equals (or, for accuracy, is 1 minus) ``metric``; None if none."""
    return NATIVE_METRICS.get(metric, {}).get(task)


def plain(value: Any) -> Any:
    """A JSON-able copy of a sampled value (numpy scalars → Python numbers)."""
    return value.item() if hasattr(value, "item") else value
