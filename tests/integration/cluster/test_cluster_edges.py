"""Clear errors at the edge of a cluster Loom does not start (``env.ray_address``), in seconds.

A tokened Ray head runs (the workspace head machinery starts one on loopback); a driver without its
token gets one line naming the variables that carry a token, instead of ``ray.init``'s 20 s of
retries ending in ``ConnectionError: Failed to connect to Ray cluster``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.backends import ray_cluster
from framework.spec.env import Env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]

DRIVER = """
import sys, time
from framework.backends.ray_runtime import connect
from framework.errors import BackendError
from framework.spec.env import Env

class R:
    env = Env(ray_address=sys.argv[1])

t = time.monotonic()
try:
    connect(R(), sys.argv[2])
    print("connected")
except BackendError as exc:
    print(f"{time.monotonic() - t:.1f}", exc)
"""


class _Head:
    env = Env(ray_num_cpus=1, dashboard=False)


def test_a_cluster_that_refuses_the_drivers_token_says_so_in_seconds(tmp_path: Path) -> None:
    busy = [p for p in (ray_cluster.GCS_PORT, ray_cluster.CLIENT_SERVER_PORT,
                        ray_cluster.DASHBOARD_AGENT_PORT) if ray_cluster.port_holder(p) is not None]
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine by something else")
    head = tmp_path / "head"
    try:
        info = ray_cluster.up(_Head(), head)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-this-clusters-token-0123456789")
        out = subprocess.run([sys.executable, "-c", DRIVER, info["address"], str(tmp_path / "ws")],
                             capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        seconds, _, message = out.stdout.strip().partition(" ")
        assert seconds != "connected", out.stdout + out.stderr[-2000:]
        assert float(seconds) < 10, out.stdout
        assert f"The Ray cluster at {info['address']} (env.ray_address) refused this machine's " \
               "token" in message
        assert "RAY_AUTH_TOKEN=<its token>" in message and "not-this-clusters" not in message
        # With the head's own token the same driver connects.
        env["RAY_AUTH_TOKEN"] = (head / "ray" / "auth_token").read_text().strip()
        ok = subprocess.run([sys.executable, "-c", DRIVER, info["address"], str(tmp_path / "ws")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
        assert ok.stdout.strip() == "connected", ok.stdout + ok.stderr[-2000:]
    finally:
        ray_cluster.down(head, remove_temp=True)
