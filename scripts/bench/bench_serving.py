"""Loom's prediction endpoint vs a hand-written single-deployment Ray Serve app; in-process as the floor.

    python scripts/bench/bench_serving.py [--customers 1000] [--requests 1500] [--rounds 2]

Both apps run on one local Ray Serve (127.0.0.1, access logs off) with the same settings: one
replica, 0.5 CPU, max_ongoing_requests 64, the same in-memory online
feature table (latest snapshot per customer, loaded from the sample parquet) and the same UBJ
booster. Each request looks one customer up by key and predicts one row.

- loom: the churn recipe's app (``framework.serving.app:build_app``, deployed declaratively) with
  auth, request validation, circuit breakers, fallback chain, metrics and stats on. The answer cache
  is off so both sides do the lookup and predict on every request.
- hand-written (a): one Serve deployment, Starlette request in, ``json.loads``, lookup,
  ``inplace_predict`` of the one row, JSON out: what most engineers write by hand.
- hand-written-batched (b): the same with ``@serve.batch(32, 2 ms)`` around the predict.
- loom via the gateway: ``POST /v1/predictions`` with ``model_id`` in the body, with a second model
  (``churn_b``, same settings) deployed beside churn; its ratio is against Loom's per-model route.
- loom-unmonitored: the same app as ``churn_quiet`` with ``monitoring.drift`` and ``monitoring.log``
  off (request metrics stay on): Loom's ratio against it is the cost of drift binning (every row,
  in the bins of the model's reference profile) and the prediction log (10% of rows).
- in-process: lookup + ``inplace_predict`` in a loop, no HTTP: the floor. Also Loom's own request
  path in-process (body validation + ``Predictor``, no HTTP) to show what Loom adds over the floor.

Load comes from aiohttp on keep-alive connections at concurrency 1, 16 and 64 (``--concurrency``),
with bounded request counts; rounds alternate between the sides so background load hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
FEATURES = ["tenure_months", "monthly_charges", "contract_months", "support_calls",
            "payment_delay_days"]
KEY = "bench-key-0123456789"
SECOND_MODEL = "churn_b"
QUIET_MODEL = "churn_quiet"


def compose_recipe(overrides: list[str] = ()) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from framework.spec import Recipe

    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        cfg = compose("churn", overrides=[f"hydra.searchpath=[file://{ROOT / 'conf'}]",
                                          "++serving.cache.enabled=false", *overrides])
    data = OmegaConf.to_container(cfg, resolve=False)
    for entry in data["serving"]["auth"]["api_keys"]:
        entry["key"] = {"env": "LOOM_API_KEY"}
    return Recipe.model_validate(data)


def prepare(workdir: Path, customers: int) -> tuple[Path, Path, list[dict]]:
    """Sample data, a small churn booster (UBJ) with its reference profile beside it (as
    registration puts it), and the online feature rows."""
    import make_data
    import pandas as pd
    import xgboost

    make_data.main(["--out", str(workdir / "data"), "--customers", str(customers), "--accounts", "100"])
    feats = pd.read_parquet(workdir / "data" / "churn" / "features.parquet")
    latest = feats.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    labels = pd.read_parquet(workdir / "data" / "churn" / "labels.parquet")
    frame = latest.merge(labels[["customer_id", "churned"]], on="customer_id")
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1},
                            xgboost.DMatrix(frame[FEATURES].astype("float32"), label=frame["churned"]),
                            num_boost_round=100)
    model = workdir / "model.ubj"
    booster.save_model(str(model))
    from framework.backends.model_registry.profile import reference_profile

    x = frame[FEATURES].to_numpy(dtype="float64")
    profile = reference_profile(x, FEATURES, booster.inplace_predict(x.astype("float32")))
    (workdir / "reference_profile.json").write_text(json.dumps(profile))
    rows = latest[["customer_id", *FEATURES]].to_dict(orient="records")
    return workdir / "data" / "churn" / "features.parquet", model, rows


def deploy_loom(recipe: Any, workdir: Path, features_path: Path, model: Path) -> None:
    """Loom's churn app, a second model (``churn_b``) beside it, the same app unmonitored
    (``churn_quiet``), and the gateway."""
    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import traffic

    features = {"type": "memory", "path": str(features_path), "timestamp_field": "event_timestamp"}
    slot = {"version": "1", "model_path": str(model), "model_uri": "models:/churn/1",
            "profile_path": str(model.parent / "reference_profile.json")}
    for model_id, variant in ((recipe.model_id, recipe), (SECOND_MODEL, recipe),
                              (QUIET_MODEL, unmonitored(recipe))):
        registry = variant.registry.model_copy(update={"model_name": model_id})
        args = cfg.app_args(variant.model_copy(update={"registry": registry}), workdir,
                            features=features)
        traffic.deploy_app(cfg.app_config(model_id, args, cfg.initial_user_config(slot)))
    traffic.ensure_gateway(recipe.serving.route_prefix)


def unmonitored(recipe: Any) -> Any:
    """The recipe with ``monitoring.drift`` and ``monitoring.log`` off (request metrics stay on)."""
    m = recipe.monitoring
    return recipe.model_copy(update={"monitoring": m.model_copy(update={
        "drift": m.drift.model_copy(update={"enabled": False}),
        "log": m.log.model_copy(update={"enabled": False})})})


def deploy_baseline(features_path: Path, model: Path, batched: bool) -> str:
    """A hand-written app: same lookup and replica settings; with ``@serve.batch(32, 2 ms)`` or
    without batching (one ``inplace_predict`` per request, as most hand-written apps do).
    Returns its route."""
    from ray import serve

    @serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5},
                      logging_config={"enable_access_log": False})
    class Baseline:
        def __init__(self, path: str, model_path: str, batched: bool) -> None:
            import xgboost
            from framework.serving.features import InMemoryLookup, _parquet_rows

            rows = _parquet_rows(path, ["customer_id"], "event_timestamp")
            self.lookup = InMemoryLookup(["customer_id"], FEATURES, rows)
            self.booster = xgboost.Booster(model_file=model_path)
            self.booster.set_param({"nthread": 1})
            self.batched = batched

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
        async def predict_batched(self, rows: list[list[float]]) -> list[float]:
            import numpy as np

            return [float(p) for p in self.booster.inplace_predict(np.asarray(rows, dtype=np.float32))]

        async def __call__(self, request) -> Any:
            import numpy as np
            from starlette.responses import JSONResponse

            body = json.loads(await request.body())
            (row,) = self.lookup.get([{"customer_id": body["entities"]["customer_id"]}])
            vector = [float(row[f]) for f in FEATURES]
            if self.batched:
                p = await self.predict_batched(vector)
            else:
                p = float(self.booster.inplace_predict(np.asarray([vector], dtype=np.float32))[0])
            return JSONResponse({"prediction": int(p >= 0.5), "probability": p, "model_version": "1"})

    name = "baseline-batched" if batched else "baseline"
    serve.run(Baseline.options(name=name).bind(str(features_path), str(model), batched), name=name,
              route_prefix=f"/{name}", blocking=False)
    from framework.backends.ray_serve.traffic import wait_running

    wait_running(name)
    return f"/{name}"


async def _load(url: str, ids: list[str], requests: int, concurrency: int) -> tuple[list[float], float]:
    import aiohttp

    latencies: list[float] = []
    counter = iter(range(requests))
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    model_id = url.split("/v1/models/")[1].split("/")[0] if "/v1/models/" in url else "churn"

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            body = json.dumps({"model_id": model_id, "entities": {"customer_id": ids[i % len(ids)]}})
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}")
            latencies.append((time.perf_counter() - t0) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, requests / wall


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def floor(features_path: Path, model: Path, ids: list[str], n: int) -> dict[str, float]:
    """In-process lookup + inplace_predict of one row at a time: no HTTP, no Serve."""
    import numpy as np
    import xgboost

    from framework.serving.features import InMemoryLookup, _parquet_rows

    lookup = InMemoryLookup(["customer_id"], FEATURES,
                            _parquet_rows(str(features_path), ["customer_id"], "event_timestamp"))
    booster = xgboost.Booster(model_file=str(model))
    booster.set_param({"nthread": 1})
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        (row,) = lookup.get([{"customer_id": ids[i % len(ids)]}])
        booster.inplace_predict(np.asarray([[float(row[f]) for f in FEATURES]], dtype=np.float32))
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "rps": 1000 / statistics.mean(lat)}


def loom_in_process(recipe: Any, features_path: Path, model: Path, ids: list[str], n: int) -> dict:
    """Loom's request path without HTTP or Serve: body validation, Predictor (lookup, slots, predict)."""
    from framework.backends.ray_serve import config as cfg
    from framework.serving.body import parse_predict
    from framework.serving.features import build_lookup
    from framework.serving.predictor import Predictor
    from framework.serving.scoring import predict_matrix
    from framework.serving.settings import parse_args

    features = {"type": "memory", "path": str(features_path), "timestamp_field": "event_timestamp"}
    args = parse_args(cfg.app_args(recipe, features_path.parent, features=features, stats=False))
    import random

    rng = random.Random(0)

    async def predict_fn(slot: Any, rows: list[list[float]]) -> Any:
        return predict_matrix(slot, rows, rng)

    predictor = Predictor(args, build_lookup(features, ["customer_id"], FEATURES), predict_fn)
    predictor.reconfigure({"slots": {"stable": {
        "version": "1", "model_path": str(model),
        "profile_path": str(model.parent / "reference_profile.json")}}})

    async def run() -> list[float]:
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            req = parse_predict({"model_id": "churn", "entities": {"customer_id": ids[i % len(ids)]}}, 10)
            await predictor.predict(req.as_instances())
            lat.append((time.perf_counter() - t0) * 1000)
        return lat

    lat = asyncio.run(run())
    predictor.watch.close()
    return {"p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "rps": 1000 / statistics.mean(lat)}


def measure(urls: dict[str, str], ids: list[str], requests: int, rounds: int,
            concurrencies: list[int]) -> dict:
    results: dict[tuple[str, int], dict[str, list]] = {}
    for name, url in urls.items():                      # warm-up: connections, batch queues, JIT
        asyncio.run(_load(url, ids, 200, 4))
    for concurrency in concurrencies:
        for _ in range(rounds):
            for name, url in urls.items():
                lat, rps = asyncio.run(_load(url, ids, requests, concurrency))
                slot = results.setdefault((name, concurrency), {"lat": [], "rps": []})
                slot["lat"].extend(lat)
                slot["rps"].append(rps)
    return {key: {"p50_ms": _pct(v["lat"], 0.5), "p99_ms": _pct(v["lat"], 0.99),
                  "rps": statistics.mean(v["rps"]), "n": len(v["lat"])} for key, v in results.items()}


#: Each side and the side its ratios are taken against (measured in the same run): (a) the
#: hand-written app without batching, (b) the same with ``@serve.batch``.
RATIOS = [("loom", "hand-written"), ("loom", "hand-written-batched"),
          ("hand-written", "hand-written"), ("hand-written-batched", "hand-written"),
          ("loom-gateway", "loom"), ("loom", "loom-unmonitored")]


def report(results: dict, floor_stats: dict, loom_local: dict, quiet_local: dict,
           concurrencies: list[int]) -> str:
    lines = ["| concurrency | side | p50 ms | p99 ms | req/s | ratios against | p50 ratio | p99 ratio "
             "| throughput ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for c in concurrencies:
        for side, against in RATIOS:
            r, base = results[(side, c)], results[(against, c)]
            ratios = (f"{r['p50_ms'] / base['p50_ms']:.2f} | {r['p99_ms'] / base['p99_ms']:.2f} | "
                      f"{r['rps'] / base['rps']:.2f}")
            lines.append(f"| {c} | {side} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} "
                         f"| {against} | {ratios} |")
    lines.append(f"| - | loom in-process (no HTTP) | {loom_local['p50_ms']:.3f} | {loom_local['p99_ms']:.3f} | "
                 f"{loom_local['rps']:.0f} | | | | |")
    lines.append(f"| - | loom in-process, drift and log off | {quiet_local['p50_ms']:.3f} | "
                 f"{quiet_local['p99_ms']:.3f} | {quiet_local['rps']:.0f} | loom in-process | "
                 f"{loom_local['p50_ms'] / quiet_local['p50_ms']:.2f} | "
                 f"{loom_local['p99_ms'] / quiet_local['p99_ms']:.2f} | "
                 f"{loom_local['rps'] / quiet_local['rps']:.2f} |")
    lines.append(f"| - | in-process floor | {floor_stats['p50_ms']:.3f} | {floor_stats['p99_ms']:.3f} | "
                 f"{floor_stats['rps']:.0f} | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--requests", type=int, default=1500, help="requests per side, round and concurrency")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--loom", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of Loom's churn recipe (e.g. serving.batching.adaptive=false)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy",
                   help="Serve's ingress for every side (env.ingress): its Python proxy or HAProxy")
    args = p.parse_args(argv)
    os.environ["LOOM_API_KEY"] = KEY
    import ray
    from ray import serve

    from framework.backends.ray_serve import runtime

    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-serving-"))
    features_path, model, rows = prepare(workdir, args.customers)
    ids = [r["customer_id"] for r in rows]
    from framework.backends.ray_ingress import head_env, socket_dir

    os.environ.update(head_env(args.ingress, workdir / "ray"))   # read by the Ray this starts
    # Five 0.5-CPU replicas and the gateway: logical CPUs (the machine has 2 cores, shared alike).
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _temp_dir=str(workdir / "ray"))
    try:
        from framework.backends.ray_cluster import port_holder

        port = next(p for p in range(18080, 18180) if port_holder(p) is None)
        runtime.ensure_serve("127.0.0.1", port)
        recipe = compose_recipe(args.loom)
        deploy_loom(recipe, workdir, features_path, model)
        base = f"http://127.0.0.1:{port}"
        urls = {"loom": f"{base}/v1/models/churn/predictions",
                "hand-written": base + deploy_baseline(features_path, model, batched=False),
                "hand-written-batched": base + deploy_baseline(features_path, model, batched=True),
                "loom-gateway": f"{base}/v1/predictions",
                "loom-unmonitored": f"{base}/v1/models/{QUIET_MODEL}/predictions"}
        results = measure(urls, ids, args.requests, args.rounds, args.concurrency)
        floor_stats = floor(features_path, model, ids, 5000)
        loom_local = loom_in_process(recipe, features_path, model, ids, 20000)
        quiet_local = loom_in_process(unmonitored(recipe), features_path, model, ids, 20000)
        print(report(results, floor_stats, loom_local, quiet_local, args.concurrency))
        if args.json:
            args.json.write_text(json.dumps({f"{k[0]}@{k[1]}": v for k, v in results.items()}
                                            | {"floor": floor_stats, "loom_in_process": loom_local,
                                               "loom_in_process_unmonitored": quiet_local},
                                            indent=2))
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(socket_dir(workdir / "ray"), ignore_errors=True)   # HAProxy's sockets


if __name__ == "__main__":
    main()
