"""The tools users already run work against the embedded head (issue 16): after `loom launch`, the
`serve` CLI with the environment `loom env` prints sees the recipe's app RUNNING, and the head's
dashboard/REST API answers only with the workspace's token, on 127.0.0.1 only.

Before: the head started with `--include-dashboard=false`, so `serve status` failed with
`Version check returned 404. Serve CLI is not supported on the Ray cluster`.
Runs the real CLIs in subprocesses, as a person does: the workspace head, not the tests' session Ray.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
BIN = Path(sys.executable).parent


def _clean_env() -> dict[str, str]:
    """This process's environment without any Ray address or auth setting of its own."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_DASHBOARD", "RAY_API_SERVER"))}


def _loom(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**_clean_env(), "LOOM_API_KEY": KEY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-m", "framework", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)


def _exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines as a shell would read them."""
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            [pair] = shlex.split(line.removeprefix("export "))
            name, _, value = pair.partition("=")
            found[name] = value
    return found


def _status(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _listen_ips(port: int, pids: list[int]) -> set[str]:
    ips = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ips |= {c.laddr.ip.removeprefix("::ffff:") for c in conns
                if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return ips


def test_serve_cli_sees_the_launched_app_with_loom_env_and_the_api_needs_the_token(project):
    port, metrics, dashboard = H.free_port(), H.free_port(), H.free_port()
    recipe = ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
              f"env.metrics_export_port={metrics}", f"env.dashboard_port={dashboard}",
              "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
              "training.model.num_boost_round=10"]
    try:
        launched = _loom(project, "launch", *recipe)
        assert launched.returncode == 0, launched.stdout + launched.stderr

        printed = _loom(project, "env", *recipe)
        assert printed.returncode == 0 and "#" not in printed.stdout, printed.stdout + printed.stderr
        exports = _exports(printed.stdout)
        base = f"http://127.0.0.1:{dashboard}"
        assert exports["RAY_DASHBOARD_ADDRESS"] == base and exports["RAY_AUTH_MODE"] == "token"
        assert "RAY_AUTH_TOKEN" not in exports  # the file's path, never the token itself

        serve = subprocess.run([str(BIN / "serve"), "status"], env={**_clean_env(), **exports},
                               capture_output=True, text=True, timeout=120)
        assert serve.returncode == 0, serve.stdout + serve.stderr
        apps = yaml.safe_load(serve.stdout)["applications"]
        assert apps["churn"]["status"] == "RUNNING", serve.stdout

        without = {k: v for k, v in exports.items() if k != "RAY_AUTH_MODE"}
        refused = subprocess.run([str(BIN / "serve"), "status"], env={**_clean_env(), **without},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0, refused.stdout  # the CLI sends no token without it
        assert "Missing authentication token" in refused.stderr, refused.stderr[-2000:]

        token = Path(exports["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        for path in ("/api/version", "/api/serve/applications/"):
            assert _status(base + path)[0] == 401, path
            assert _status(base + path, "not-the-token-" * 4)[0] == 403, path
            code, body = _status(base + path, token)
            assert code == 200, (path, body)
        assert json.loads(_status(base + "/api/version", token)[1])["ray_version"] == "2.60.0"
        assert "churn" in json.loads(_status(base + "/api/serve/applications/", token)[1])["applications"]

        head = json.loads(_loom(project, "status", "--json").stdout)["cluster"]
        assert head["dashboard_url"] == base
        assert _listen_ips(dashboard, head["pids"]) == {"127.0.0.1"}

        changed = _loom(project, "env", *recipe, "env.dashboard=false")  # kept running, and said so
        assert ("# env.dashboard: the running head has its dashboard on port "
                f"{dashboard}, the recipe asks for none") in changed.stdout, changed.stdout
    finally:
        _loom(project, "down")
