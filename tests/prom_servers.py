"""Prometheus-family servers (Debian's packages) for tests: started on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path


def start(cmd: list[str], port: int, log: Path, timeout_s: float = 60.0) -> subprocess.Popen:
    """Run ``cmd`` (output to ``log``) until it answers ``/-/ready`` on ``port``."""
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and not ready(port):
        if time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"{cmd[0]} did not answer on port {port} within {timeout_s:g} s: "
                                 + log.read_text(errors="replace")[-3000:])
        time.sleep(0.5)
    assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
    return proc


def ready(port: int) -> bool:
    """Whether a Prometheus or Alertmanager on ``port`` says it is ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM by the process's own PID; SIGKILL after 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_prometheus(binary: str, folder: Path, targets: list[str], port: int,
                     scrape_interval_s: float = 1.0) -> subprocess.Popen:
    """A Prometheus on 127.0.0.1:``port`` scraping ``targets`` (host:port) with its data in
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {scrape_interval_s:g}s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: ray\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
    return start([binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}"], port, folder / "prometheus.log")
