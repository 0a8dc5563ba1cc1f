"""Push views on real Feast: a pushed event reaches the online lookup and the offline join."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from framework.backends.feast import FeastBackend, OnlineFeatureClient, materialize
from framework.backends.feast.dataset import historical_features
from framework.backends.feast.push import Pusher, push_source_name
from framework.backends.feast.repo import open_store, repo_dir
from framework.errors import BackendError

from feast_helpers import day, feast_steps, recipe_dict, write_tables

pytestmark = pytest.mark.integration

FEAST_CLI = Path(sys.executable).with_name("feast")
SETUP_KINDS = ("feast.entity", "feast.view", "feast.service", "feast.materialize")
VIEWS = {"profile": {"keys": ["customer_id"], "fields": {"spend": "float64", "visits": "int64"},
                     "timestamp_field": "event_timestamp"}}
#: An event for customer 2 at day 31, as an event bus delivers it: every value a string.
EVENT = {"customer_id": "2", "event_timestamp": "2026-02-01T00:00:00Z", "spend": "333.5", "visits": "33"}


def push_recipe(offline: str = "duckdb", push: bool = True, created: bool = True) -> dict:
    d = recipe_dict()
    if created:
        d["data"]["sources"]["profiles"]["created_timestamp_field"] = "created"
    d["features"]["views"]["profile"]["push"] = push
    d["features"]["store"] = {"offline": {"type": offline}}
    return d


def launched(tmp_path, feast_project, d: dict):
    """Apply the registry objects and materialize up to day 30, as `loom launch` does."""
    recipe, ctx = feast_project(d)
    backend = FeastBackend()
    for step in feast_steps(recipe, tmp_path):
        if step.kind in SETUP_KINDS:
            backend.apply(step, ctx)
    materialize(ctx, end=day(30))
    return recipe, ctx, backend


def settings(recipe, ctx) -> dict:
    return {"type": "feast", "repo_dir": str(repo_dir(ctx.workspace, recipe.project)),
            "feature_service": recipe.features.service.name}


def online(recipe, ctx) -> OnlineFeatureClient:
    s = settings(recipe, ctx)
    return OnlineFeatureClient.from_workspace(s["repo_dir"], s["feature_service"], recipe.feature_names())


def offline_values(recipe, ctx, times: list[pd.Timestamp]) -> list[tuple]:
    """(spend, visits) of customer 2 in the point-in-time join at each of ``times``."""
    entity_df = pd.DataFrame({"customer_id": [2] * len(times), "event_timestamp": times})
    frame = historical_features(open_store(recipe, ctx.workspace), ctx, entity_df).to_pandas()
    frame = frame.sort_values("event_timestamp")
    return [(float(s), int(v)) for s, v in zip(frame["spend"], frame["visits"])]


@pytest.mark.parametrize("offline", ["duckdb", "file"])
def test_a_pushed_event_reaches_the_online_lookup_and_the_offline_join(tmp_path, feast_project, offline):
    write_tables(tmp_path)
    recipe, ctx, _ = launched(tmp_path, feast_project, push_recipe(offline))
    client = online(recipe, ctx)
    assert client.get([{"customer_id": 2}]) == [{"spend": 200.0, "visits": 20}]

    pusher = Pusher.from_settings(settings(recipe, ctx), VIEWS)
    assert pusher.offline is True
    pusher.push("profile", [EVENT])

    assert client.get([{"customer_id": 2}, {"customer_id": 1}]) == [
        {"spend": 333.5, "visits": 33}, {"spend": 25.0, "visits": 3}]  # customer 1 untouched
    # offline: the push is in the source file, and the join sees it from when it was pushed (its
    # created time: "as known at"); at day 32 of the table, before the push happened, it did not
    assert len(pd.read_parquet(tmp_path / "data/features.parquet")) == 7
    later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    assert offline_values(recipe, ctx, [day(10), day(32), later]) == [
        (200.0, 20), (200.0, 20), (333.5, 33)]
    # a later materialization keeps the pushed value (the file holds it too)
    materialize(ctx, end=day(40))
    assert client.get([{"customer_id": 2}]) == [{"spend": 333.5, "visits": 33}]


def test_the_pusher_survives_pickling_and_refuses_bad_rows(tmp_path, feast_project):
    write_tables(tmp_path)
    path = tmp_path / "data/features.parquet"
    frame = pd.read_parquet(path)  # millisecond times: a pushed time is cut to the file's unit
    frame.astype({"event_timestamp": "datetime64[ms, UTC]"}).drop(columns="created").to_parquet(path)
    recipe, ctx, _ = launched(tmp_path, feast_project, push_recipe(created=False))
    pusher = pickle.loads(pickle.dumps(Pusher.from_settings(settings(recipe, ctx), VIEWS)))
    pusher.push("profile", [{**EVENT, "customer_id": 3, "spend": 1.0, "visits": 4,
                             "event_timestamp": (day(33) + pd.Timedelta(microseconds=1)).to_pydatetime()}])
    assert online(recipe, ctx).get([{"customer_id": 3}]) == [{"spend": 1.0, "visits": 4}]
    pusher.push("profile", [])  # nothing to write

    with pytest.raises(BackendError, match=r"'visits' do not fit its type int64"):
        pusher.push("profile", [{**EVENT, "visits": "3.5"}])
    with pytest.raises(BackendError, match=r"pushed row 0 lacks \['spend'\]"):
        pusher.push("profile", [{k: v for k, v in EVENT.items() if k != "spend"}])
    with pytest.raises(BackendError, match=r"features.views.nope: not a push view"):
        pusher.push("nope", [EVENT])
    with pytest.raises(BackendError, match=r"'event_timestamp' values are not times"):
        pusher.push("profile", [{**EVENT, "event_timestamp": "yesterday"}])
    assert len(pd.read_parquet(path)) == 7  # refused rows wrote nothing


def test_a_view_without_push_has_no_push_source_and_toggling_push_updates_the_view(tmp_path, feast_project):
    write_tables(tmp_path)
    recipe, ctx, backend = launched(tmp_path, feast_project, push_recipe(push=False))
    with pytest.raises(BackendError, match=r"features.views.profile: the view has no push source"):
        Pusher.from_settings(settings(recipe, ctx), VIEWS)

    pushed, ctx2 = feast_project(push_recipe(push=True))
    step = next(s for s in feast_steps(pushed, tmp_path) if s.address == "feast.view.profile")
    seen = backend.observe(step, ctx2)
    assert seen is not None and seen != step.fingerprint  # '~ update'
    backend.apply(step, ctx2)
    assert backend.observe(step, ctx2) == step.fingerprint
    store = open_store(pushed, ctx2.workspace)
    assert store.get_feature_view("profile").stream_source.name == push_source_name("profile")
    Pusher.from_settings(settings(pushed, ctx2), VIEWS).push("profile", [EVENT])
    assert online(pushed, ctx2).get([{"customer_id": 2}]) == [{"spend": 333.5, "visits": 33}]


def assert_cli_plans_no_changes(repo: Path) -> None:
    run = subprocess.run([str(FEAST_CLI), "plan"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "No changes to registry" in run.stdout and "No changes to infrastructure" in run.stdout, \
        run.stdout[-2000:]
    assert "deleted" not in run.stdout.lower()


def test_feast_cli_plans_no_changes_with_push_on_and_after_turning_it_off(tmp_path, feast_project):
    write_tables(tmp_path)
    recipe, ctx, backend = launched(tmp_path, feast_project, push_recipe())
    repo = repo_dir(ctx.workspace, recipe.project)
    assert_cli_plans_no_changes(repo)  # the push source's stored times are pinned like the file's

    off, ctx2 = feast_project(push_recipe(push=False))
    backend.apply(next(s for s in feast_steps(off, tmp_path) if s.address == "feast.view.profile"), ctx2)
    store = open_store(off, ctx2.workspace)
    assert store.get_feature_view("profile").stream_source is None  # Feast alone would keep it
    assert push_source_name("profile") not in [d.name for d in store.list_data_sources()]
    assert_cli_plans_no_changes(repo)


def test_a_node_without_the_workspace_pushes_online_from_the_inline_config(tmp_path, feast_project):
    """A consumer on a cluster's other node: no repo dir, the store's settings inline (as a
    replica's args carry them), and no source file. Its pushes serve at once; the file is untouched."""
    from framework.backends.feast.repo import inline_config, registry_config

    write_tables(tmp_path)
    recipe, ctx, _ = launched(tmp_path, feast_project, push_recipe())
    source = tmp_path / "data/features.parquet"
    hidden = source.rename(tmp_path / "elsewhere.parquet")   # the file is not on this "node"
    config = inline_config(recipe, ctx.workspace)
    # A cluster's registry is SQL (`loom plan` refuses a file one there); this test's file
    # registry, by its absolute path, stands in for it.
    config["registry"] = registry_config(recipe, repo_dir(ctx.workspace, recipe.project))
    remote = {"type": "feast", "repo_dir": str(tmp_path / "not-on-this-node"),
              "feature_service": recipe.features.service.name, "config": config}
    pusher = pickle.loads(pickle.dumps(Pusher.from_settings(remote, VIEWS)))
    assert pusher.offline is False and pusher.online_only == ["profile"]
    pusher.push("profile", [EVENT])
    assert online(recipe, ctx).get([{"customer_id": 2}]) == [{"spend": 333.5, "visits": 33}]
    with pytest.raises(BackendError, match=r"'visits' do not fit its type int64"):
        pusher.push("profile", [{**EVENT, "visits": "3.5"}])   # typed from the registry
    assert not source.exists() and len(pd.read_parquet(hidden)) == 6

    hidden.rename(source)   # a node that reads the source (a shared path): online and offline
    both = Pusher.from_settings(remote, VIEWS)
    assert both.offline is True and both.online_only == []
    both.push("profile", [{**EVENT, "customer_id": "3"}])
    assert len(pd.read_parquet(source)) == 7
    assert not (tmp_path / "not-on-this-node").exists()    # its lock is in the temp dir instead
