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


def test_created_inside_a_private_parent(tmp_path: Path) -> None:
    path = ray_cluster.ensure_temp_dir(tmp_path / "loom-ray-0123456789" / "r")
    assert path.is_dir() and mode(path.parent) == 0o700


def test_an_existing_own_parent_is_tightened_and_rays_0777_inside_is_fine(tmp_path: Path) -> None:
    parent = tmp_path / "ray"
    parent.mkdir()
    os.chmod(parent, 0o755)
    (parent / "tmp").mkdir()
    os.chmod(parent / "tmp", 0o777)   # what Ray leaves behind (try_make_directory_shared)
    ray_cluster.ensure_temp_dir(parent / "tmp")
    assert mode(parent) == 0o700


@pytest.mark.parametrize("make, why", [
    (lambda p: p.symlink_to(p.parent), "it is a symbolic link"),
    (lambda p: p.write_text("x"), "it is not a directory"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "it is writable by others (mode 777)"),
], ids=["symlink", "file", "world-writable"])
def test_a_parent_made_by_someone_else_is_refused(tmp_path: Path, make, why: str) -> None:
    parent = tmp_path / "loom-ray-0123456789"
    make(parent)
    with pytest.raises(BackendError) as err:
        ray_cluster.ensure_temp_dir(parent / "r")
    assert str(err.value).startswith(f"Refusing Ray's temp dir {parent}: {why}.")
    assert "Remove it" in str(err.value)


def test_a_symlink_inside_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "p"
    parent.mkdir(mode=0o700)
    (parent / "r").symlink_to(tmp_path)
    with pytest.raises(BackendError, match="it is a symbolic link"):
        ray_cluster.ensure_temp_dir(parent / "r")


def test_another_users_dir_is_refused(tmp_path: Path, monkeypatch) -> None:
    parent = tmp_path / "loom-ray-0123456789"
    parent.mkdir(mode=0o700)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)
    with pytest.raises(BackendError, match=rf"it is owned by uid {me}, not by you \(uid {me + 1}\)"):
        ray_cluster.ensure_temp_dir(parent / "r")


def test_up_checks_the_temp_dir_before_starting_ray(tmp_path: Path, monkeypatch) -> None:
    workspace = tmp_path / ("w" * 60)   # long: the temp dir is the short /tmp path
    tmp = ray_cluster.temp_dir(workspace)
    assert str(tmp).startswith("/tmp/loom-ray-") and tmp.name == "r"
    monkeypatch.setattr(ray_cluster, "temp_dir", lambda ws: tmp_path / "planted" / "r")
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
