"""The Ray Tune sweep: a function trainable running in-process ``xgboost.train``, reporting every round."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost

from framework.backends.evaluation import evaluate
from framework.backends.ray_tune.space import native_metric, plain
from framework.errors import BackendError


@dataclass
class SweepJob:
    """A sweep: base params, search space, budget, and where Tune keeps its files."""

    base_params: dict[str, Any]
    space: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int | None
    metric: str
    mode: str
    task: str
    num_samples: int
    scheduler: str
    max_concurrent: int
    cpus_per_trial: float
    storage_path: str
    name: str
    feature_types: list[str] = field(default_factory=list)  # q or c (categorical codes) per feature
    #: Seconds the sweep may wait with no trial able to start (``training.scaling.resource_wait_s``).
    resource_wait_s: float = 300.0
    #: Custom Ray resources per trial (``training.scaling.resources_per_worker``).
    resources: dict[str, float] = field(default_factory=dict)
    #: The pyarrow filesystem ``storage_path`` is on (``env.storage_s3``); None: Ray resolves it.
    storage_filesystem: Any = None


class _ReportMetric(xgboost.callback.TrainingCallback):
    """Reports the tuning metric to Tune after every round so ASHA can stop weak trials early."""

    def __init__(self, metric: str, task: str, dval: Any, y_val: np.ndarray) -> None:
        super().__init__()
        self.metric, self.task, self.dval, self.y_val = metric, task, dval, y_val
        self.native = native_metric(metric, task)

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        from ray import tune

        tune.report({self.metric: self._value(model, epoch, evals_log)})
        return False

    def _value(self, model: Any, epoch: int, evals_log: dict) -> float:
        if self.native is not None:
            value = float(evals_log["validation"][self.native][-1])
            return 1.0 - value if self.metric == "accuracy" else value
        pred = model.predict(self.dval, iteration_range=(0, epoch + 1))
        return float(evaluate(self.task, self.y_val, pred)[self.metric])


def trial(config: dict[str, Any], data: dict[str, np.ndarray], job: SweepJob) -> None:
    """One Tune trial: train with the sampled ``config`` over the base params."""
    params = {**job.base_params, **config}
    native = native_metric(job.metric, job.task)
    if native is not None:
        # Early stopping watches the last eval metric: make it the one being tuned.
        others = [m for m in params.get("eval_metric", []) if m != native]
        params["eval_metric"] = [*others, native]
    typed = {"feature_types": job.feature_types or None, "enable_categorical": "c" in job.feature_types}
    dtrain = xgboost.DMatrix(data["x_train"], label=data["y_train"], **typed)
    dval = xgboost.DMatrix(data["x_val"], label=data["y_val"], **typed)
    xgboost.train(params, dtrain, num_boost_round=job.num_boost_round, evals=[(dval, "validation")],
                  early_stopping_rounds=job.early_stopping_rounds, verbose_eval=False,
                  callbacks=[_ReportMetric(job.metric, job.task, dval, data["y_val"])])


def run_sweep(job: SweepJob, data: dict[str, np.ndarray],
              progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the sweep on the running Ray; return ``{"best_params", "best_metric", "trials", ...}``.

    While no trial can get its CPUs, ``progress`` gets a line every 10 s naming the demand and what
    holds the cluster; after ``job.resource_wait_s`` of that the sweep fails.

    Raises:
        BackendError: when every trial failed, or no trial could start within ``resource_wait_s``.
    """
    from ray import tune

    from framework.backends.cluster_wait import ResourceWait, require_resources

    started = time.perf_counter()
    demand = {"CPU": job.cpus_per_trial, **job.resources}
    require_resources(demand, "training.scaling.resources_per_worker", "each tuning trial")
    wait = ResourceWait("tuning", demand, 1, job.resource_wait_s,
                        "training.scaling.resource_wait_s", progress)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, data=data, job=job),
                            tune.PlacementGroupFactory([demand])),
        param_space=job.space,
        tune_config=tune.TuneConfig(metric=job.metric, mode=job.mode, num_samples=job.num_samples,
                                    scheduler=_scheduler(job),
                                    max_concurrent_trials=job.max_concurrent),
        run_config=tune.RunConfig(name=job.name, storage_path=job.storage_path, verbose=0,
                                  storage_filesystem=job.storage_filesystem,
                                  callbacks=[_give_up_after(wait)]),
    )
    try:
        with wait:
            results = tuner.fit()
    except Exception as exc:
        if wait.expired():
            raise wait.timeout_error() from exc
        raise
    finally:
        _WAITS.pop(id(wait), None)
    if wait.expired():  # Tune may end the run on a callback's error instead of raising it
        raise wait.timeout_error()
    return _summary(job, results, time.perf_counter() - started)


#: Live waits by id: Tune pickles its callbacks, and a wait holds a thread and a lock.
_WAITS: dict[int, Any] = {}


def _give_up_after(wait: Any) -> Any:
    """A Tune callback that stops the sweep once ``wait`` has run past its bound."""
    from ray import tune

    _WAITS[id(wait)] = wait

    class GiveUp(tune.Callback):
        def __init__(self, key: int) -> None:
            self.key = key

        def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
            # Looked up through the module, so pickling this class does not copy the live wait.
            from framework.backends.ray_tune import _core

            live = _core._WAITS.get(self.key)
            if live is not None and live.expired():
                raise live.timeout_error()

    return GiveUp(id(wait))


def _scheduler(job: SweepJob) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if job.scheduler == "asha":
        grace = max(1, min(10, job.num_boost_round // 4))
        return ASHAScheduler(max_t=job.num_boost_round, grace_period=grace, reduction_factor=3)
    return FIFOScheduler()


def _summary(job: SweepJob, results: Any, elapsed_s: float) -> dict[str, Any]:
    trials = [r for r in results if r.error is None and r.metrics_dataframe is not None
              and job.metric in r.metrics_dataframe]
    if not trials:
        first = next((r.error for r in results if r.error is not None), None)
        raise BackendError(
            f"Every Ray Tune trial failed ({first!s:.300}). Check training.tuning.search_space "
            "and training.model.params."
        ) from first
    best_of = (lambda s: s.max()) if job.mode == "max" else (lambda s: s.min())
    scored = [(float(best_of(r.metrics_dataframe[job.metric])), r) for r in trials]
    best_metric, best = (max if job.mode == "max" else min)(scored, key=lambda t: t[0])
    return {
        "best_params": {k: plain(best.config[k]) for k in job.space},
        "best_metric": best_metric,
        "trials": len(list(results)),
        "table": [{"params": {k: plain(r.config[k]) for k in job.space}, job.metric: score,
                   "rounds": int(r.metrics_dataframe["training_iteration"].max())}
                  for score, r in scored],
        "elapsed_s": round(elapsed_s, 2),
    }
