"""Loom's stream consumers vs a hand-written XREADGROUP loop on the same Redis: events/s, p50/p99.

    python scripts/bench/bench_stream.py [--events 20000] [--rounds 3] [--latency-s 8]
                                         [--rate-fraction 0.5] [--read-count 100]

Builds a throw-away project (the repository's recipes and conf, ``make_data`` sample data), starts
a local Ray (2 CPUs, no dashboard) and a private ``redis-server`` on 127.0.0.1, trains and serves
churn (``api.plan`` + ``api.apply``, ``rollout=direct``, 10 boosting rounds, cache off), then
measures two sides on that Redis, with 1 and then 2 consumers each:

- loom: ``loom stream up recipe=churn`` (``framework.api.stream``): consumer actors (0.1 CPU
  each, ``read_count`` 100) read ``loom:churn:events`` in group ``loom-churn``, check each event,
  look features up in Feast, predict with the served version's slot (breakers, fallback chain,
  labels, traffic split) and write one result per event id with the idempotent Lua sink
  (``SET NX`` + ``XADD`` + ``XACK``) to ``loom:churn:predictions``; metrics on.
- hand-written: what a careful engineer writes: ``XREADGROUP`` (COUNT = the same ``read_count``)
  -> one ``get_online_features`` for the batch's customers (the same feature repo and feature
  service the served app reads, opened once) -> ``inplace_predict`` of the same registered UBJ
  file -> ``XADD`` per result + one ``XACK``, pipelined in one round trip. Each consumer is an OS
  process (this script's ``consume`` command) with its own group and streams
  (``bench:baseline:*``). Ray's ``num_cpus`` caps no actor's CPU, so both sides' consumers
  compete for the same two cores alike. No dedupe, no dead letters, no event checks.

For 1 and then 2 consumers, both sides' consumers start and answer 500 warm-up events; then
``--rounds`` throughput runs and ``--rounds`` latency runs per side, alternating which side goes
first, while the other side's consumers sit idle (their CPU is measured and printed):

(a) throughput: ``--events`` events (customer ids drawn from the sample data) written to the
    source in pipelined chunks as fast as the driver can; events/s = events / (the last result's
    sink entry time - the first write).
(b) latency: events offered at a fixed rate, ``--rate-fraction`` of the slower side's
    1-consumer throughput (the same rate for every case), for ``--latency-s`` seconds; each
    event's ``event_time`` is its scheduled send time, so a slow producer counts as latency.
    Latency = the result's sink entry time (Redis's clock, ms) - event time, the same for both.

Both sides score the same customers in the same order; the run checks their probabilities agree
and that every event got a result. Also printed: the CPU the consumers and Redis spent per event
in the throughput runs (``/proc/<pid>/stat``, Redis ``INFO cpu``). The served app idles throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from bench_rollout import _pct, customer_ids, free_port  # noqa: E402

WARMUP = 500
BASELINE = {"source": "bench:baseline:events", "group": "bench-baseline",
            "sink": "bench:baseline:predictions"}


# ---- the hand-written consumer (one OS process each) -----------------------------------------


def consume(a: argparse.Namespace) -> None:
    """XREADGROUP -> one Feast lookup per batch -> inplace_predict -> pipelined XADDs + XACK."""
    import numpy as np
    import redis
    import xgboost
    from feast import FeatureStore

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    features = a.features.split(",")
    store = FeatureStore(repo_path=a.repo_dir)
    service = store.get_feature_service(a.service)
    booster = xgboost.Booster(model_file=a.model_path)
    booster.set_param({"nthread": 1})
    r = redis.Redis.from_url(a.url)
    store.get_online_features(features=service, entity_rows=[{"customer_id": "warm"}])
    print("ready", flush=True)
    while not stop:
        got = r.xreadgroup(a.group, a.name, {a.source: ">"}, count=a.read_count, block=200)
        if not got:
            continue
        entries = got[0][1]
        rows = [{"customer_id": f[b"customer_id"].decode()} for _, f in entries]
        cols = store.get_online_features(features=service, entity_rows=rows).to_dict()
        x = np.column_stack([np.asarray(cols[n], dtype=np.float32) for n in features])
        probs = booster.inplace_predict(x)
        now_ms = time.time() * 1000
        pipe = r.pipeline(transaction=False)
        for (_, f), p in zip(entries, probs):
            t = float(f[b"event_time"]) if b"event_time" in f else now_ms
            pipe.xadd(a.sink, {"event_id": f[b"event_id"], "probability": float(p),
                               "model_version": a.version, "latency_ms": round(now_ms - t, 3)})
        pipe.xack(a.source, a.group, *[e for e, _ in entries])
        pipe.execute()


class HandWritten:
    """The baseline's consumer processes."""

    name = "hand-written"
    source, sink = BASELINE["source"], BASELINE["sink"]

    def __init__(self, url: str, app: dict[str, Any], read_count: int, workdir: Path) -> None:
        feats = app["args"]["features"]
        stable = app["deployments"][0]["user_config"]["slots"]["stable"]
        self.cmd = [sys.executable, __file__, "consume", "--url", url, "--read-count", str(read_count),
                    "--repo-dir", feats["repo_dir"], "--service", feats["feature_service"],
                    "--model-path", stable["model_path"], "--version", str(stable["version"]),
                    "--features", ",".join(app["args"]["feature_names"]),
                    *[x for k, v in BASELINE.items() for x in (f"--{k}", v)]]
        self.workdir, self.procs = workdir, []

    def up(self, client: Any, consumers: int) -> None:
        with contextlib.suppress(Exception):  # BUSYGROUP: it exists
            client.xgroup_create(self.source, BASELINE["group"], id="$", mkstream=True)
        for i in range(len(self.procs), consumers):
            log = open(self.workdir / f"baseline-c{i}.log", "w")  # noqa: SIM115 - lives with the process
            proc = subprocess.Popen([*self.cmd, "--name", f"c{i}"], stdout=subprocess.PIPE,
                                    stderr=log, text=True)
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"hand-written consumer c{i} did not start: see {log.name}")
            self.procs.append(proc)

    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def down(self) -> None:
        for proc in self.procs:  # our own children, by PID
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


class Loom:
    """``loom stream up|down recipe=churn``."""

    name = "loom"
    source, sink = "loom:churn:events", "loom:churn:predictions"

    def __init__(self, args: list[str]) -> None:
        self.args = args

    def up(self, client: Any, consumers: int) -> None:
        from framework import api

        got = api.stream("up", [*self.args, f"streaming.consumers={consumers}"])
        if not all(c["ready"] for c in got["consumers"]) or len(got["consumers"]) != consumers:
            raise RuntimeError(f"loom stream up: {got['consumers']}")
        self.consumers = consumers

    def pids(self) -> list[int]:
        import ray

        from framework.streaming import control

        return [ray.get(ray.get_actor(control.actor_name("churn", i), namespace=control.NAMESPACE)
                        .pid.remote()) for i in range(self.consumers)]

    def down(self) -> None:
        from framework import api

        api.stream("down", [*self.args, "streaming.consumers=1"])


# ---- producing events and reading results ---------------------------------------------------


def _fields(event_id: str, customer: str, t_ms: float) -> dict[str, str]:
    return {"event_id": event_id, "customer_id": customer, "event_time": f"{t_ms:.3f}"}


def preload(client: Any, source: str, ids: list[str], customers: list[str]) -> float:
    """Write every event as fast as pipelines go; the wall time (ms) of the first write."""
    t0 = time.time() * 1000
    pipe = client.pipeline(transaction=False)
    for event_id, customer in zip(ids, customers):
        pipe.xadd(source, _fields(event_id, customer, time.time() * 1000))
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    return t0


def paced(client: Any, source: str, ids: list[str], customers: list[str], rate: float) -> dict[str, float]:
    """Send event i at t0 + i / rate (in 5 ms ticks), with that scheduled time as its event time;
    the event time (ms) of each id."""
    t0, i, sent = time.time() * 1000, 0, {}
    while i < len(ids):
        now = time.time() * 1000
        pipe = client.pipeline(transaction=False)
        while i < len(ids) and t0 + i * 1000 / rate <= now:
            sent[ids[i]] = t0 + i * 1000 / rate
            pipe.xadd(source, _fields(ids[i], customers[i], sent[ids[i]]))
            i += 1
        pipe.execute()
        time.sleep(0.005)
    return sent


def mark(client: Any, stream: str) -> tuple[str, int]:
    """Where a stream ends now: its last entry id and its length."""
    got = client.xrevrange(stream, count=1)
    return (got[0][0].decode() if got else "0-0"), client.xlen(stream)


def collect(client: Any, sink: str, since: tuple[str, int], n: int,
            timeout_s: float) -> list[tuple[float, dict]]:
    """The sink's entries after ``since`` once ``n`` are there (or at the timeout):
    (entry time in ms, fields as text)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and client.xlen(sink) - since[1] < n:
        time.sleep(0.05)
    return [(float(entry.decode().split("-")[0]), {k.decode(): v.decode() for k, v in fields.items()})
            for entry, fields in client.xrange(sink, f"({since[0]}", "+")]


def warm_up(client: Any, side: Any, tag: str, draw: list[str]) -> None:
    rng = random.Random(tag)
    since = mark(client, side.sink)
    preload(client, side.source, [f"{tag}-w{i}" for i in range(WARMUP)],
            [rng.choice(draw) for _ in range(WARMUP)])
    collect(client, side.sink, since, WARMUP, 120)


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def redis_cpu_s(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def throughput(client: Any, side: Any, tag: str, events: int, draw: list[str]) -> dict[str, Any]:
    """``events`` written as fast as pipelines go; events/s until the last result is in, and the
    CPU the consumers and Redis spent per event."""
    rng = random.Random(events)  # the same customers, in the same order, on both sides
    since, pids = mark(client, side.sink), side.pids()
    cpu0, redis0 = cpu_s(pids), redis_cpu_s(client)
    t0 = preload(client, side.source, [f"{tag}-t{i}" for i in range(events)],
                 [rng.choice(draw) for _ in range(events)])
    got = collect(client, side.sink, since, events, max(120, events / 100))
    cpu, redis = cpu_s(pids) - cpu0, redis_cpu_s(client) - redis0  # Redis's includes the preload
    return {"events": len(got), "expected": events,
            "events_per_s": len(got) / ((max(t for t, _ in got) - t0) / 1000) if got else 0.0,
            "consumer_cpu_us": cpu / events * 1e6, "redis_cpu_us": redis / events * 1e6,
            "degraded": sum(f.get("degraded") == "true" for _, f in got),
            "answers": {f["event_id"].split("-t", 1)[1]: f for _, f in got[:2000]}}


def latency(client: Any, side: Any, tag: str, rate: float, seconds: float,
            draw: list[str]) -> dict[str, Any]:
    """Events offered at ``rate`` for ``seconds``: sink entry time - event time of each."""
    rng = random.Random(seconds)
    n = int(rate * seconds)
    ids = [f"{tag}-l{i}" for i in range(n)]
    since = mark(client, side.sink)
    sent = paced(client, side.source, ids, [rng.choice(draw) for _ in range(n)], rate)
    got = collect(client, side.sink, since, n, 60)
    return {"events": len(got), "expected": n, "lat": [t - sent[f["event_id"]] for t, f in got],
            "own": [float(f["latency_ms"]) for _, f in got],
            "degraded": sum(f.get("degraded") == "true" for _, f in got)}


# ---- setup, the run, the table --------------------------------------------------------------


def make_project(root: Path, customers: int) -> None:
    """A project like the repository's (recipes/, conf/, sample data/) as the working directory."""
    import make_data

    shutil.copytree(ROOT / "recipes", root / "recipes")
    shutil.copytree(ROOT / "conf", root / "conf")
    make_data.main(["--out", str(root / "data"), "--customers", str(customers), "--accounts", "100"])
    os.environ.pop("LOOM_TEMPLATE_PATH", None)
    os.chdir(root)


@contextlib.contextmanager
def redis_server(data_dir: Path):
    """A private redis-server on 127.0.0.1 with its data in ``data_dir``; yields 'host:port'."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise SystemExit("redis-server not found: apt-get install -y redis-server")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
                             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()  # stopped by its own PID
        proc.wait(timeout=10)


def recipe_args(redis: str, read_count: int) -> list[str]:
    return ["recipe=churn", "rollout=direct", f"serving.http.port={free_port()}",
            "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
            "serving.cache.enabled=false", "training.model.num_boost_round=10",
            f"streaming.bus.url=redis://{redis}/0", f"streaming.read_count={read_count}"]


def measure(client: Any, sides: list[Any], args: argparse.Namespace, draw: list[str]) -> dict:
    """Per consumer count: both sides' consumers up and warm; throughput rounds, then latency
    rounds at one rate (``--rate-fraction`` of the slower side's median 1-consumer throughput, so
    below both sides' capacity). Rounds alternate which side goes first; the other side's
    consumers sit idle meanwhile (their CPU is measured)."""
    runs: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    rate = 0.0
    for consumers in (1, 2):
        try:
            for side in sides:
                side.up(client, consumers)
                warm_up(client, side, f"{side.name[:4]}{consumers}", draw)
            for phase in ("throughput", "latency"):
                for rnd in range(args.rounds):
                    for side in sides if rnd % 2 == 0 else sides[::-1]:
                        tag = f"{side.name[:4]}{consumers}{phase[0]}{rnd}"
                        idle = [p for s in sides if s is not side for p in s.pids()]
                        cpu0, t0 = cpu_s(idle), time.monotonic()
                        r = (throughput(client, side, tag, args.events, draw) if phase == "throughput"
                             else latency(client, side, tag, rate, args.latency_s, draw))
                        r["idle_cpu_pct"] = 100 * (cpu_s(idle) - cpu0) / (time.monotonic() - t0)
                        runs.setdefault((side.name, consumers), {}).setdefault(phase, []).append(r)
                        print(f"  {phase} {side.name} x{consumers} round {rnd + 1}: "
                              + (f"{r['events_per_s']:,.0f} events/s" if phase == "throughput" else
                                 f"p50 {_pct(r['lat'], 50):.1f} / p99 {_pct(r['lat'], 99):.1f} ms at "
                                 f"{rate:,.0f}/s"), flush=True)
                if consumers == 1 and phase == "throughput":
                    rate = args.rate_fraction * min(
                        statistics.median(r["events_per_s"] for r in runs[(s.name, 1)]["throughput"])
                        for s in sides)
        finally:
            for side in sides:
                side.down()
    return {key: summarize(v, rate) for key, v in runs.items()}


def summarize(v: dict[str, list[dict[str, Any]]], rate: float) -> dict[str, Any]:
    """Medians of the throughput rounds; percentiles of every latency round's events together."""
    t, lat = v["throughput"], v["latency"]
    pooled = [x for r in lat for x in r["lat"]]
    own = [x for r in lat for x in r["own"]]
    return {"events_per_s": statistics.median(r["events_per_s"] for r in t),
            "rounds_events_per_s": [round(r["events_per_s"]) for r in t],
            "consumer_cpu_us": statistics.median(r["consumer_cpu_us"] for r in t),
            "redis_cpu_us": statistics.median(r["redis_cpu_us"] for r in t),
            "rate": rate, "p50_ms": _pct(pooled, 50), "p99_ms": _pct(pooled, 99),
            "own_p50_ms": _pct(own, 50), "own_p99_ms": _pct(own, 99),
            "missing": sum(r["expected"] - r["events"] for r in t + lat),
            "idle_cpu_pct": statistics.median(r["idle_cpu_pct"] for r in t + lat),
            "degraded": sum(r["degraded"] for r in t + lat), "answers": t[0]["answers"]}


def report(results: dict) -> str:
    lines = ["| consumers | side | events/s | p50 ms | p99 ms | CPU us/event: consumers + Redis "
             "| events/s ratio | p50 ratio | p99 ratio |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for consumers in (1, 2):
        base = results[("hand-written", consumers)]
        for side in ("hand-written", "loom"):
            r = results[(side, consumers)]
            lines.append(f"| {consumers} | {side} | {r['events_per_s']:,.0f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['consumer_cpu_us']:.0f} + {r['redis_cpu_us']:.0f} | "
                         f"{r['events_per_s'] / base['events_per_s']:.2f} | "
                         f"{r['p50_ms'] / base['p50_ms']:.2f} | {r['p99_ms'] / base['p99_ms']:.2f} |")
    return "\n".join(lines)


def check(results: dict) -> list[str]:
    """Every event answered once on each side, none degraded, and both sides' probabilities agree."""
    notes = [f"{side} x{consumers}: {r['missing']} events unanswered, {r['degraded']} degraded"
             for (side, consumers), r in results.items() if r["missing"] or r["degraded"]]
    for consumers in (1, 2):
        a, b = results[("hand-written", consumers)]["answers"], results[("loom", consumers)]["answers"]
        common = sorted(set(a) & set(b))
        differ = [k for k in common if abs(float(a[k]["probability"]) - float(b[k]["probability"])) > 1e-6]
        notes.append(f"x{consumers}: {len(common)} events scored by both sides, {len(differ)} "
                     "probabilities differ" + (f", e.g. {a[differ[0]]} vs {b[differ[0]]}" if differ else ""))
    return notes


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("consume", help="one hand-written consumer (the benchmark starts these)")
    for name in ("url", "source", "group", "sink", "name", "repo-dir", "service", "model-path",
                 "version", "features"):
        c.add_argument(f"--{name}", required=True)
    c.add_argument("--read-count", type=int, default=100)
    p.add_argument("--events", type=int, default=20_000, help="events per throughput case")
    p.add_argument("--latency-s", type=float, default=8.0, help="seconds of paced events per case")
    p.add_argument("--rate-fraction", type=float, default=0.5,
                   help="offered rate as a fraction of the slower side's 1-consumer throughput")
    p.add_argument("--read-count", type=int, default=100, help="streaming.read_count and XREADGROUP COUNT")
    p.add_argument("--rounds", type=int, default=3, help="runs per side and case (sides alternate)")
    p.add_argument("--customers", type=int, default=1000)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.command == "consume":
        return consume(args)
    for k, v in {"LOOM_API_KEY": "bench-key-0123456789", "MLFLOW_DISABLE_TELEMETRY": "true",
                 "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
                 "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}.items():
        os.environ.setdefault(k, v)
    import ray
    import redis as redis_py
    from ray import serve

    from framework import api
    from framework.backends.ray_serve import traffic

    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-stream-"))
    (workdir / "redis").mkdir()
    make_project(workdir / "project", args.customers)
    draw = customer_ids(workdir / "project" / "data")
    with redis_server(workdir / "redis") as address:
        client = redis_py.Redis.from_url(f"redis://{address}/0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(workdir / "ray"),
                 runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}})
        loom = Loom(recipe_args(address, args.read_count))
        try:
            t0 = time.monotonic()
            api.apply(api.plan(loom.args))
            print(f"churn trained and served in {time.monotonic() - t0:.0f} s", flush=True)
            hand = HandWritten(f"redis://{address}/0", traffic.app_configs()["churn"], args.read_count,
                               workdir)
            results = measure(client, [hand, loom], args, draw)
        finally:
            with contextlib.suppress(Exception):
                loom.down()
            with contextlib.suppress(Exception):
                traffic.delete_app("churn")
            serve.shutdown()
            ray.shutdown()
            client.close()
    rate = results[("loom", 1)]["rate"]
    print(f"\n{args.events:,} events per throughput run, {args.rounds} rounds (median); latency at "
          f"{rate:,.0f} events/s ({args.rate_fraction:g} x the slower side's 1-consumer throughput), "
          f"{args.latency_s:g} s per round, every round's events together; read_count "
          f"{args.read_count}; {os.cpu_count()} CPUs, load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(report(results))
    for (side, consumers), r in results.items():
        print(f"{side} x{consumers}: events/s per round {r['rounds_events_per_s']}; latency_ms the "
              f"consumers wrote (before their write) p50 {r['own_p50_ms']:.1f} / p99 {r['own_p99_ms']:.1f}; "
              f"the other side's idle consumers meanwhile {r['idle_cpu_pct']:.1f}% of a CPU")
    for note in check(results):
        print(note)
    if args.json:
        args.json.write_text(json.dumps({f"{s}@{c}": {k: v for k, v in r.items() if k != "answers"}
                                         for (s, c), r in results.items()}, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
