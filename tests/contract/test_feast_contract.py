"""One contract for the feature-store steps: FakeBackend and the real FeastBackend pass the same checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest

from framework.backends.base import RunContext
from framework.backends.fake import FakeBackend
from framework.compile.compiler import compile_steps
from framework.spec import Recipe

KINDS = ("feast.entity", "feast.view", "feast.service", "feast.materialize", "training.dataset")
T0 = pd.Timestamp("2026-01-01", tz="UTC")


def feast_backend() -> Any:
    from framework.backends.feast import FeastBackend

    return FeastBackend()


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    """A two-entity recipe over tiny parquet files, in a fresh workspace."""
    (tmp_path / "data").mkdir()
    pd.DataFrame({"store_id": ["a", "b"], "event_timestamp": [T0, T0], "sales": [1.0, 2.0]}).to_parquet(
        tmp_path / "data/f.parquet", index=False)
    pd.DataFrame({"store_id": ["a", "b", "a"], "event_timestamp": [T0, T0, T0], "y": [1, 0, 1]}).to_parquet(
        tmp_path / "data/l.parquet", index=False)
    recipe = Recipe.model_validate({
        "schema_version": 1, "name": "stores",
        "data": {"sources": {
            "f": {"type": "parquet", "path": "data/f.parquet", "timestamp_field": "event_timestamp"},
            "l": {"type": "parquet", "path": "data/l.parquet", "timestamp_field": "event_timestamp"}}},
        "features": {"entities": {"store": {"join_keys": ["store_id"]}},
                     "views": {"sales": {"entities": ["store"], "source": "f",
                                         "fields": {"sales": "float64"}}},
                     "service": {"name": "stores_v1", "features": ["sales:sales"]}},
        "training": {"label": {"source": "l", "column": "y"},
                     "model": {"type": "xgboost", "objective": "binary:logistic"}},
        "serving": {"auth": {"enabled": False}},
    })
    return RunContext(recipe=recipe, project_dir=tmp_path, workspace=tmp_path / "ws")


def check_contract(backend: Any, ctx: RunContext) -> None:
    """Unknown → None; apply → observe == fingerprint with JSON outputs; apply again changes nothing;
    delete (in reverse order) → None."""
    steps = [s for s in compile_steps(ctx.recipe, {}) if s.kind in KINDS]
    assert [s.kind for s in steps] == list(KINDS)
    for step in steps:
        assert step.kind in backend.kinds
        assert backend.observe(step, ctx) is None, step.address
    for step in steps:
        ctx.outputs[step.address] = backend.apply(step, ctx)
        json.dumps(ctx.outputs[step.address])
        assert backend.observe(step, ctx) == step.fingerprint, step.address
    for step in steps:
        again = backend.apply(step, ctx)
        assert backend.observe(step, ctx) == step.fingerprint, step.address
        assert set(again) == set(ctx.outputs[step.address]), step.address
    for step in reversed(steps):
        backend.delete(step.address, ctx)
        assert backend.observe(step, ctx) is None, step.address


@pytest.mark.parametrize("make", [
    pytest.param(FakeBackend, id="FakeBackend"),
    pytest.param(feast_backend, marks=pytest.mark.integration, id="FeastBackend"),
])
def test_backend_passes_the_feast_contract(make: Callable[[], Any], ctx: RunContext) -> None:
    check_contract(make(), ctx)


@pytest.mark.integration
def test_feast_outputs_have_the_promised_shape(ctx: RunContext) -> None:
    backend = feast_backend()
    for step in (s for s in compile_steps(ctx.recipe, {}) if s.kind in KINDS):
        ctx.outputs[step.address] = backend.apply(step, ctx)
    mat, data = ctx.outputs["feast.materialize"], ctx.outputs["training.dataset"]
    assert mat["rows"] == 2 and mat["views"] == ["sales"] and pd.Timestamp(mat["end"]).tzinfo
    assert data["rows"] == 3 and data["columns"] == ["store_id", "event_timestamp", "y", "sales"]
    assert Path(data["path"]).is_absolute() and Path(data["path"]).is_relative_to(ctx.workspace)
    assert pd.read_parquet(data["path"])["sales"].tolist() == [1.0, 2.0, 1.0]
