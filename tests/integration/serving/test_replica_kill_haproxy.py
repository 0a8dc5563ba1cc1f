"""``env.ingress: haproxy``: a serving replica killed with SIGKILL under load loses no request on
either route, and the HAProxy ingress listens on loopback only (issue 13).

With Serve's Python proxy (``env.ingress: proxy``, test_replica_kill_chaos.py) the requests in
flight on the killed replica reach the model's own route as 500s. Here the workspace's own head
runs Ray Serve's HAProxy ingress; HAProxy sends a request whose replica closed the connection
without an answer to the other replica. Runs the CLI in subprocesses, as a person does: the
workspace head, not the tests' session Ray.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import serving_helpers as H
from framework.backends import ray_cluster, ray_ingress

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
KEY = "test-key-0123456789"


def _loom(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOM_API_KEY": KEY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def _replica_pids(workspace: Path) -> list[int]:
    out = []
    for proc in H.head_processes(workspace):
        with contextlib.suppress(Exception):
            if "ServeReplica:churn:Predictor" in " ".join(proc.cmdline()):
                out.append(proc.pid)
    return out


def test_a_replica_killed_behind_haproxy_loses_no_request_on_either_route(project: Path):
    busy = [p for p in (*ray_ingress.HAPROXY_PORTS, ray_cluster.GCS_PORT)
            if ray_cluster.port_holder(p) is not None]
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine by something else")
    port, metrics = H.free_port(), H.free_port()
    recipe = ["recipe=churn", "rollout=direct", "env.ingress=haproxy", f"serving.http.port={port}",
              f"env.metrics_export_port={metrics}", "env.dashboard=false", "serving.replicas=2",
              "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
              "serving.cache.enabled=false", "training.model.num_boost_round=10"]
    workspace = project / ".loom"
    try:
        launched = _loom(project, "launch", *recipe)
        assert launched.returncode == 0, launched.stdout + launched.stderr
        assert ray_cluster.recorded_ingress(workspace) == "haproxy"
        names = {who.split(" ")[0] for who in H.head_listeners(workspace).values()}
        assert "haproxy" in names, names                      # HAProxy answers, not Serve's proxy
        pids = _replica_pids(workspace)
        assert len(pids) == 2, pids

        base = f"http://127.0.0.1:{port}"
        gateway = [H.Load(f"{base}/v1/predictions", KEY, every_s=0.0, body=lambda i: {
            "model_id": "churn", "entities": {"customer_id": f"C{i % 900:06d}"}}) for _ in range(3)]
        direct = [H.Load(f"{base}/v1/models/churn/predictions", KEY, every_s=0.0) for _ in range(4)]
        with contextlib.ExitStack() as clients:
            for load in gateway + direct:
                clients.enter_context(load)
            time.sleep(4)
            os.kill(pids[0], signal.SIGKILL)  # a replica of this workspace's head
            killed_at = time.time()
            deadline = time.time() + 60
            while time.time() < deadline and len(_replica_pids(workspace)) < 2:
                time.sleep(0.5)
            replaced_s = time.time() - killed_at
            time.sleep(3)
        direct_sent = [r for load in direct for r in load.records]
        direct_failed = [r for load in direct for r in load.failed()]
        sent = [r for load in gateway for r in load.records]
        failed = [r for load in gateway for r in load.failed()]
        around = [r for r in direct_sent if killed_at - 1 <= r[0] < killed_at + 5]
        assert len(around) > 50, len(around)
        assert direct_failed == [], direct_failed[:3]
        assert failed == [], failed[:3]
        assert all(not r[3]["degraded"] for r in direct_sent + sent)
        assert len(_replica_pids(workspace)) == 2 and replaced_s < 60
        print(f"\nreplica kill -9 behind HAProxy: model route {len(direct_sent)} requests, 0 failed; "
              f"gateway route {len(sent)}, 0 failed; replacement up {replaced_s:.1f} s after")

        exposed = H.beyond_loopback(H.head_listeners(workspace))
        assert exposed == {}, f"listening beyond loopback: {exposed}"
    finally:
        _loom(project, "down")
        ray_cluster.down(workspace, remove_temp=True)
