"""ray_for starts the workspace's head (files in the workspace) when none runs, and disconnects only
what it connected; the head outlives the block until `loom down`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = """
import sys
from pathlib import Path
import ray
from framework.backends.ray_runtime import ray_for
from framework.spec.env import Env

class R:  # only env is read
    env = Env(ray_num_cpus=1)

ws = Path(sys.argv[1])
lines = []
with ray_for(R(), ws, lines.append):
    assert ray.is_initialized()
    assert ray.cluster_resources()["CPU"] == 1
    assert any(p.name.startswith("session_") for p in (ws / "ray" / "tmp").iterdir())
    with ray_for(R(), ws):  # nested: reuses, does not shut down
        pass
    assert ray.is_initialized()
assert not ray.is_initialized()
assert len(lines) == 1 and lines[0].startswith("ray: started the workspace head at 127.0.0.1:"), lines
print("ok")
"""


def test_embedded_ray_lives_in_the_workspace_and_is_shut_down(tmp_path: Path) -> None:
    from framework.backends import ray_cluster
    from framework.spec.env import Env

    busy = [p for p in (ray_cluster.GCS_PORT, ray_cluster.CLIENT_SERVER_PORT,
                        ray_cluster.DASHBOARD_AGENT_PORT, Env().metrics_export_port)
            if ray_cluster.port_holder(p) is not None]
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine by something else")
    workspace = Path("/tmp") / f"lrt-{tmp_path.name[-12:]}"
    try:
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(workspace)], capture_output=True,
                             text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().endswith("ok")
        assert ray_cluster.status(workspace)["running"]   # the head outlives the command
    finally:
        ray_cluster.down(workspace, remove_temp=True)
        shutil.rmtree(workspace, ignore_errors=True)
