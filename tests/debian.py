"""Servers and tools that tests need, installed from Debian's packages when the machine lacks them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def binary(name: str, package: str) -> str:
    """The path of ``name``; installs ``package`` with apt-get first if it is missing (as root).

    Skips the calling test when the tool is missing and cannot be installed (not root).
    """
    global _updated
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"{name} is not installed and the tests cannot install {package} (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True,
                       timeout=300)
        _updated = True
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                   check=True, env=env, capture_output=True, timeout=600)
    return shutil.which(name) or f"/usr/bin/{name}"
