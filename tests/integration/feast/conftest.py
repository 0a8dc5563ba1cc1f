"""Fixtures for the Feast backend tests: a recipe and run context over tmp files, a real Redis server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from framework.backends.base import RunContext
from framework.spec import Recipe


@pytest.fixture
def feast_project(tmp_path: Path) -> Callable[..., tuple[Recipe, RunContext]]:
    """Build ``(recipe, ctx)`` for a recipe dict over files in ``tmp_path`` (workspace ``.loom``)."""

    def make(d: dict[str, Any]) -> tuple[Recipe, RunContext]:
        recipe = Recipe.model_validate(d)
        return recipe, RunContext(recipe=recipe, project_dir=tmp_path, workspace=tmp_path / ".loom")

    return make


@pytest.fixture
def feast_ctx(tmp_path: Path) -> Callable[[Recipe], tuple[Recipe, RunContext]]:
    """``(recipe, ctx)`` for an already validated recipe over the current project (``project``)."""

    def make(recipe: Recipe) -> tuple[Recipe, RunContext]:
        return recipe, RunContext(recipe=recipe, project_dir=Path.cwd(), workspace=Path.cwd() / ".loom")

    return make


# -- Redis ---------------------------------------------------------------------------------------


def _redis_binary() -> str:
    import debian

    return debian.binary("redis-server", "redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A private redis-server on 127.0.0.1 (installed from Debian if missing); yields 'host:port'."""
    binary = _redis_binary()
    port, data = _free_port(), tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", "",
         "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)  # stopped by its own PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on 127.0.0.1:{port}")
