"""Training dataset build through Loom vs a direct duckdb ``get_historical_features`` call.

    python scripts/bench/bench_training_dataset.py [--sizes 100000 1000000] [--runs 5]

For each size: label rows over customers with three feature snapshots each (customers = rows / 5,
so keys repeat), applied once by the Feast backend. Each measurement runs in a fresh process (so
peak RSS is its own) and times only the work after imports:
- direct: read the label parquet into pandas, ``store.get_historical_features(entity_df,
  features=<service>).to_df()`` on the duckdb offline store;
- loom: ``FeastBackend.apply(training.dataset step)``: the same join plus the rows-in == rows-out
  check, ordering, and writing the parquet file;
- direct+parquet: the direct call plus ``DataFrame.to_parquet``, i.e. a persisted dataset like Loom's.
Runs rotate between the three. Prints median wall seconds, the Loom/direct ratio (target <= 1.1),
the ratio of median CPU seconds (user + system, all threads: less disturbed than wall time by other
load on the machine) against direct and against direct+parquet, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SIDES = ("loom", "direct", "direct+parquet")
FIELDS = {"spend": "float64", "visits": "int64", "tenure": "int64", "charges": "float64", "calls": "int64"}


def recipe_dict() -> dict[str, Any]:
    return {
        "schema_version": 1, "name": "bench",
        "data": {"sources": {
            "f": {"type": "parquet", "path": "data/features.parquet", "timestamp_field": "event_timestamp"},
            "l": {"type": "parquet", "path": "data/labels.parquet", "timestamp_field": "event_timestamp"}}},
        "features": {"entities": {"customer": {"join_keys": ["customer_id"], "value_type": "int64"}},
                     "views": {"profile": {"entities": ["customer"], "source": "f", "fields": FIELDS,
                                           "ttl_s": 30 * 86400}},
                     "service": {"name": "bench_v1", "features": ["profile:*"]}},
        "training": {"label": {"source": "l", "column": "y"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    }


def make_data(root: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    rng = np.random.default_rng(5)
    customers = max(rows // 5, 1)
    ids = np.arange(customers, dtype="int64")
    (root / "data").mkdir(parents=True)
    frames = []
    for k in range(3):
        cols = {f: (rng.uniform(0, 100, customers) if t == "float64" else rng.integers(0, 50, customers))
                for f, t in FIELDS.items()}
        frames.append(pd.DataFrame({"customer_id": ids, "event_timestamp": t0 + pd.Timedelta(days=10 * k),
                                    **cols}))
    pd.concat(frames).to_parquet(root / "data/features.parquet", index=False)
    pd.DataFrame({
        "customer_id": rng.integers(0, customers, rows),
        "event_timestamp": t0 + pd.to_timedelta(rng.integers(0, 40 * 86400, rows), unit="s"),
        "y": rng.integers(0, 2, rows),
    }).to_parquet(root / "data/labels.parquet", index=False)


def context(root: Path) -> Any:
    from framework.backends.base import RunContext
    from framework.spec import Recipe

    recipe = Recipe.model_validate(recipe_dict())
    return RunContext(recipe=recipe, project_dir=root, workspace=root / ".loom")


def setup(root: Path, rows: int) -> None:
    from framework.backends.feast import FeastBackend
    from framework.compile.compiler import compile_steps

    make_data(root, rows)
    ctx = context(root)
    backend = FeastBackend()
    for step in compile_steps(ctx.recipe, {}):
        if step.kind in ("feast.entity", "feast.view", "feast.service"):
            backend.apply(step, ctx)


def child(side: str, root: Path) -> dict[str, Any]:
    """One measurement in this process: seconds of work after imports, rows out, peak RSS."""
    import feast  # noqa: F401  (imports are not what is measured)
    import pandas as pd

    from framework.backends.feast import FeastBackend
    from framework.backends.feast.repo import repo_dir
    from framework.compile.compiler import compile_steps

    ctx = context(root)
    backend = FeastBackend()
    store = backend.store(ctx)
    cpu0 = _cpu_s()
    if side == "loom":
        step = next(s for s in compile_steps(ctx.recipe, {}) if s.kind == "training.dataset")
        start = time.perf_counter()
        rows = backend.apply(step, ctx)["rows"]
    else:
        start = time.perf_counter()
        entity_df = pd.read_parquet(root / "data/labels.parquet")
        service = store.get_feature_service("bench_v1")
        frame = store.get_historical_features(entity_df=entity_df, features=service).to_df()
        rows = len(frame)
        if side == "direct+parquet":
            frame.to_parquet(root / "direct.parquet", index=False)
    seconds = time.perf_counter() - start
    assert repo_dir(ctx.workspace, "bench").is_dir()
    return {"seconds": seconds, "cpu_s": _cpu_s() - cpu0, "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _cpu_s() -> float:
    """User + system CPU seconds of this process, all threads (duckdb runs several)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(side: str, root: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", side, "--root", str(root)],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--child", choices=list(SIDES))
    p.add_argument("--root", type=Path)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root)))
        return
    print(f"{'label rows':>10} {'loom s':>7} {'direct s':>8} {'+parquet s':>10} {'ratio':>6}"
          f" {'cpu ratio':>9} {'cpu ratio +pq':>13} {'loom MB':>8} {'direct MB':>9} {'rows out':>9}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="loom-bench-dataset-") as tmp:
            root = Path(tmp)
            setup(root, size)
            runs: dict[str, list[dict]] = {side: [] for side in SIDES}
            for i in range(args.runs):
                for side in SIDES[i % 3:] + SIDES[:i % 3]:  # rotate who goes first
                    runs[side].append(measure(side, root))
            wall = {s: statistics.median(r["seconds"] for r in runs[s]) for s in runs}
            cpu = {s: statistics.median(r["cpu_s"] for r in runs[s]) for s in runs}
            rss = {s: max(r["peak_rss_mb"] for r in runs[s]) for s in runs}
            rows = {r["rows"] for s in runs for r in runs[s]}
            print(f"{size:>10} {wall['loom']:>7.2f} {wall['direct']:>8.2f} {wall['direct+parquet']:>10.2f}"
                  f" {wall['loom'] / wall['direct']:>6.2f} {cpu['loom'] / cpu['direct']:>9.2f}"
                  f" {cpu['loom'] / cpu['direct+parquet']:>13.2f} {rss['loom']:>8.0f} {rss['direct']:>9.0f}"
                  f" {'/'.join(map(str, sorted(rows))):>9}", flush=True)


if __name__ == "__main__":
    main()
