"""A view's ``ttl_s`` at serving: an online value older than it reads as missing (SQLite and Redis)."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from framework.backends.feast import FeastBackend, OnlineFeatureClient, get_online, materialize
from framework.backends.feast.repo import repo_dir
from framework.serving.features import build_lookup, missing_features

from feast_helpers import feast_steps, recipe_dict

pytestmark = pytest.mark.integration

NINETY_DAYS = 7_776_000
NOW = pd.Timestamp.now(tz="UTC").floor("s")
# customer 1: last seen 175 days ago (the reported case); customer 2: yesterday; customer 3: never
ROWS = [(1, NOW - pd.Timedelta(days=175), 5.0, 50), (2, NOW - pd.Timedelta(days=1), 7.0, 70)]


def ttl_recipe(tmp_path, feast_project, store: dict | None = None):
    """``recent`` (spend, 90-day TTL) and ``lifetime`` (visits, no TTL) over one source, applied
    and fully materialized."""
    (tmp_path / "data").mkdir()
    pd.DataFrame(ROWS, columns=["customer_id", "event_timestamp", "spend", "visits"]).to_parquet(
        tmp_path / "data/features.parquet", index=False)
    pd.DataFrame([(1, NOW, 1), (2, NOW, 0)], columns=["customer_id", "event_timestamp", "bought"]).to_parquet(
        tmp_path / "data/labels.parquet", index=False)
    d = recipe_dict()
    d["features"]["views"] = {
        "recent": {"entities": ["customer"], "source": "profiles", "ttl_s": NINETY_DAYS,
                   "fields": {"spend": "float64"}},
        "lifetime": {"entities": ["customer"], "source": "profiles", "ttl_s": 0,
                     "fields": {"visits": "int64"}},
    }
    d["features"]["service"]["features"] = ["recent:spend", "lifetime:visits"]
    if store:
        d["features"]["store"] = store
    recipe, ctx = feast_project(d)
    backend = FeastBackend()
    for step in feast_steps(recipe, tmp_path):
        if step.kind in ("feast.entity", "feast.view", "feast.service"):
            backend.apply(step, ctx)
    assert materialize(ctx)["rows"] == 4  # both customers, both views: the old value is stored
    return recipe, ctx


def client_for(recipe, ctx, ttl_s=None) -> OnlineFeatureClient:
    return OnlineFeatureClient.from_workspace(
        str(repo_dir(ctx.workspace, recipe.project)), recipe.features.service.name,
        recipe.feature_names(), ttl_s)


def check_old_value_reads_as_missing(recipe, ctx) -> None:
    client = client_for(recipe, ctx)
    rows = [{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}]
    got = client.get(rows)
    assert got == [{"spend": None, "visits": 50},  # 175 days > 90: missing; the TTL-less view serves
                   {"spend": 7.0, "visits": 70},  # inside the TTL: served
                   {"spend": None, "visits": None}]  # unknown entity: not counted as expired
    assert client.expired == 1
    # the serving path sees exactly what it sees for a value the store never had
    assert missing_features(got[0], client.feature_names) == ["spend"]
    assert pickle.loads(pickle.dumps(client)).get(rows[:1]) == [{"spend": None, "visits": 50}]
    assert get_online(ctx, {"customer_id": "1"}) == {"spend": None, "visits": 50}  # `loom features get`


def test_sqlite_value_older_than_ttl_reads_as_missing(tmp_path, feast_project):
    recipe, ctx = ttl_recipe(tmp_path, feast_project)
    check_old_value_reads_as_missing(recipe, ctx)


@pytest.mark.redis
def test_redis_value_older_than_ttl_reads_as_missing(tmp_path, feast_project, redis_server):
    recipe, ctx = ttl_recipe(tmp_path, feast_project,
                             {"online": {"type": "redis", "connection_string": redis_server}})
    check_old_value_reads_as_missing(recipe, ctx)


def test_ttl_given_in_the_settings_wins_over_the_registry(tmp_path, feast_project):
    recipe, ctx = ttl_recipe(tmp_path, feast_project)
    settings = {"type": "feast", "repo_dir": str(repo_dir(ctx.workspace, recipe.project)),
                "feature_service": recipe.features.service.name,
                "ttl_s": {"recent": 0, "lifetime": 86_400 * 3}}
    lookup = build_lookup(settings, ["customer_id"], recipe.feature_names())
    assert lookup.get([{"customer_id": 1}, {"customer_id": 2}]) == [
        {"spend": 5.0, "visits": None}, {"spend": 7.0, "visits": 70}]
    assert pickle.loads(pickle.dumps(lookup)).get([{"customer_id": 1}]) == [{"spend": 5.0, "visits": None}]
