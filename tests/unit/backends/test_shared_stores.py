"""On a cluster of several machines, `loom plan` names every store only this machine reaches (issue 17)."""

from __future__ import annotations

import pytest

from framework.backends.preflight import NODE_LOCAL_TITLE, preflight, raise_for
from framework.backends.shared_stores import is_remote_cluster, node_local_problems
from framework.errors import RecipeError
from framework.loading import load_recipe

ALL = {"feast.view", "training.train", "registry.register", "serving.deploy"}
SHARED = ("store=redis", "features.store.registry=postgresql+psycopg://loom@db:5432/feast",
          "+registry.tracking_uri=http://mlflow:5000", "env.storage_path=s3://models/ray")


def recipe(*overrides: str):
    return load_recipe(["recipe=churn", *overrides]).recipe


@pytest.mark.parametrize(("address", "remote"), [
    ("", False), ("127.0.0.1:6379", False), ("ray://localhost:10001", False), ("[::1]:6379", False),
    ("10.0.0.5:6379", True), ("ray://head.example.com:10001", True), ("auto", True)])
def test_a_cluster_is_remote_unless_its_address_is_loopback(address, remote):
    assert is_remote_cluster(address) is remote


def test_the_embedded_stores_on_a_remote_cluster_are_named_key_by_key():
    problems = node_local_problems(recipe("env.ray_address=10.0.0.5:6379"), ALL)
    assert [p.path for p in problems] == ["features.store.online.type", "features.store.registry",
                                          "registry.tracking_uri", "env.storage_path"]
    for p in problems:
        assert "10.0.0.5:6379" in p.message and p.hint


def test_shared_stores_pass_and_a_loopback_cluster_keeps_the_embedded_ones():
    assert node_local_problems(recipe("env.ray_address=10.0.0.5:6379", *SHARED), ALL) == []
    assert node_local_problems(recipe("env.ray_address=127.0.0.1:6379"), ALL) == []
    assert node_local_problems(recipe(), ALL) == []


def test_only_the_stores_the_plans_steps_use_are_named():
    r = recipe("env.ray_address=10.0.0.5:6379")
    assert [p.path for p in node_local_problems(r, {"feast.view"})] == []
    assert [p.path for p in node_local_problems(r, {"training.train"})] == [
        "registry.tracking_uri", "env.storage_path"]


def test_plan_fails_with_its_own_title_before_anything_runs(tmp_path):
    r = recipe("env.ray_address=10.0.0.5:6379", "store=redis",
               "features.store.registry=postgresql+psycopg://loom@db:5432/feast")
    problems = [p for p in preflight(r, tmp_path, {"serving.deploy"})
                if p.path != "env.ray_address"]  # nothing answers at 10.0.0.5 here
    assert [p.path for p in problems] == ["registry.tracking_uri"]
    with pytest.raises(RecipeError) as err:
        raise_for(problems)
    assert NODE_LOCAL_TITLE in str(err.value) and "registry.tracking_uri" in str(err.value)


@pytest.mark.parametrize(("override", "key"), [
    ("features.store.registry=postgresql+psycopg://loom:hunter2@db:5432/feast", "features.store.registry"),
    ("features.store.registry=redis://db:6379", "features.store.registry"),
    ("env.storage_path=relative/dir", "env.storage_path"),
    ("env.storage_path=ftp://host/x", "env.storage_path")])
def test_shared_store_keys_refuse_what_cannot_work(override, key):
    with pytest.raises(RecipeError) as err:
        recipe(override)
    assert key in str(err.value) and "hunter2" not in str(err.value)
