"""Rollout benchmark and load generator: rollback speed and p99 during weight changes on Ray Serve.

    python scripts/bench/bench_rollout.py bench            # the benchmark (starts its own Ray)
    python scripts/bench/bench_rollout.py load --url U --rps 150 --n 2250 --out requests.jsonl

``load`` is also what the rollout integration tests run as their second process: a steady request
rate (each request has a scheduled send time, so a stalled server shows up as latency, not as a
lower rate), every answer recorded as one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]


# ---- load generator ------------------------------------------------------------------------------


def _worker(url: str, key: str, ids: list[str], schedule: list[tuple[int, float]],
            out: list[dict[str, Any]], stop_file: str | None = None) -> None:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    for i, at in schedule:
        if stop_file is not None and os.path.exists(stop_file):
            break
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
        body = json.dumps({"entities": {"customer_id": ids[i % len(ids)]}})
        sent = time.time()
        rec: dict[str, Any] = {"i": i, "t": sent, "late_ms": (sent - at) * 1000}
        try:
            conn.request("POST", parts.path, body, headers)
            resp = conn.getresponse()
            raw = resp.read()
            rec["status"] = resp.status
            try:
                data = json.loads(raw or b"{}")
            except ValueError:  # not Loom's JSON: Serve's proxy answered for a dead replica
                data = {}
                rec["error"] = f"not JSON: {raw[:200]!r}"
            rec.update(version=data.get("model_version"), fallback=data.get("fallback"),
                       degraded=data.get("degraded"))
        except Exception as exc:  # a failed request is data here, not a crash
            rec.update(status=0, error=f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        rec["lat_ms"] = (time.time() - sent) * 1000
        out.append(rec)
    conn.close()


def run_load(url: str, key: str, rps: float, n: int, ids: list[str], threads: int = 8,
             start_at: float | None = None, stop_file: str | None = None) -> list[dict[str, Any]]:
    """Send ``n`` requests at ``rps`` per second from ``threads`` keep-alive connections.

    ``stop_file``: stop early once this file exists (a caller that loads a system until some
    event, e.g. a rollout's end, rather than for a fixed count).
    """
    t0 = start_at or time.time() + 0.2
    plans: list[list[tuple[int, float]]] = [[] for _ in range(threads)]
    for i in range(n):
        plans[i % threads].append((i, t0 + i / rps))
    results: list[list[dict[str, Any]]] = [[] for _ in range(threads)]
    workers = [threading.Thread(target=_worker,
                                args=(url, key, ids, plans[k], results[k], stop_file))
               for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sorted((r for rs in results for r in rs), key=lambda r: r["i"])


def _load_main(args: argparse.Namespace) -> None:
    ids = [f"C{i:06d}" for i in range(args.ids)]
    records = run_load(args.url, args.key or os.environ.get("LOOM_API_KEY", ""), args.rps, args.n,
                       ids, args.threads, stop_file=args.stop_file)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in records))


def spawn_load(url: str, out: Path, rps: float, n: int, key: str, threads: int = 8,
               ids: int = 1000, stop_file: Path | None = None) -> Any:
    """Start ``load`` in a second process (what the integration tests use); returns the Popen."""
    import subprocess

    stop = ["--stop-file", str(stop_file)] if stop_file is not None else []
    return subprocess.Popen([sys.executable, __file__, "load", "--url", url, "--rps", str(rps),
                             "--n", str(n), "--out", str(out), "--key", key,
                             "--threads", str(threads), "--ids", str(ids), *stop])


def read_records(path: Path) -> list[dict[str, Any]]:
    """The load generator's records."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    return _pct(values, 99)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


# ---- a demo app: two tiny churn models side by side on Serve ----------------------------------------

FEATURES = ["tenure_months", "monthly_charges", "contract_months", "support_calls",
            "payment_delay_days"]


def compose_recipe(overrides: list[str] | None = None) -> Any:
    """The churn recipe composed from this repository, API keys from LOOM_API_KEY."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from framework.spec import Recipe

    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        cfg = compose("churn", overrides=[f"hydra.searchpath=[file://{ROOT / 'conf'}]",
                                          *(overrides or [])])
    data = OmegaConf.to_container(cfg, resolve=False)
    for entry in data["serving"]["auth"]["api_keys"]:
        entry["key"] = {"env": "LOOM_API_KEY"}
    data["env"] = {"workspace_dir": ".loom", "ray_address": "", "metrics_export_port": 8090}
    return Recipe.model_validate(data)


def train_booster(data_dir: Path, out: Path, rounds: int, depth: int, seed: int) -> Path:
    """A tiny XGBoost churn model saved as UBJ."""
    import pandas as pd
    import xgboost

    feats = pd.read_parquet(data_dir / "churn" / "features.parquet")
    feats = feats.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    labels = pd.read_parquet(data_dir / "churn" / "labels.parquet")
    frame = feats.merge(labels[["customer_id", "churned"]], on="customer_id")
    dtrain = xgboost.DMatrix(frame[FEATURES].astype("float32"), label=frame["churned"])
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": depth, "seed": seed,
                             "nthread": 1}, dtrain, num_boost_round=rounds)
    booster.save_model(str(out))
    return out


def customer_ids(data_dir: Path) -> list[str]:
    """Customer ids that have features."""
    import pandas as pd

    return sorted(pd.read_parquet(data_dir / "churn" / "features.parquet")["customer_id"].unique())


def deploy_demo_app(data_dir: Path, tmp: Path, port: int, replicas: int = 1,
                    surge_replicas: int = 1, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Serve's churn app on 127.0.0.1:``port`` with version 1 stable and version 2 loaded at 0%.

    As ``serving.deploy`` leaves an app whose candidate waits for its rollout: with
    ``surge_replicas`` extra replicas. Cache off, so every request reaches a model and records a
    sample. ``overrides``: more Hydra overrides of the churn recipe. Ray must be initialised.
    """
    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import runtime, traffic

    recipe = compose_recipe(["++serving.num_cpus_per_replica=0.25", "serving.cache.enabled=false",
                             f"serving.replicas={replicas}",
                             f"serving.surge_replicas={surge_replicas}", *overrides])
    runtime.ensure_serve("127.0.0.1", port)
    host, real_port = runtime.http_address()
    models = {"1": train_booster(data_dir, tmp / "m1.ubj", rounds=5, depth=3, seed=1),
              "2": train_booster(data_dir, tmp / "m2.ubj", rounds=12, depth=4, seed=2)}
    features = {"type": "memory", "path": str(data_dir / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    args = cfg.app_args(recipe, tmp, features=features)
    user_config = {"slots": {"stable": demo_slot(models, "1"), "candidate": demo_slot(models, "2")},
                   "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}
    # Its candidates get faults injected on purpose: replicas honour them only with LOOM_TEST_FAULTS.
    traffic.deploy_app({**cfg.app_config("churn", args, user_config, surge=True),
                        "runtime_env": {"env_vars": {"LOOM_TEST_FAULTS": "1"}}})
    return {"url": f"http://{host}:{real_port}/v1/models/churn/predictions", "models": models,
            "recipe": recipe, "ids": customer_ids(data_dir), "replicas": replicas,
            "surge_replicas": surge_replicas}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_slot(models: dict[str, Path], version: str, **fault: float) -> dict[str, Any]:
    """A user_config slot for a demo model version, with an injected fault if given."""
    return {"version": version, "model_path": str(models[version]),
            "model_uri": f"models:/churn/{version}", **({"fault": fault} if fault else {})}


# ---- benchmark -------------------------------------------------------------------------------------


def _weight_changes(app: dict[str, Any], tmp: Path, rps: float, changes: int) -> dict[str, Any]:
    """p99 of requests sent while a weight change is applied vs in the quiet second after it.

    Every 2 s cycle starts with an action; requests sent in the cycle's first second count as
    "during" it, those of its second second as "steady" (pairing them inside each cycle keeps
    other load on the machine out of the ratio). Cycles alternate between a real in-place
    ``user_config`` change (the controller's update path) and a control: the same control-plane
    calls (read the app config, wait for RUNNING) without a change, which separates the cost of
    the reconfigure itself from the CPU the calls take on a 2-core machine.
    """
    from framework.backends.ray_serve import traffic
    from framework.rollout.engines import ServeTraffic

    setter = ServeTraffic("churn")
    warm_s, cycle_s = 3.0, 2.0
    n = int(rps * (warm_s + 2 * changes * cycle_s + 1))
    proc = spawn_load(app["url"], tmp / "changes.jsonl", rps, n, os.environ["LOOM_API_KEY"])
    time.sleep(warm_s)
    cycles: dict[str, list[float]] = {"change": [], "control": []}
    updates = []
    for k in range(2 * changes):
        t0 = time.time()
        cfg = setter.current()
        if k % 2 == 0:
            cfg["candidate_weight"] = 50 if k % 4 == 0 else 10
            cfg["config_version"] = int(cfg["config_version"]) + 1
            setter.set(cfg, surge=True)  # as the controller does while its rollout runs
            updates.append(time.time() - t0)
            cycles["change"].append(t0)
        else:
            traffic.wait_running("churn")
            cycles["control"].append(t0)
        time.sleep(max(0.0, cycle_s - (time.time() - t0)))
    proc.wait()
    recs = read_records(tmp / "changes.jsonl")
    ok = [r for r in recs if r["status"] == 200]

    def lat(starts: list[float], lo: float, hi: float) -> list[float]:
        return [r["lat_ms"] for r in ok if any(t + lo <= r["t"] < t + hi for t in starts)]

    during, control = lat(cycles["change"], 0, 1), lat(cycles["control"], 0, 1)
    steady = lat(cycles["change"] + cycles["control"], 1, cycle_s)
    return {"requests": len(recs), "failed": len(recs) - len(ok), "changes": changes,
            "replicas": app["replicas"], "surge_replicas": app["surge_replicas"],
            "update_call_s": [round(u, 3) for u in updates],
            "p50_steady_ms": _pct(steady, 50), "p50_during_ms": _pct(during, 50),
            "p99_steady_ms": p99(steady), "p99_during_ms": p99(during),
            "p99_control_ms": p99(control), "n_steady": len(steady), "n_during": len(during),
            "ratio": p99(during) / p99(steady), "control_ratio": p99(control) / p99(steady)}


def _bad_canary(app: dict[str, Any], tmp: Path, rps: float, k: int) -> dict[str, Any]:
    """Seconds from the end of the first failing analysis window to candidate weight 0."""
    import functools

    from framework.backends.ray_serve import traffic
    from framework.rollout import actor
    from framework.rollout.engines import real_ports
    from framework.rollout.fakes import FilePromoter
    from framework.rollout.phases import spec_from_recipe
    from framework.rollout.state import StateStore
    from framework.spec.rollout import Canary

    cfg = traffic.current_user_config("churn")
    traffic.update_user_config("churn", {
        "slots": {"stable": demo_slot(app["models"], "1"),
                  "candidate": demo_slot(app["models"], "2", error_rate=0.3)},
        "candidate_weight": 0, "shadow_percent": 0, "config_version": cfg["config_version"] + 1},
        surge=True)  # as serving.deploy loads a candidate
    ws = tmp / f"ws{k}"
    ports = functools.partial(real_ports, "churn", FilePromoter(str(tmp / f"reg{k}.json"), "1"))
    spec = spec_from_recipe(Canary.model_validate({
        "strategy": "canary", "steps": [50, 100], "interval_s": 2.0, "failure_limit": 1,
        "analysis": {"min_requests": 20, "max_prediction_psi": 50, "max_latency_ratio": 10}}))
    out = tmp / f"bad{k}.jsonl"
    proc = spawn_load(app["url"], out, rps, int(rps * 9), os.environ["LOOM_API_KEY"])
    time.sleep(1.0)
    actor.start(ws, "churn", spec, ports)
    actor.wait(ws, "churn", progress=lambda line: None, timeout_s=60)
    proc.wait()
    audit = StateStore(ws, "churn").read_audit()
    bad = next(r for r in audit if r["event"] == "analysis" and r["verdict"] == "fail")
    zero = next(r for r in audit if r["event"] == "traffic" and r["weight"] == 0)
    recs = read_records(out)
    last_cand = max(r["t"] + r["lat_ms"] / 1000 for r in recs if r.get("version") == "2")
    return {"window_end_to_decision_s": bad["ts"] - bad["window_end"],
            "window_end_to_weight0_live_s": zero["ts"] - bad["window_end"],
            "update_call_s": zero["ts"] - zero["requested_at"],
            "window_end_to_last_candidate_answer_s": last_cand - bad["window_end"],
            "failed_requests": sum(1 for r in recs if r["status"] != 200)}


def run_bench(args: argparse.Namespace) -> None:
    """Start a quiet local Ray, deploy the demo app, run both measurements, print a JSON report."""
    import shutil
    import tempfile

    import ray

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_data

    os.environ.setdefault("LOOM_API_KEY", "bench-key-0123456789")
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-rollout-"))
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON report
        make_data.main(["--out", str(tmp / "data"), "--customers", "1000", "--accounts", "100"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=f"/tmp/loom-bench-ray-{os.getpid()}")
    try:
        from ray import serve

        port = free_port()
        report: dict[str, Any] = {"rps": args.rps, "weight_change": []}
        for replicas in args.replicas:
            for surge in args.surge:
                app = deploy_demo_app(tmp / "data", tmp, port, replicas, surge)
                rounds = [_weight_changes(app, tmp, args.rps, args.changes)
                          for _ in range(args.rounds)]
                report["weight_change"].append({
                    "replicas": replicas, "surge_replicas": surge,
                    "median_ratio": statistics.median(r["ratio"] for r in rounds),
                    "median_control_ratio": statistics.median(r["control_ratio"] for r in rounds),
                    "rounds": rounds})
        report["rollback"] = [] if args.skip_rollback else [
            _bad_canary(app, tmp, args.rps, k) for k in range(args.rounds)]
        report["load_average"] = os.getloadavg()
        print(json.dumps(report, indent=1))
        serve.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(f"/tmp/loom-bench-ray-{os.getpid()}", ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load", help="steady-rate load; one JSON line per request")
    load.add_argument("--url", required=True)
    load.add_argument("--rps", type=float, default=100)
    load.add_argument("--n", type=int, default=1000)
    load.add_argument("--out", required=True)
    load.add_argument("--key", default="")
    load.add_argument("--threads", type=int, default=8)
    load.add_argument("--ids", type=int, default=1000)
    load.add_argument("--stop-file", default=None,
                      help="stop early once this file exists (--n is then the most it sends)")
    bench = sub.add_parser("bench", help="rollback speed and p99 during weight changes")
    bench.add_argument("--rps", type=float, default=100)
    bench.add_argument("--rounds", type=int, default=3,
                       help="rounds of each measurement (weight changes: the median ratio counts)")
    bench.add_argument("--skip-rollback", action="store_true", help="weight changes only")
    bench.add_argument("--changes", type=int, default=12)
    bench.add_argument("--replicas", type=int, nargs="+", default=[1])
    bench.add_argument("--surge", type=int, nargs="+", default=[0, 1],
                       help="serving.surge_replicas values to compare (0 = the old behaviour)")
    args = parser.parse_args(argv)
    if args.cmd == "load":
        _load_main(args)
    else:
        run_bench(args)


if __name__ == "__main__":
    main()
