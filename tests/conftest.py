"""Shared fixtures: a throw-away project with small sample data, and one Ray instance per session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("LOOM_API_KEY", "test-key-0123456789")
# Ray hands the replicas' metrics to its agent every 5 s in these tests (its default is every
# 10 s), so tests that read them through Prometheus wait less. Ray's processes take it from the
# environment they start with. Not lower: Ray keeps a gauge for two report intervals after it was
# last set, and the replicas set their PSI gauges every 5 s (``serving.drift.FLUSH_S``); at 1 s the
# gauges blink out between sets and an alert's ``for`` restarts each time (measured).
os.environ.setdefault("RAY_metrics_report_interval_ms", "5000")


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small, deterministic churn and fraud data (1,000 entities each), made once per session."""
    import make_data

    out = tmp_path_factory.mktemp("data")
    make_data.main(["--out", str(out), "--customers", "1000", "--accounts", "1000"])
    return out


@pytest.fixture
def project(tmp_path: Path, sample_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory like the repository's (recipes/, conf/, data/), as the working directory."""
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copytree(sample_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOM_TEMPLATE_PATH", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, no dashboard, temp files under /tmp)."""
    import ray

    temp_dir = f"/tmp/loom-test-ray-{os.getpid()}"
    # Loopback only, as the workspace head: without it Ray swaps 127.0.0.1 for the external address.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir,
             runtime_env={"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}})
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    except Exception:  # Serve was never started
        pass
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def prometheus(ray_session, tmp_path_factory: pytest.TempPathFactory):
    """A Prometheus (Debian's package) scraping the session Ray's metrics endpoint every second;
    yields its base URL."""
    import debian
    import prom_servers

    binary = debian.binary("prometheus", "prometheus")
    metrics_port = ray_session._private.worker.global_worker.node.metrics_export_port
    port = _free_port()
    proc = prom_servers.start_prometheus(binary, tmp_path_factory.mktemp("prometheus"),
                                         [f"127.0.0.1:{metrics_port}"], port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        prom_servers.stop(proc)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus's ``promtool`` (Debian's ``prometheus`` package, installed if missing)."""
    import debian

    return debian.binary("promtool", "prometheus")


# -- Redis ---------------------------------------------------------------------------------------


def _redis_binary() -> str:
    import debian

    return debian.binary("redis-server", "redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisAddress(str):
    """'host:port' of the session's redis-server, with its ``pid`` (chaos tests stop it)."""

    def __new__(cls, address: str, pid: int) -> "RedisAddress":
        out = super().__new__(cls, address)
        out.pid = pid
        return out


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server on 127.0.0.1 (installed from Debian if missing); yields 'host:port'
    (a ``RedisAddress``, whose ``pid`` is the server's)."""
    binary = _redis_binary()
    port, data = _free_port(), tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", "",
         "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield RedisAddress(f"127.0.0.1:{port}", proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)  # stopped by its own PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen, name: str = "redis-server") -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port}")


def _stop_session(proc: subprocess.Popen, wait_s: float) -> None:
    """Stop a server started with ``start_new_session=True`` and everything in its session (its
    workers, or ``runuser`` and the server): SIGTERM by its PID, SIGKILL after ``wait_s``."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- PostgreSQL ----------------------------------------------------------------------------------


def _postgres_bin() -> Path:
    """The directory of PostgreSQL's server programs (Debian's postgresql, installed if missing)."""
    import glob

    import debian

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        debian.binary("pg_ctlcluster", "postgresql")  # Debian keeps initdb off PATH
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "postgresql is installed but no /usr/lib/postgresql/*/bin/initdb exists"
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_server():
    """A private PostgreSQL on 127.0.0.1 (trust auth for user ``loom``, database ``feast``), its data
    in a temp dir; yields ``host:port``. It runs as the ``postgres`` user (the server refuses
    root) and is stopped by its PID."""
    import pwd

    import tempfile

    bin_dir = _postgres_bin()
    # Not under pytest's temp root, which only root may enter.
    data = Path(tempfile.mkdtemp(prefix="loom-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(data, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "loom",
                    "-A", "trust", "--no-sync"], check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen(
        [*as_user, str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port),
         "-k", str(data), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(port, proc, "postgres")
        deadline = time.monotonic() + 30
        while subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                              "-U", "loom", "feast"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "createdb feast kept failing"
            time.sleep(0.3)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_session(proc, 20)  # its own session: runuser and the server
        shutil.rmtree(data, ignore_errors=True)


# -- S3 (moto's server) --------------------------------------------------------------------------

#: moto's S3 server and the AWS SDK it runs on, in a venv of their own: botocore needs
#: python-dateutil < 3, and Loom's environment pins 4.0.0. Loom itself talks to it through pyarrow.
MOTO_PINS = ("moto[server]==5.2.5", "boto3==1.44.5", "botocore==1.44.5")


class S3Server(str):
    """The server's ``http://127.0.0.1:PORT``, with ``log`` (its request log: one line per call)."""

    def __new__(cls, url: str, log: Path) -> "S3Server":
        out = super().__new__(cls, url)
        out.log = log
        return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible endpoint on 127.0.0.1: moto's server (installed once per machine into
    its own venv); yields an ``S3Server``. Stopped by its PID."""
    import hashlib
    import tempfile

    venv = Path(tempfile.gettempdir()) / f"loom-moto-{hashlib.sha256(' '.join(MOTO_PINS).encode()).hexdigest()[:10]}"
    server = venv / "bin" / "moto_server"
    if not server.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *MOTO_PINS], check=True,
                       capture_output=True, timeout=600)
    port, root = _free_port(), tmp_path_factory.mktemp("s3")
    log_path = root / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, proc, "moto_server")
        yield S3Server(f"http://127.0.0.1:{port}", log_path)
    finally:
        _stop_session(proc, 15)
        log.close()


# -- MLflow server -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` on 127.0.0.1: SQL backend (SQLite) and ``--serve-artifacts``, the
    artifacts in a directory of its own. Yields ``(url, artifacts_dir)``; stopped by its PID."""
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--serve-artifacts", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}: "
                                   f"{(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer on {url} in 90 s")
            time.sleep(0.5)
        yield url, root / "artifacts"
    finally:
        _stop_session(proc, 15)  # its own session: the server and its workers
        log.close()
