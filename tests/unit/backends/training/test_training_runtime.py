"""Ray runtime choices (address, temp dir) and that importing the training backends stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framework.backends.ray_cluster import temp_dir
from framework.backends.ray_runtime import resolve_address
from framework.spec.env import Env


class _Recipe:
    """Just the ``env`` part of a recipe, which is all the runtime reads."""

    def __init__(self, **env) -> None:
        self.env = Env(**env)


def test_address_from_recipe_then_a_running_head_then_embedded(tmp_path: Path) -> None:
    assert resolve_address(_Recipe(ray_address="ray://h:10001"), tmp_path) == "ray://h:10001"
    assert resolve_address(_Recipe(), tmp_path) is None
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "address").write_text("127.0.0.1:1\n")
    # A head that died leaves its address file: nothing answers there, so start a local Ray.
    assert resolve_address(_Recipe(), tmp_path) is None


def test_temp_dir_in_workspace_unless_socket_paths_would_be_too_long(tmp_path: Path) -> None:
    assert str(temp_dir(Path("/w/.loom"))) == "/w/.loom/ray/tmp"
    long = tmp_path / ("x" * 80)
    short = str(temp_dir(long))
    assert short.startswith("/tmp/loom-ray-") and short == str(temp_dir(long))


def test_importing_training_backends_imports_no_sdk() -> None:
    code = ("import sys, framework.backends.ray_train, framework.backends.ray_tune, "
            "framework.backends.model_registry, framework.backends.ray_runtime; "
            "print([m for m in ('ray', 'mlflow', 'xgboost') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unreachable_cluster_is_an_error_in_seconds_not_a_hang(tmp_path: Path) -> None:
    # ray.init(address=...) to an address nobody listens on retried for over 120 s (ray 2.60).
    code = (
        "import socket, sys, time\n"
        "from framework.backends.ray_runtime import connect\n"
        "from framework.errors import BackendError\n"
        "from framework.spec.env import Env\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "class R: env = Env(ray_address=f'127.0.0.1:{port}')\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    connect(R(), sys.argv[1])\n"
        "except BackendError as exc:\n"
        "    print(round(time.monotonic() - t, 1), exc)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    seconds, _, message = out.stdout.partition(" ")
    assert float(seconds) < 10, out.stdout + out.stderr
    assert "Cannot reach the Ray cluster at 127.0.0.1:" in message and "env.ray_address" in message


def test_a_port_where_no_gcs_answers_is_an_error_in_seconds() -> None:
    # ray.init held the command for minutes against a port where another service listens.
    import http.server
    import threading
    import time

    import pytest

    from framework.backends.ray_runtime import check_gcs
    from framework.errors import BackendError

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="answered as a Ray cluster's GCS within 2 s"):
            check_gcs(f"127.0.0.1:{server.server_address[1]}", timeout_s=2)
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
    check_gcs("ray://127.0.0.1:1")  # Ray Client addresses are ray.init's to judge
