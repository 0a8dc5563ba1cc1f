"""The workspace head and everything it starts listen on loopback only, and `loom train` without a
running head uses that tokened head instead of a private ``ray.init()`` (issue 13).

Before: ``ray_for`` started a local Ray whose GCS, raylet, workers and agents listened on ``*`` and
the machine's external address, and whose token was the shared ``~/.ray/auth_token``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from framework.backends import ray_cluster
from framework.spec.env import Env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = ("127.", "::1:")

DRIVER = """
import json, os, socket, sys, time
from pathlib import Path
import psutil, ray
from framework.backends import ray_cluster
from framework.backends.ray_runtime import ray_for
from framework.spec.env import Env

class R:  # only env is read
    env = Env(ray_num_cpus=1, metrics_export_port=int(sys.argv[2]))

ws, lines = Path(sys.argv[1]), []

@ray.remote(num_cpus=0.1)
class Pinger:
    def ping(self):
        return socket.gethostname()

def listeners(pids):
    found = {}
    for pid in pids:
        try:
            procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                conns = proc.net_connections(kind="inet")
                name = proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN:
                    ip = c.laddr.ip.removeprefix("::ffff:")   # an IPv4-mapped IPv6 listener
                    found[f"{ip}:{c.laddr.port}"] = f"{name} ({proc.pid})"
    return found

with ray_for(R(), ws, lines.append):
    pinger = Pinger.remote()
    ray.get(ray.remote(num_cpus=0.1)(lambda: 1).remote(), timeout=60)   # a task worker too
    ray.get(pinger.ping.remote(), timeout=60)
    deadline = time.monotonic() + 60   # the agents (metrics exporter) come up a little later
    while time.monotonic() < deadline:
        found = listeners(ray_cluster.status(ws)["pids"] + [os.getpid()])
        if any(a.endswith(f":{sys.argv[2]}") for a in found):
            break
        time.sleep(0.5)
    print(json.dumps({"lines": lines, "listeners": found}))
"""


def test_head_started_for_training_listens_on_loopback_only(tmp_path: Path) -> None:
    env = Env()
    ports = (ray_cluster.GCS_PORT, ray_cluster.CLIENT_SERVER_PORT, ray_cluster.DASHBOARD_AGENT_PORT,
             env.metrics_export_port)
    busy = [p for p in ports if ray_cluster.port_holder(p) is not None]
    if busy:
        pytest.skip(f"ports {busy} are in use on this machine by something else")
    workspace = tmp_path / "ws"   # long path: Ray's temp dir is the short /tmp one
    try:
        out = subprocess.run([sys.executable, "-c", DRIVER, str(workspace), str(env.metrics_export_port)],
                             capture_output=True, text=True, timeout=240, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        [line] = report["lines"]
        assert line.startswith("ray: started the workspace head at 127.0.0.1:26379 (1 CPUs, token auth")
        found = report["listeners"]
        assert f"127.0.0.1:{env.metrics_export_port}" in found, found
        assert f"127.0.0.1:{ray_cluster.GCS_PORT}" in found, found
        exposed = {addr: who for addr, who in found.items() if not addr.startswith(LOOPBACK)}
        assert exposed == {}, f"listening beyond loopback: {exposed}"
        info = ray_cluster.status(workspace)          # the head outlives the command
        assert info["running"]
        tmp = Path(info["temp_dir"])
        assert str(tmp).startswith("/tmp/loom-ray-")
        st = os.lstat(tmp.parent)    # Ray makes its own dir 0777; the parent keeps it private
        assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
    finally:
        after = ray_cluster.down(workspace, remove_temp=True)
    assert not after["running"] and after["pids"] == []
    assert not Path(after["temp_dir"]).parent.exists()
