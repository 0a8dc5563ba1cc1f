"""Fixtures for the Feast backend tests: a recipe and run context over tmp files (the Redis server
fixture is in tests/conftest.py)."""

from __future__ import annotations

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
