"""Training data at scale: memory per Ray Train worker and wall time, Loom vs hand-written sharding.

    python scripts/bench/bench_training_scale.py [--rows 10000000] [--features 20] [--rounds 20] [--workers 2]

Every case trains the same XGBoost model (hist, depth 6, eta 0.1, one thread per worker, early
stopping on validation) on the same seeded rows, data-parallel over ``--workers`` Ray Train V2
workers of one local Ray, and is scored on the same held-out rows:

- loom: ``run_train_job``, what ``training.train`` runs: the driver deals the rows into one object
  per worker (round-robin), and each worker reads only its own (zero-copy).
- hand-written Ray Data: the sharding Ray's XGBoost guide writes by hand: a Ray Dataset per split
  (20 blocks each), ``get_dataset_shard`` in the worker, ``materialize().to_pandas()``, DMatrix.
- one object for all: the whole training set in one ``ray.put``, each worker slicing its rows
  (what Loom did before per-worker shards, and the common hand-written shortcut).

A sampler thread reads every Ray Train worker process's memory every 0.5 s: peak RSS (what the
kernel has mapped for it, the object store pages it touched included) and peak USS (its private
memory: the DMatrix and any copies). Wall time is the whole call, from the arrays in the driver to
the booster back. Cases run in turn, once each after a small warm-up run of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1,
          "eval_metric": ["logloss", "auc"], "seed": 42, "nthread": 1}
GIB = 1024 ** 3


def make_arrays(rows: int, features: int) -> dict[str, np.ndarray]:
    """Seeded rows split 80/10/10 into train, validation and test."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    k = min(5, features)
    logit = x[:, :k] @ np.linspace(1.0, 0.2, k, dtype=np.float32) + rng.standard_normal(rows, dtype=np.float32)
    y = (logit > 0).astype(np.float32)
    a, b = int(rows * 0.8), int(rows * 0.9)
    return {"x_train": x[:a], "y_train": y[:a], "x_val": x[a:b], "y_val": y[a:b],
            "x_test": x[b:], "y_test": y[b:]}


class WorkerMemory:
    """Peak RSS and USS of any Ray Train worker process while the block runs."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s, self.rss, self.uss = every_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.every_s):
            for proc in psutil.process_iter(["name", "cmdline"]):
                title = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
                if "RayTrainWorker" not in title:
                    continue
                try:
                    info = proc.memory_full_info()
                except (psutil.Error, OSError):
                    continue
                self.rss, self.uss = max(self.rss, info.rss), max(self.uss, info.uss)

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _booster(result: Any) -> Any:
    import xgboost as xgb

    with result.checkpoint.as_directory() as d:
        return xgb.Booster(model_file=os.path.join(d, "model.ubj"))


def _report_booster(booster: Any, rank: int) -> None:
    import ray.train

    if rank != 0:
        ray.train.report({})
        return
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(os.path.join(tmp, "model.ubj"))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def ray_data_loop(config: dict[str, Any]) -> None:
    import ray.train
    import xgboost as xgb

    rank = ray.train.get_context().get_world_rank()
    names = config["names"]
    train = ray.train.get_dataset_shard("train").materialize().to_pandas()
    val = ray.train.get_dataset_shard("validation").materialize().to_pandas()
    dtrain = xgb.DMatrix(train[names], label=train["label"])
    dval = xgb.DMatrix(val[names], label=val["label"])
    del train, val
    booster = xgb.train(config["params"], dtrain, config["rounds"], evals=[(dval, "validation")],
                        early_stopping_rounds=10, verbose_eval=False)
    _report_booster(booster[: booster.best_iteration + 1], rank)


def hand_ray_data(arrays: dict[str, np.ndarray], rounds: int, workers: int, store: str) -> Any:
    import pandas as pd
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    names = [f"f{i:02d}" for i in range(arrays["x_train"].shape[1])]

    def dataset(x: np.ndarray, y: np.ndarray) -> Any:
        frames = [pd.DataFrame(xs, columns=names).assign(label=ys)
                  for xs, ys in zip(np.array_split(x, 20), np.array_split(y, 20))]
        return ray.data.from_pandas(frames)

    trainer = XGBoostTrainer(
        ray_data_loop, train_loop_config={"names": names, "params": PARAMS, "rounds": rounds},
        datasets={"train": dataset(arrays["x_train"], arrays["y_train"]),
                  "validation": dataset(arrays["x_val"], arrays["y_val"])},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"raydata-{time.time_ns()}", storage_path=store))
    return _booster(trainer.fit())


def one_object_loop(config: dict[str, Any]) -> None:
    import ray
    import ray.train
    import xgboost as xgb

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    d = ray.get(config["data"])
    dtrain = xgb.DMatrix(d["x_train"][rank::world], label=d["y_train"][rank::world])
    dval = xgb.DMatrix(d["x_val"][rank::world], label=d["y_val"][rank::world])
    booster = xgb.train(config["params"], dtrain, config["rounds"], evals=[(dval, "validation")],
                        early_stopping_rounds=10, verbose_eval=False)
    _report_booster(booster[: booster.best_iteration + 1], rank)


def one_object(arrays: dict[str, np.ndarray], rounds: int, workers: int, store: str) -> Any:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    data = {k: v for k, v in arrays.items() if not k.endswith("_test")}
    trainer = XGBoostTrainer(
        one_object_loop, train_loop_config={"data": ray.put(data), "params": PARAMS, "rounds": rounds},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=f"one-{time.time_ns()}", storage_path=store))
    return _booster(trainer.fit())


def loom(arrays: dict[str, np.ndarray], rounds: int, workers: int, store: str) -> Any:
    import xgboost as xgb

    from framework.backends.ray_train._core import TrainJob, run_train_job

    job = TrainJob(params=PARAMS, num_boost_round=rounds, early_stopping_rounds=10,
                   num_workers=workers, cpus_per_worker=1.0, use_gpu=False, max_failures=0,
                   storage_path=store, name=f"loom-{time.time_ns()}")
    data = {k: v for k, v in arrays.items() if not k.endswith("_test")}
    names = [f"f{i:02d}" for i in range(arrays["x_train"].shape[1])]
    result = run_train_job(job, data, names)
    return xgb.Booster(model_file=bytearray(result.model_bytes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import logging

    import ray
    import xgboost as xgb

    from framework.backends.evaluation import auc

    started = time.perf_counter()
    arrays = make_arrays(args.rows, args.features)
    small = make_arrays(20_000, args.features)
    print(f"{args.rows:,} rows x {args.features} features made in {time.perf_counter() - started:.1f} s "
          f"({arrays['x_train'].nbytes / GIB:.2f} GiB of training features)")
    cases: dict[str, Callable[..., Any]] = {
        "loom (one object per worker)": loom, "hand-written Ray Data shards": hand_ray_data,
        "one object for all workers": one_object}
    with tempfile.TemporaryDirectory(prefix="lbs-", dir="/tmp") as tmp:
        ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False,
                 _temp_dir=f"{tmp}/ray", logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
                                           "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}})
        try:
            for fn in cases.values():  # warm-up: imports and worker processes, small data
                fn(small, 2, args.workers, f"{tmp}/results")
            rows = []
            for name, fn in cases.items():
                with WorkerMemory() as memory:
                    begin = time.perf_counter()
                    booster = fn(arrays, args.rounds, args.workers, f"{tmp}/results")
                    seconds = time.perf_counter() - begin
                booster.feature_names = None  # the same columns, named by some cases only
                score = auc(arrays["y_test"], booster.predict(xgb.DMatrix(arrays["x_test"])))
                rows.append((name, seconds, memory.rss, memory.uss, score))
                print(f"  {name}: {seconds:.1f} s, worker peak RSS {memory.rss / GIB:.2f} GiB, "
                      f"USS {memory.uss / GIB:.2f} GiB, test AUC {score:.4f}", flush=True)
        finally:
            ray.shutdown()
    base = next(r for r in rows if r[0].startswith("hand-written"))
    print(f"\n{args.rows:,} rows x {args.features} features, {args.rounds} rounds, {args.workers} "
          "workers x 1 CPU; per worker: peak over the run")
    print(f"{'case':<32} {'wall s':>7} {'vs hand':>8} {'RSS GiB':>8} {'USS GiB':>8} {'USS vs hand':>12} {'test AUC':>9}")
    for name, seconds, rss, uss, score in rows:
        print(f"{name:<32} {seconds:>7.1f} {seconds / base[1]:>8.2f} {rss / GIB:>8.2f} {uss / GIB:>8.2f} "
              f"{uss / base[3]:>12.2f} {score:>9.4f}")


if __name__ == "__main__":
    main()
