"""Materialization (incremental, idempotent, counted) and online lookups through the serving client."""

from __future__ import annotations

import pickle

import pytest

from framework.backends.feast import FeastBackend, OnlineFeatureClient, get_online, materialize
from framework.backends.feast.repo import repo_dir
from framework.errors import BackendError

from feast_helpers import day, feast_steps, recipe_dict, write_tables

pytestmark = pytest.mark.integration

REGISTRY_KINDS = ("feast.entity", "feast.view", "feast.service")


def applied_store(tmp_path, feast_project, store: dict | None = None):
    """The hand-made table's recipe with its entity, view and service applied (not materialized)."""
    write_tables(tmp_path)
    d = recipe_dict()
    d["data"]["sources"]["profiles"]["created_timestamp_field"] = "created"
    if store:
        d["features"]["store"] = store
    recipe, ctx = feast_project(d)
    backend = FeastBackend()
    for step in feast_steps(recipe, tmp_path):
        if step.kind in REGISTRY_KINDS:
            backend.apply(step, ctx)
    return recipe, ctx, backend


def client_for(recipe, ctx) -> OnlineFeatureClient:
    return OnlineFeatureClient.from_workspace(
        str(repo_dir(ctx.workspace, recipe.project)), recipe.features.service.name, recipe.feature_names())


def check_incremental_materialization_and_lookups(recipe, ctx) -> None:
    """Shared by the SQLite and Redis tests: the same windows give the same rows and values."""
    first = materialize(ctx, end=day(4))
    assert first["rows"] == 3 and first["views"] == ["profile"]  # customers 1, 2, 3 up to day 4
    client = client_for(recipe, ctx)
    rows = [{"customer_id": 1}, {"customer_id": 4}, {"customer_id": 2}]
    assert client.get(rows) == [{"spend": 10.0, "visits": 1}, {"spend": None, "visits": None},
                                {"spend": 200.0, "visits": 20}]

    assert materialize(ctx, end=day(4))["rows"] == 0  # the same window again writes nothing
    assert materialize(ctx, end=day(3))["rows"] == 0  # nor does an older end
    assert client.get(rows)[0] == {"spend": 10.0, "visits": 1}

    assert materialize(ctx, end=day(6))["rows"] == 1  # only customer 1 has events after day 4
    # the day-5 value corrected later (created day 7) wins over the first version
    assert client.get(rows)[0] == {"spend": 25.0, "visits": 3}
    assert client.get([]) == []


def test_sqlite_materialization_is_incremental_idempotent_and_counted(tmp_path, feast_project):
    recipe, ctx, _ = applied_store(tmp_path, feast_project)
    check_incremental_materialization_and_lookups(recipe, ctx)


def test_client_survives_pickling_and_cli_lookup_converts_text_keys(tmp_path, feast_project):
    recipe, ctx, _ = applied_store(tmp_path, feast_project)
    materialize(ctx, end=day(30))
    clone = pickle.loads(pickle.dumps(client_for(recipe, ctx)))  # what a Serve replica receives
    assert clone.get([{"customer_id": 2}]) == [{"spend": 200.0, "visits": 20}]
    assert get_online(ctx, {"customer_id": "2"}) == {"spend": 200.0, "visits": 20}
    with pytest.raises(BackendError, match=r"join keys \['customer_id'\]; missing \['customer_id'\]"):
        get_online(ctx, {"user": "2"})


def test_materialize_step_reports_rows_and_second_apply_writes_none(tmp_path, feast_project):
    recipe, ctx, backend = applied_store(tmp_path, feast_project)
    step = next(s for s in feast_steps(recipe, tmp_path) if s.kind == "feast.materialize")
    assert backend.observe(step, ctx) is None
    out = backend.apply(step, ctx)
    assert out["rows"] == 3 and out["views"] == ["profile"] and out["end"]
    assert backend.observe(step, ctx) == step.fingerprint
    assert backend.apply(step, ctx)["rows"] == 0


def test_delete_removes_objects_from_the_registry(tmp_path, feast_project):
    recipe, ctx, backend = applied_store(tmp_path, feast_project)
    steps = [s for s in feast_steps(recipe, tmp_path) if s.kind in REGISTRY_KINDS]
    for step in reversed(steps):
        backend.delete(step.address, ctx)
        assert backend.observe(step, ctx) is None
    definitions = repo_dir(ctx.workspace, recipe.project) / "loom_definitions.py"
    assert "loom.fingerprint" not in definitions.read_text()


def test_lookup_before_launch_says_what_to_run(tmp_path, feast_project):
    write_tables(tmp_path)
    _, ctx = feast_project(recipe_dict())
    with pytest.raises(BackendError, match="run `loom launch recipe=shop` first"):
        get_online(ctx, {"customer_id": 1})


@pytest.mark.redis
def test_redis_online_store_materializes_and_serves(tmp_path, feast_project, redis_server):
    recipe, ctx, _ = applied_store(
        tmp_path, feast_project, {"online": {"type": "redis", "connection_string": redis_server}})
    assert "redis" in (repo_dir(ctx.workspace, recipe.project) / "feature_store.yaml").read_text()
    check_incremental_materialization_and_lookups(recipe, ctx)
