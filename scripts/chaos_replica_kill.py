"""Kill one of two serving replicas with SIGKILL under steady load and count what clients saw.

    .venv/bin/python scripts/chaos_replica_kill.py --rps 200 --n 3000 --runs 3 [--ingress proxy]

Starts its own Ray (2 CPUs) with Serve's HAProxy ingress (``env.ingress``'s default) or its Python
proxy, deploys the demo churn app with 2 replicas (no surge), sends ``n``
requests at ``rps`` from a second process (``bench/bench_rollout.py load``), kills one replica's
process 5 s in (found by its ``ServeReplica:churn`` process name) and prints, per run, the requests
sent, those that failed and their answers. Behind Serve's Python proxy (2.60) the requests in flight
on the killed replica fail; HAProxy sends them to the other replica (docs/reliability.md). The
suite's test of it: tests/integration/serving/test_replica_kill_haproxy.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts" / "bench"), str(ROOT / "scripts")]


def _run_once(data: Path, tmp: Path, rps: float, n: int) -> dict:
    import psutil
    from ray import serve

    import bench_rollout as B

    info = B.deploy_demo_app(data, tmp, B.free_port(), replicas=2, surge_replicas=0)
    out = tmp / "load.jsonl"
    proc = B.spawn_load(info["url"], out, rps=rps, n=n, key=os.environ["LOOM_API_KEY"])
    try:
        time.sleep(5)
        victims = [p for p in psutil.process_iter(["cmdline"])
                   if "ServeReplica:churn" in " ".join(p.info["cmdline"] or [])]
        os.kill(victims[0].pid, signal.SIGKILL)
        proc.wait(timeout=n / rps + 120)
    finally:
        serve.delete("churn")
    records = B.read_records(out)
    bad = [r for r in records if r["status"] != 200]
    return {"requests": len(records), "failed": len(bad),
            "answers": sorted({f"{r['status']} {r.get('error', '')}" for r in bad})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=200)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy")
    args = parser.parse_args()
    import make_data
    import ray

    os.environ.setdefault("LOOM_API_KEY", "chaos-key-0123456789")
    tmp = Path(tempfile.mkdtemp(prefix="loom-chaos-"))
    make_data.main(["--out", str(tmp / "data"), "--customers", "1000", "--accounts", "1000"])
    from framework.backends.ray_ingress import head_env, socket_dir

    os.environ.update(head_env(args.ingress, tmp / "ray"))   # read by the Ray this starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp / "ray"))
    try:
        for run in range(args.runs):
            (tmp / f"run{run}").mkdir()
            print(json.dumps({"run": run + 1, "rps": args.rps, "ingress": args.ingress,
                              **_run_once(tmp / "data", tmp / f"run{run}", args.rps, args.n)}))
    finally:
        ray.shutdown()
        shutil.rmtree(socket_dir(tmp / "ray"), ignore_errors=True)   # HAProxy's sockets


if __name__ == "__main__":
    main()
