"""A serving replica killed with SIGKILL under steady load, real engines (issue 13's chaos suite).

churn launched with two replicas; two clients send steady traffic, one through the gateway route
(``POST /v1/predictions`` with ``model_id``), one straight to the model's route; one replica's
process is killed with ``kill -9``. The gateway sends a prediction whose replica died to another
replica (a prediction is idempotent), so no client of that route sees the kill. The model's own
route has no hop of Loom's in front of the replica: Serve's proxy answers the requests that were on
the dead replica with a plain-text 500 and does not retry them (Ray 2.60); that count is printed,
not asserted (docs/reliability.md). This runs on the tests' session Ray, which has Serve's Python
proxy (``env.ingress: proxy``); behind HAProxy, the default, neither route loses a request
(test_replica_kill_haproxy.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

import serving_helpers as H

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
KEY = "test-key-0123456789"


def _replica_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "ServeReplica:churn:Predictor" in " ".join(p.info["cmdline"] or [])]


def test_a_replica_killed_mid_load_loses_no_gateway_request(ray_session, project: Path, monkeypatch):
    from framework import api
    from framework.backends.ray_serve import traffic

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    args = ["recipe=churn", "rollout=direct", f"serving.http.port={port}", "serving.replicas=2",
            "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
            "serving.cache.enabled=false", "training.model.num_boost_round=10"]
    planned = api.plan(args)
    api.apply(planned)
    deploy = planned.ctx.outputs["serving.deploy"]
    try:
        pids = _replica_pids()
        assert len(pids) == 2, pids
        # Clients back to back, several at once on each route: requests are in flight on the
        # victim when it dies.
        gateway = [H.Load(deploy["gateway_url"], KEY, every_s=0.0, body=lambda i: {
            "model_id": "churn", "entities": {"customer_id": f"C{i % 900:06d}"}}) for _ in range(6)]
        direct = [H.Load(deploy["url"], KEY, every_s=0.0) for _ in range(3)]
        with contextlib.ExitStack() as clients:
            for load in gateway + direct:
                clients.enter_context(load)
            time.sleep(4)
            os.kill(pids[0], signal.SIGKILL)  # a replica of the app this test launched
            killed_at = time.time()
            deadline = time.time() + 60
            while time.time() < deadline and len(_replica_pids()) < 2:
                time.sleep(0.5)  # Serve starts a replacement
            replaced_s = time.time() - killed_at
            time.sleep(3)
        sent = [r for load in gateway for r in load.records]
        failed = [r for load in gateway for r in load.failed()]
        direct_sent = [r for load in direct for r in load.records]
        direct_failed = [r for load in direct for r in load.failed()]
        assert len([r for r in sent if killed_at - 1 <= r[0] < killed_at + 5]) > 50
        assert failed == [], failed[:3]
        assert all(not r[3]["degraded"] for r in sent)
        assert len(_replica_pids()) == 2 and replaced_s < 60
        print(f"\nreplica kill -9: gateway route {len(sent)} requests, 0 failed; model route "
              f"{len(direct_sent)} requests, {len(direct_failed)} failed "
              f"({sorted({r[1] for r in direct_failed})}); replacement replica up "
              f"{replaced_s:.1f} s after the kill")
    finally:
        traffic.delete_app(planned.ctx.recipe.app_name)
        traffic.drop_gateway_if_unused("/")
