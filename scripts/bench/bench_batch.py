"""Loom's batch scoring vs a hand-written Ray Data script on the same joined rows; inplace_predict floor.

    python scripts/bench/bench_batch.py [--rows 1000000] [--repeats 3] [--batch-size 10000]

The offline store's point-in-time join is the same call on every side (``loom batch`` and a
hand-written script both ask Feast for the historical features), so this measures what comes
after it, on the same in-memory rows (churn's five features plus one categorical column):

- hand-written: ``ray.data.from_pandas(rows).map_batches(Predict, batch_size, concurrency=1)``
  where ``Predict`` loads the UBJ once and calls ``inplace_predict`` on the numeric columns, then
  ``to_pandas()``. It drops the categorical column (a hand-writer would have to encode it).
- loom batch: ``framework.backends.batch.score``: the same Ray Data job with Loom's scorer, which
  encodes the categories of the version's contract, labels the answers, flags missing features,
  keeps every row by ``row_id`` and reports progress.
- loom batch (treelite): the same job with ``batch.predictor: treelite``: the version compiled to
  native code (Treelite + TL2cgen, gcc; built once, before the timed rounds), one thread per worker.
- inplace_predict: one process, one call on the whole matrix: the floor.

Runs alternate (loom, hand-written, floor) so load from other processes hits each side alike;
rows/s is the median over ``--repeats``; memory is the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NUMERIC = ["tenure_months", "monthly_charges", "contract_months", "support_calls", "payment_delay_days"]
JOBS = ["contract", "retired", "salaried", "self_employed"]


def make_rows(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(10, 3, n) for name in NUMERIC})
    frame["employment"] = rng.choice(JOBS, n)
    frame["row_id"] = np.arange(n, dtype="int64")
    frame["customer_id"] = [f"C{i:07d}" for i in range(n)]
    return frame


def train(out: Path) -> dict:
    import xgboost as xgb

    from framework.compile.contract import Contract

    rows = make_rows(20_000, seed=1)
    codes = pd.Categorical(rows["employment"], categories=JOBS).codes.astype(np.float32)
    x = np.column_stack([rows[NUMERIC].to_numpy(np.float32), codes])
    y = (rows["support_calls"] + 2 * (codes == 0) > 11).astype(np.float32)
    names, types = [*NUMERIC, "employment"], ["q"] * len(NUMERIC) + ["c"]
    dm = xgb.DMatrix(x, label=y, feature_names=names, feature_types=types, enable_categorical=True)
    xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.1}, dm, 100).save_model(str(out))
    contract = Contract(task="binary", features=[*({"name": n, "type": "float64"} for n in NUMERIC),
                                                 {"name": "employment", "type": "string",
                                                  "categories": JOBS}],
                        labels={"threshold": 0.5, "positive": "churn", "negative": "stay"})
    return {"model_path": str(out), "version": "1", "contract": contract.model_dump(mode="json")}


class HandWritten:
    """What a careful engineer writes for Ray Data batch scoring."""

    def __init__(self, path: str) -> None:
        import xgboost

        self.booster = xgboost.Booster(model_file=path)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        x = batch[NUMERIC].to_numpy(np.float32)
        x = np.column_stack([x, np.full(len(x), np.nan, dtype=np.float32)])
        return pd.DataFrame({"row_id": batch["row_id"], "probability": self.booster.inplace_predict(x)})


def hand_written(rows: pd.DataFrame, model: dict, batch_size: int) -> pd.DataFrame:
    import ray.data

    ds = ray.data.from_pandas(rows[["row_id", *NUMERIC]]).map_batches(
        HandWritten, fn_constructor_args=(model["model_path"],), batch_size=batch_size,
        concurrency=1, num_cpus=1, batch_format="pandas")
    return ds.to_pandas()


def loom(rows: pd.DataFrame, model: dict, batch_size: int) -> pd.DataFrame:
    from framework.backends.batch import score
    from framework.spec.batch import Batch

    recipe = SimpleNamespace(batch=Batch(batch_size=batch_size),
                             feature_names=lambda: [*NUMERIC, "employment"],
                             serving=SimpleNamespace(missing_features="model"))
    ctx = SimpleNamespace(recipe=recipe, workspace=Path(tempfile.gettempdir()), progress=lambda s: None)
    return score(ctx, rows, model)


def with_library(model: dict, out: Path) -> dict:
    """``model`` with its compiled library, as ``batch.predictor: treelite`` hands it to the job."""
    from framework.backends import compiled
    from framework.serving.compiled import sha256_of

    lib = compiled.compile_model(model["model_path"], out)
    return {**model, "compiled_path": str(lib), "compiled_sha256": sha256_of(str(lib))}


def floor(rows: pd.DataFrame, model: dict, batch_size: int) -> np.ndarray:
    import xgboost

    from framework.backends.ray_train.dataset import feature_matrix

    booster = xgboost.Booster(model_file=model["model_path"])
    x = feature_matrix(rows, [*NUMERIC, "employment"], {"employment": JOBS})
    return booster.inplace_predict(x)


def main(argv: list[str] | None = None) -> None:
    import ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=10_000)
    args = p.parse_args(argv)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        model = train(Path(tmp) / "model.ubj")
        fast = with_library(model, Path(tmp))
        rows = make_rows(args.rows)
        sides = {"loom batch": loom, "loom batch (treelite)": lambda r, m, b: loom(r, fast, b),
                 "hand-written Ray Data": hand_written, "inplace_predict": floor}
        times: dict[str, list[float]] = {name: [] for name in sides}
        fn_out = {}
        for _ in range(args.repeats + 1):  # the first round warms Ray Data up and is not counted
            for name, fn in sides.items():
                t0 = time.perf_counter()
                fn_out[name] = fn(rows, model, args.batch_size)
                times[name].append(time.perf_counter() - t0)
        ray.shutdown()
    rate = {name: args.rows / statistics.median(t[1:]) for name, t in times.items()}
    print(f"{args.rows:,} rows, batch size {args.batch_size:,}, {args.repeats} timed rounds, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print("| side | rows/s (median) | vs hand-written |")
    print("|---|---|---|")
    for name in sides:
        print(f"| {name} | {rate[name]:,.0f} | {rate[name] / rate['hand-written Ray Data']:.2f}x |")
    print(f"loom batch (treelite) vs loom batch (xgboost): "
          f"{rate['loom batch (treelite)'] / rate['loom batch']:.2f}x rows/s")
    assert len(fn_out["loom batch"]) == args.rows  # rows in = rows out
    np.testing.assert_allclose(fn_out["loom batch (treelite)"]["probability"].to_numpy(float),
                               fn_out["loom batch"]["probability"].to_numpy(float), atol=1e-5)


if __name__ == "__main__":
    main()
