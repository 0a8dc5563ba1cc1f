"""After the workspace's Ray head stops (``loom down``, a crash, a reboot), ``loom plan`` sees that
nothing serves and ``loom launch`` serves the recipe's version again, without retraining (issue 13).

Before: the plan trusted the state file and answered ``No changes.`` with nothing served.
Runs the CLI in subprocesses, as a person does: the workspace head, not the tests' session Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from framework.backends import ray_cluster, ray_ingress

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"


def _loom(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOOM_API_KEY": KEY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def test_a_stopped_head_is_seen_by_plan_and_launch_serves_again(project):
    port, metrics = H.free_port(), H.free_port()
    recipe = ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
              f"env.metrics_export_port={metrics}", "serving.num_cpus_per_replica=0.2",
              "serving.surge_replicas=0", "training.model.num_boost_round=10"]
    try:
        first = _loom(project, "launch", *recipe)
        assert first.returncode == 0, first.stdout + first.stderr
        # Serving included, the head listens on loopback only: Serve's replicas bind their
        # gRPC server to the node IP (framework/serving/listen.py), not to every interface.
        listeners = H.head_listeners(project / ".loom")
        assert any("ServeReplica" in who for who in listeners.values()), listeners
        assert H.beyond_loopback(listeners) == {}
        assert "No changes." in _loom(project, "plan", *recipe).stdout

        sockets = ray_ingress.socket_dir(Path(ray_cluster.status(project / ".loom")["temp_dir"]))
        assert sockets.is_dir()                   # HAProxy's (env.ingress: haproxy, the default)
        assert _loom(project, "down").returncode == 0
        assert not sockets.exists()               # gone with the head; its logs stay
        lost = _loom(project, "plan", *recipe)
        assert "the workspace's Ray head is not running" in lost.stdout, lost.stdout + lost.stderr
        assert "~ serving.deploy" in lost.stdout and "training.train" not in _changed(lost.stdout)

        again = _loom(project, "launch", *recipe)
        assert again.returncode == 0, again.stdout + again.stderr
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/churn/predictions",
            data=json.dumps({"entities": {"customer_id": "C000042"}}).encode(),
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["model_version"] == "1", body  # the same version: nothing was retrained
        assert "No changes." in _loom(project, "plan", *recipe).stdout
    finally:
        _loom(project, "down")


def _changed(plan_text: str) -> str:
    """The plan's change lines (``+``, ``~``, ``-``)."""
    return "\n".join(line for line in plan_text.splitlines() if line.lstrip()[:1] in "+~-")
