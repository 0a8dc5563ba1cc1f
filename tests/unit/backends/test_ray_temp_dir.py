"""Ray's temp dir is this user's own 0700 directory; a predictable /tmp path taken first is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from framework.backends import ray_cluster
from framework.errors import BackendError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_created_private(tmp_path: Path) -> None:
    path = ray_cluster.ensure_temp_dir(tmp_path / "ray" / "tmp")
    assert path.is_dir() and mode(path) == 0o700


def test_an_existing_own_dir_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir(mode=0o755)
    os.chmod(tmp_path / "t", 0o755)
    ray_cluster.ensure_temp_dir(tmp_path / "t")
    assert mode(tmp_path / "t") == 0o700


@pytest.mark.parametrize("make, why", [
    (lambda p: p.symlink_to(p.parent), "it is a symbolic link"),
    (lambda p: p.write_text("x"), "it is not a directory"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "it is writable by others (mode 777)"),
], ids=["symlink", "file", "world-writable"])
def test_refused(tmp_path: Path, make, why: str) -> None:
    path = tmp_path / "loom-ray-0123456789"
    make(path)
    with pytest.raises(BackendError) as err:
        ray_cluster.ensure_temp_dir(path)
    assert str(err.value).startswith(f"Refusing Ray's temp dir {path}: {why}.")
    assert "Remove it" in str(err.value)


def test_another_users_dir_is_refused(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "loom-ray-0123456789"
    path.mkdir(mode=0o700)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)
    with pytest.raises(BackendError, match=rf"it is owned by uid {me}, not by you \(uid {me + 1}\)"):
        ray_cluster.ensure_temp_dir(path)


def test_up_checks_the_temp_dir_before_starting_ray(tmp_path: Path, monkeypatch) -> None:
    workspace = tmp_path / ("w" * 60)   # long: the temp dir is the short /tmp path
    tmp = ray_cluster.temp_dir(workspace)
    assert str(tmp).startswith("/tmp/loom-ray-")
    monkeypatch.setattr(ray_cluster, "temp_dir", lambda ws: tmp_path / "planted")
    (tmp_path / "planted").symlink_to(tmp_path)
    monkeypatch.setattr(ray_cluster, "_check_ports", lambda recipe: None)
    started = []
    monkeypatch.setattr(ray_cluster.subprocess, "run", lambda *a, **k: started.append(a))

    class R:
        from framework.spec.env import Env
        env = Env()

    with pytest.raises(BackendError, match="symbolic link"):
        ray_cluster.up(R(), workspace)
    assert started == []
