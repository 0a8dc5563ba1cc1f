"""The Ray Train V2 XGBoost job: each worker's shard by its own object ref, one report at the end,
booster back."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framework.errors import BackendError

MODEL_FILE = "model.ubj"
EVALS_FILE = "evals.json"


@dataclass
class TrainJob:
    """What one training run needs, independent of the recipe (the benchmark builds one directly)."""

    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int | None
    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    max_failures: int
    storage_path: str
    name: str
    #: Seconds to wait for the workers' resources before failing (``training.scaling.resource_wait_s``).
    resource_wait_s: float = 300.0
    #: Custom Ray resources per worker (``training.scaling.resources_per_worker``).
    resources: dict[str, float] = field(default_factory=dict)
    #: The pyarrow filesystem ``storage_path`` is on (``env.storage_s3``); None: Ray resolves it.
    storage_filesystem: Any = None


@dataclass
class TrainResult:
    """The trained booster's bytes (UBJ), its per-round validation metrics and timing."""

    model_bytes: bytes
    evals: dict[str, list[float]]
    best_iteration: int
    rounds: int
    elapsed_s: float


def train_loop(config: dict[str, Any]) -> None:
    """Runs in every Ray Train worker: train on this worker's shard, report once at the end.

    Ray Train's XGBoost backend has already joined the workers into one XGBoost collective, so
    ``xgboost.train`` here is data-parallel across them.
    """
    import ray
    import ray.train
    import xgboost as xgb

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    shards = config["shards"]
    if len(shards) != world:
        raise RuntimeError(f"{len(shards)} data shards for {world} workers")
    # Only this worker's shard crosses the wire (one object per worker, read zero-copy).
    data = ray.get(shards[rank])
    typed = {"feature_names": config["feature_names"], "feature_types": config.get("feature_types"),
             "enable_categorical": "c" in (config.get("feature_types") or ())}
    dtrain, dval = matrices(data, config["params"], typed)
    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        config["params"], dtrain, num_boost_round=config["num_boost_round"],
        evals=[(dval, "validation")], early_stopping_rounds=config["early_stopping_rounds"],
        evals_result=evals_result, verbose_eval=False,
    )
    _report(booster, evals_result.get("validation", {}), rank)


def matrices(data: dict[str, Any], params: dict[str, Any], typed: dict[str, Any]) -> tuple[Any, Any]:
    """The worker's training and validation matrices.

    With the ``hist`` tree method (XGBoost's default) a ``QuantileDMatrix``: the rows go straight
    into the quantized histogram index (one byte per value here) without the float copy a
    ``DMatrix`` keeps, so a worker holds a fraction of the memory. Its quantiles are the ones
    training on a ``DMatrix`` computes. The validation matrix takes the training one's cuts.
    """
    import xgboost as xgb

    if str(params.get("tree_method", "hist")) not in ("hist", "auto"):
        return (xgb.DMatrix(data["x_train"], label=data["y_train"], **typed),
                xgb.DMatrix(data["x_val"], label=data["y_val"], **typed))
    bins = {"max_bin": int(params["max_bin"])} if "max_bin" in params else {}
    dtrain = xgb.QuantileDMatrix(data["x_train"], label=data["y_train"], **bins, **typed)
    dval = xgb.QuantileDMatrix(data["x_val"], label=data["y_val"], ref=dtrain, **bins, **typed)
    return dtrain, dval


def _report(booster: Any, evals: dict[str, list[float]], rank: int) -> None:
    import ray.train

    rounds = booster.num_boosted_rounds()
    best = int(getattr(booster, "best_iteration", rounds - 1))
    # Keep only the trees up to the best round, so every reader of the UBJ predicts the same.
    booster = booster[: best + 1]
    metrics = {"best_iteration": best, "rounds": rounds}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(os.path.join(tmp, MODEL_FILE))
        Path(tmp, EVALS_FILE).write_text(json.dumps(evals), encoding="utf-8")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


#: Ray Train V2 waits this long for its placement group, then (with no controller retries) fails.
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


def run_train_job(job: TrainJob, arrays: dict[str, np.ndarray], feature_names: list[str],
                  feature_types: list[str] | None = None,
                  progress: Callable[[str], None] = lambda line: None) -> TrainResult:
    """Fit ``job`` with ``XGBoostTrainer`` on the running Ray; return the booster and its metrics.

    ``feature_types``: XGBoost's ``q`` (numeric) or ``c`` (categorical codes) per feature.
    While the workers wait for CPUs, ``progress`` gets a line every 10 s naming the demand and what
    holds the cluster; after ``job.resource_wait_s`` the run fails instead of waiting forever.

    Raises:
        BackendError: when the Ray Train run fails (after ``max_failures`` retries), or its workers
            did not get their resources within ``job.resource_wait_s``.
    """
    from framework.backends.cluster_wait import ResourceWait, require_resources

    require_resources(_bundle(job), "training.scaling.resources_per_worker", "each training worker")
    trainer = _trainer(job, arrays, feature_names, feature_types)
    wait = ResourceWait("training", _bundle(job), job.num_workers, job.resource_wait_s,
                        "training.scaling.resource_wait_s", progress)
    started = time.perf_counter()
    try:
        with _env(START_TIMEOUT_ENV, f"{job.resource_wait_s:g}"), wait:
            result = trainer.fit()
    except Exception as exc:  # ray.train.TrainingFailedError and friends
        if _startup_timed_out(exc):
            raise wait.timeout_error() from exc
        raise BackendError(
            f"Ray Train failed training the model ({type(exc).__name__}: {_first_line(exc)}). "
            "Check training.scaling (num_workers x cpus_per_worker must fit the Ray cluster) "
            "and training.model.params."
        ) from exc
    return _read_result(result, time.perf_counter() - started)


def _bundle(job: TrainJob) -> dict[str, float]:
    return {"CPU": job.cpus_per_worker, **({"GPU": 1.0} if job.use_gpu else {}), **job.resources}


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    """``key=value`` in this process's environment for the block (Train copies it to its controller)."""
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _startup_timed_out(exc: BaseException) -> bool:
    """Whether Train gave up waiting for its worker group's placement group."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        if type(exc).__name__ == "WorkerGroupStartupTimeoutError":
            return True
        exc = getattr(exc, "controller_failure", None) or exc.__cause__  # type: ignore[assignment]
    return False


def _trainer(job: TrainJob, arrays: dict[str, np.ndarray], feature_names: list[str],
             feature_types: list[str] | None) -> Any:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    # No controller retries: the one retryable controller failure here is the worker group not
    # starting within resource_wait_s, and retrying it is exactly the silent wait this bounds.
    return XGBoostTrainer(
        train_loop,
        train_loop_config={
            "shards": shard_refs(arrays, job.num_workers), "feature_names": feature_names,
            "feature_types": feature_types, "params": job.params,
            "num_boost_round": job.num_boost_round, "early_stopping_rounds": job.early_stopping_rounds,
        },
        scaling_config=ScalingConfig(num_workers=job.num_workers, use_gpu=job.use_gpu,
                                     resources_per_worker={"CPU": job.cpus_per_worker, **job.resources}),
        run_config=RunConfig(name=job.name, storage_path=job.storage_path,
                             storage_filesystem=job.storage_filesystem,
                             failure_config=FailureConfig(max_failures=job.max_failures,
                                                          controller_failure_limit=0),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )


def shards(arrays: dict[str, np.ndarray], world: int) -> list[dict[str, np.ndarray]]:
    """Worker ``i``'s rows of every array: rows dealt round-robin, so every worker sees the same
    label mix (the same split a worker made of the whole set before)."""
    return [{k: np.ascontiguousarray(v[i::world]) for k, v in arrays.items()} for i in range(world)]


def shard_refs(arrays: dict[str, np.ndarray], world: int) -> list[Any]:
    """One object per worker holding only its shard: a worker never fetches the others' rows."""
    import ray

    return [ray.put(shard) for shard in shards(arrays, world)]


def _read_result(result: Any, elapsed_s: float) -> TrainResult:
    if result.checkpoint is None:
        raise BackendError("Ray Train finished without a model checkpoint; rerun with --debug.")
    with result.checkpoint.as_directory() as directory:
        model_bytes = Path(directory, MODEL_FILE).read_bytes()
        evals = json.loads(Path(directory, EVALS_FILE).read_text(encoding="utf-8"))
    metrics = result.metrics or {}
    return TrainResult(model_bytes=model_bytes, evals=evals,
                       best_iteration=int(metrics.get("best_iteration", 0)),
                       rounds=int(metrics.get("rounds", 0)), elapsed_s=elapsed_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
