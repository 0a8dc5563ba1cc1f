"""Fixtures for rollout unit tests: one fake model deployment per test (see ``rollout_world``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_world import World


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def make_world(tmp_path: Path):
    count = iter(range(1000))
    return lambda **kw: World(tmp_path / f"world{next(count)}", **kw)
