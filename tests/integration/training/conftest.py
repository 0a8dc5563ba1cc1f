"""Fixtures for training tests: a composed churn recipe, its training parquet, and a run context."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
from training_helpers import churn_dataset, compose_recipe_dict


@pytest.fixture(scope="module")
def training_project(tmp_path_factory: pytest.TempPathFactory, sample_data: Path) -> Path:
    """A project dir with the sample data and a training parquet, shared by a test module."""
    root = tmp_path_factory.mktemp("trainproj")
    shutil.copytree(sample_data, root / "data")
    churn_dataset(root / "data", root / "dataset.parquet")
    return root


@pytest.fixture(scope="module")
def churn_dict() -> dict[str, Any]:
    """The churn recipe, composed, with a short training budget for tests."""
    data = compose_recipe_dict("churn")
    data["training"]["model"]["num_boost_round"] = 40
    data["training"]["model"]["early_stopping_rounds"] = 5
    return data


@pytest.fixture(scope="module")
def make_ctx(training_project: Path) -> Callable[..., Any]:
    """Build a RunContext for a recipe dict; the dataset step's output is already there."""
    from framework.backends.base import RunContext
    from framework.spec import Recipe

    def make(data: dict[str, Any], workspace: str = "ws", lines: list[str] | None = None) -> Any:
        recipe = Recipe.model_validate(data)
        dataset = training_project / "dataset.parquet"
        sink = lines if lines is not None else []
        return RunContext(
            recipe=recipe, project_dir=training_project, workspace=training_project / workspace,
            outputs={"training.dataset": {"path": str(dataset), "rows": len(pd.read_parquet(dataset))}},
            progress=sink.append,
        )

    return make
