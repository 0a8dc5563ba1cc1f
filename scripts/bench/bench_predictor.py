"""The compiled predictor (``serving.predictor: treelite``) against XGBoost's ``inplace_predict``.

    python scripts/bench/bench_predictor.py [--rounds 3] [--trees 100] [--depth 6]

Trains the churn model of the sample data (``make data``) with the serving benchmark's settings
(100 trees, depth 6, one thread), compiles it the way a deploy does (``backends/compiled.py``: gcc,
checked equal to XGBoost), then times both, one thread each, at 1, 32, 1,000 and 100,000 rows per
call (best of repeated calls per round; the median of the rounds is printed). Baseline: XGBoost's
``inplace_predict`` on the same rows in the same process and run. Batch scoring is rows/s at
100,000 rows per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts" / "bench")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    args = parser.parse_args(argv)

    import xgboost

    import bench_rollout as B
    from framework.backends import compiled

    with tempfile.TemporaryDirectory() as tmp:
        model = B.train_booster(args.data, Path(tmp) / "model.ubj", args.trees, args.depth, seed=0)
        started = time.perf_counter()
        lib = compiled.compile_model(model, tmp)
        compile_s = time.perf_counter() - started
        booster = xgboost.Booster(model_file=str(model))
        booster.set_param({"nthread": 1})
        fast = compiled.load(lib, booster)
        names = [f"f{i}" for i in range(booster.num_features())]
        diff = compiled.check_equal(booster, fast, compiled.check_rows(None, names), "model")
        rounds = [compiled.timing_table(booster, fast, names, None, budget_s=0.5)
                  for _ in range(args.rounds)]
    print(f"{args.trees} trees, depth {args.depth}, {len(names)} features; compiled in "
          f"{compile_s:.1f} s; largest difference from XGBoost {diff:.2g}")
    print(f"{'rows/call':>10} {'xgboost us/row':>15} {'treelite us/row':>16} {'speed-up':>9} "
          f"{'xgboost rows/s':>15} {'treelite rows/s':>16}")
    for i, size in enumerate(compiled.BATCH_SIZES):
        xgb = statistics.median(r[i]["xgboost_us_per_row"] for r in rounds)
        tl = statistics.median(r[i]["treelite_us_per_row"] for r in rounds)
        print(f"{size:>10,} {xgb:>15.3f} {tl:>16.3f} {xgb / tl:>8.2f}x {1e6 / xgb:>15,.0f} "
              f"{1e6 / tl:>16,.0f}")


if __name__ == "__main__":
    main()
