"""Hydra sweep overrides (``choice(3,6,9)``, ``tag(log,interval(0.01,0.3))``) → the recipe's search space."""

from __future__ import annotations

from typing import Any

from framework.errors import Problem

PARAMS_PREFIX = "training.model.params."

#: Search-metric defaults when a sweep is given on the command line without a tuning section.
DEFAULT_TUNING = {
    "binary:logistic": ("auc", "max"),
    "multi:softprob": ("logloss", "min"),
}


def search_dim(override: Any) -> dict[str, Any]:
    """The search-space entry for one parsed Hydra sweep override."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    sweep = override.value()
    if isinstance(sweep, ChoiceSweep):
        return {"type": "choice", "values": list(sweep.list)}
    if isinstance(sweep, RangeSweep):
        step = sweep.step or 1
        if step <= 0 or sweep.stop <= sweep.start:
            raise ValueError("range(start, stop[, step]) needs start < stop and a positive step")
        if step == 1 and all(isinstance(v, int) for v in (sweep.start, sweep.stop)):
            return {"type": "randint", "low": sweep.start, "high": sweep.stop}
        values, v = [], sweep.start
        while v < sweep.stop:
            values.append(v)
            v += step
        return {"type": "choice", "values": values}
    if isinstance(sweep, IntervalSweep):
        kind = "loguniform" if "log" in sweep.tags else "uniform"
        return {"type": kind, "low": float(sweep.start), "high": float(sweep.end)}
    raise ValueError(f"{type(sweep).__name__} is not a search dimension; use choice, range or interval")


def sweep_problem(key: str, text: str) -> Problem | None:
    """A Problem when a sweep targets anything but a model parameter."""
    if key.startswith(PARAMS_PREFIX):
        return None
    return Problem(path=key, value=text, has_value=True, file="command line",
                   message="Sweeps (choice/range/interval) work only on training.model.params.*.",
                   hint="e.g. training.model.params.max_depth=choice(3,6,9)")


def apply_sweeps(data: dict[str, Any], dims: dict[str, dict[str, Any]]) -> None:
    """Add sweep dimensions to ``training.tuning`` (created with objective defaults when absent)."""
    if not dims:
        return
    training = data.setdefault("training", {})
    tuning = training.get("tuning") or {}
    if not tuning:
        objective = (training.get("model") or {}).get("objective", "")
        metric, mode = DEFAULT_TUNING.get(objective, ("rmse", "min"))
        tuning = {"metric": metric, "mode": mode, "search_space": {}}
    tuning["search_space"] = {**(tuning.get("search_space") or {}), **dims}
    training["tuning"] = tuning
