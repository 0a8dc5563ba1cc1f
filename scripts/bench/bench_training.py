"""Loom's training step vs a hand-written Ray Train V2 script, same 100k x 20 data; xgboost.train floor.

    python scripts/bench/bench_training.py [--rows 100000] [--features 20] [--rounds 50] [--repeats 5] [--workers 1]

All sides share one local Ray (started once, warm), the same parquet, the same seeded split, the same
XGBoost params (hist, depth 6, eta 0.1, nthread = CPUs per worker) and the same early stopping. Runs
alternate (loom, hand-written, floor) so load from other processes hits each side alike.

- hand-written: what a careful engineer writes by hand with Ray Train V2: read the parquet, split,
  `ray.put` the arrays, `XGBoostTrainer` with one report at the end, the booster back, test AUC.
  RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.1 (see STACK.md).
- loom train: `RayTrainBackend.apply` minus its MLflow logging: read + check the parquet, split,
  Ray Train job, test metrics, UBJ saved in the workspace. This is the ratio the target is about.
- loom train+mlflow: the whole `training.train` step, MLflow run with params, per-round metrics,
  UBJ model, signature, lineage and reference profile included.
- xgboost.train: in-process, no Ray: the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

#: Loom's own work around the Ray Train job (read, check, split, evaluate, save): no noise from Ray.
OUTSIDE = "loom outside the Ray job"
PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1,
          "eval_metric": ["logloss", "auc"], "seed": 42}


def make_dataset(path: Path, rows: int, features: int) -> list[str]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype(np.float64)
    logit = x[:, : min(5, features)] @ np.linspace(1.0, 0.2, min(5, features)) + rng.normal(size=rows)
    names = [f"f{i:02d}" for i in range(features)]
    frame = pd.DataFrame(x, columns=names)
    frame.insert(0, "label", (logit > 0).astype(np.int64))
    frame.insert(0, "event_timestamp", pd.Timestamp("2026-01-01", tz="UTC"))
    frame.insert(0, "id", np.arange(rows))
    frame.to_parquet(path, index=False)
    return names


def recipe_dict(names: list[str], rounds: int, workers: int, cpus: float) -> dict[str, Any]:
    source = {"type": "parquet", "path": "ds.parquet", "timestamp_field": "event_timestamp"}
    view = {"entities": ["e"], "source": "s", "fields": {n: "float64" for n in names}}
    booster = {k: v for k, v in PARAMS.items() if k not in ("objective", "eval_metric", "seed")}
    model = {"type": "xgboost", "objective": "binary:logistic", "num_boost_round": rounds,
             "early_stopping_rounds": 10, "params": booster}
    return {
        "schema_version": 1, "name": "bench",
        "data": {"sources": {"s": source}},
        "features": {"entities": {"e": {"join_keys": ["id"]}}, "views": {"v": view},
                     "service": {"name": "svc", "features": ["v:*"]}},
        "training": {"label": {"source": "s", "column": "label"},
                     "split": {"type": "random", "validation_fraction": 0.15, "test_fraction": 0.15,
                               "seed": 42},
                     "model": model, "scaling": {"num_workers": workers, "cpus_per_worker": cpus}},
    }


def split(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    frame = pd.read_parquet(path)
    x = frame[names].to_numpy(np.float32)
    y = frame["label"].to_numpy(np.float32)
    order = np.random.default_rng(42).permutation(len(frame))
    n_test = n_val = int(round(len(frame) * 0.15))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return {"x_train": x[train], "y_train": y[train], "x_val": x[val], "y_val": y[val],
            "x_test": x[test], "y_test": y[test]}


def hand_loop(config: dict[str, Any]) -> None:
    import tempfile as tf

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
    with tf.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            booster.save_model(os.path.join(tmp, "model.ubj"))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"best_iteration": booster.best_iteration}, checkpoint=checkpoint)


def hand_written(path: Path, names: list[str], rounds: int, workers: int, cpus: float, store: str) -> float:
    import ray
    import xgboost as xgb
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    from framework.backends.evaluation import auc

    data = split(path, names)
    test_x, test_y = data.pop("x_test"), data.pop("y_test")
    params = {**PARAMS, "nthread": max(1, int(cpus))}
    trainer = XGBoostTrainer(
        hand_loop, train_loop_config={"data": ray.put(data), "params": params, "rounds": rounds},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=f"hand-{time.time_ns()}", storage_path=store),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        booster = xgb.Booster(model_file=os.path.join(d, "model.ubj"))
    return auc(test_y, booster.predict(xgb.DMatrix(test_x), iteration_range=(0, booster.best_iteration + 1)))


def floor(path: Path, names: list[str], rounds: int, cpus: float) -> float:
    import xgboost as xgb

    from framework.backends.evaluation import auc

    d = split(path, names)
    params = {**PARAMS, "nthread": max(1, int(cpus))}
    booster = xgb.train(params, xgb.DMatrix(d["x_train"], label=d["y_train"]), rounds,
                        evals=[(xgb.DMatrix(d["x_val"], label=d["y_val"]), "validation")],
                        early_stopping_rounds=10, verbose_eval=False)
    best = (0, booster.best_iteration + 1)
    return auc(d["y_test"], booster.predict(xgb.DMatrix(d["x_test"]), iteration_range=best))


class LoomTimer:
    """Runs RayTrainBackend.apply and splits its time into training and MLflow logging."""

    def __init__(self, project: Path, names: list[str], rounds: int, workers: int, cpus: float) -> None:
        from framework.backends.base import RunContext
        from framework.compile.compiler import compile_steps
        from framework.spec import Recipe

        recipe = Recipe.model_validate(recipe_dict(names, rounds, workers, cpus))
        self.step = next(s for s in compile_steps(recipe, {}) if s.kind == "training.train")
        self.ctx = RunContext(recipe=recipe, project_dir=project, workspace=project / "ws",
                              outputs={"training.dataset": {"path": str(project / "ds.parquet")}})
        self.mlflow_s = 0.0
        self.job_s = 0.0

    def run(self) -> float:
        import framework.backends.ray_train.backend as backend_mod
        from framework.backends.ray_train import RayTrainBackend

        original = backend_mod.RayTrainBackend._log

        def timed_log(this: Any, *args: Any) -> str:
            start = time.perf_counter()
            try:
                return original(this, *args)
            finally:
                self.mlflow_s = time.perf_counter() - start

        backend_mod.RayTrainBackend._log = timed_log  # measure the MLflow share of the same call
        # A fresh fingerprint each time: the same one would (rightly) reuse the earlier run.
        step = self.step.model_copy(update={"fingerprint": f"sha256:{time.time_ns():064x}"})
        try:
            out = RayTrainBackend().apply(step, self.ctx)
            self.job_s = out["elapsed_s"]  # the Ray Train job alone, as the backend timed it
            return out["metrics"]["auc"]
        finally:
            backend_mod.RayTrainBackend._log = original


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    score = fn()
    return time.perf_counter() - start, score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import logging

    import ray

    with tempfile.TemporaryDirectory(prefix="lbt-", dir="/tmp") as tmp:
        project = Path(tmp)
        names = make_dataset(project / "ds.parquet", args.rows, args.features)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(project / "ray"), logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}})
        try:
            rows = run_cases(project, names, args)
        finally:
            ray.shutdown()
    report(rows, args)


def run_cases(project: Path, names: list[str], args: argparse.Namespace) -> dict[str, list[float]]:
    loom = LoomTimer(project, names, args.rounds, args.workers, args.cpus_per_worker)
    store = str(project / "hand_results")
    cases: dict[str, Callable[[], float]] = {
        "loom train+mlflow": loom.run,
        "hand-written Ray Train V2": lambda: hand_written(project / "ds.parquet", names, args.rounds,
                                                          args.workers, args.cpus_per_worker, store),
        "xgboost.train (floor)": lambda: floor(project / "ds.parquet", names, args.rounds,
                                               args.cpus_per_worker),
    }
    for fn in cases.values():  # warm-up: imports, MLflow tables, Ray worker processes
        fn()
    out: dict[str, list[float]] = {name: [] for name in [*cases, "loom train", OUTSIDE]}
    scores: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            seconds, scores[name] = timed(fn)
            out[name].append(seconds)
            if name.startswith("loom"):
                out["loom train"].append(seconds - loom.mlflow_s)
                out[OUTSIDE].append(seconds - loom.mlflow_s - loom.job_s)
    for name, score in scores.items():
        print(f"test AUC {name}: {score:.4f}")
    return out


def report(rows: dict[str, list[float]], args: argparse.Namespace) -> None:
    base = statistics.median(rows["hand-written Ray Train V2"])
    print(f"\n{args.rows:,} rows x {args.features} features, {args.rounds} rounds, "
          f"{args.workers} worker(s) x {args.cpus_per_worker:g} CPU, median of {args.repeats}")
    print(f"{'case':<28} {'median s':>9} {'min s':>7} {'vs hand-written':>16}")
    for name in ("loom train", "loom train+mlflow", "hand-written Ray Train V2", "xgboost.train (floor)",
                 OUTSIDE):
        med = statistics.median(rows[name])
        print(f"{name:<28} {med:>9.2f} {min(rows[name]):>7.2f} {med / base:>16.2f}")


if __name__ == "__main__":
    main()
