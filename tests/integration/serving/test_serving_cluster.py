"""``loom up`` / ``status`` / ``down``: a real background Ray head on 127.0.0.1 with token auth."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import serving_helpers as H

from framework.backends import ray_cluster
from framework.errors import BackendError

pytestmark = pytest.mark.integration


def test_a_taken_port_is_an_error_naming_port_and_process(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        recipe = H.compose_recipe(overrides=[f"++env.metrics_export_port={port}"])
        with pytest.raises(BackendError) as err:
            ray_cluster.up(recipe, tmp_path / "ws")
    message = str(err.value)
    assert f"port {port} (env.metrics_export_port)" in message and f"pid {os.getpid()}" in message


def test_up_status_down_on_localhost_with_a_private_token(tmp_path):
    recipe = H.compose_recipe(overrides=["++env.ray_num_cpus=1"])
    busy = [p for p in (ray_cluster.GCS_PORT, ray_cluster.CLIENT_SERVER_PORT,
                        ray_cluster.DASHBOARD_AGENT_PORT, recipe.env.metrics_export_port)
            if ray_cluster.port_holder(p) is not None]
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine by something else")
    workspace = tmp_path / "ws"
    try:
        info = ray_cluster.up(recipe, workspace)
        assert info["running"] and info["address"] == f"127.0.0.1:{ray_cluster.GCS_PORT}"
        assert (workspace / "ray" / "address").read_text().strip() == info["address"]
        mode = stat.S_IMODE(os.stat(info["token_file"]).st_mode)
        assert mode == 0o600
        assert ray_cluster.up(recipe, workspace)["pids"] == info["pids"]   # idempotent
        code = ("import ray; ray.init(address='%s', log_to_driver=False); "
                "print(int(ray.cluster_resources()['CPU']))" % info["address"])
        env = {**os.environ, **ray_cluster.client_env(workspace)}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip().splitlines()[-1] == "1", out.stderr[-2000:]
        _wait_metrics(info["metrics_url"])
    finally:
        after = ray_cluster.down(workspace, remove_temp=True)
    assert not after["running"] and after["pids"] == []
    assert not Path(after["temp_dir"]).exists()


def _wait_metrics(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.status == 200
                return
        except OSError:
            assert time.monotonic() < deadline, f"no metrics at {url}"
            time.sleep(0.5)
