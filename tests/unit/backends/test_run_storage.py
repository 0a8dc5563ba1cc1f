"""``env.storage_s3``: the endpoint and credentials of an s3:// ``env.storage_path`` (issue 17),
from secret fields only, read when a run starts; refused where they would do nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.backends.preflight import secret_problems
from framework.backends.run_storage import storage_target
from framework.errors import BackendError, RecipeError
from framework.loading import load_recipe

S3 = ("env.storage_path=s3://runs/ray", "+env.storage_s3={endpoint_url: 'http://127.0.0.1:9000', "
      "access_key_id: {env: T_S3_KEY}, secret_access_key: {env: T_S3_SECRET}}")


def recipe(*overrides: str):
    return load_recipe(["recipe=churn", *overrides]).recipe


def test_the_filesystem_carries_the_endpoint_and_the_path_drops_the_scheme(project, monkeypatch):
    monkeypatch.setenv("T_S3_KEY", "id-1")
    monkeypatch.setenv("T_S3_SECRET", "secret-2")
    path, fs = storage_target(recipe(*S3), project / ".loom")
    assert path == "runs/ray" and fs.type_name == "s3"
    assert "127.0.0.1:9000" in repr(fs.__reduce__()) and "secret-2" not in path
    local, none = storage_target(recipe(), project / ".loom")
    assert none is None and local.endswith("ray_results")


def test_an_unreadable_secret_names_its_key_and_not_its_value(project, monkeypatch):
    monkeypatch.delenv("T_S3_KEY", raising=False)
    monkeypatch.setenv("T_S3_SECRET", "secret-2")
    with pytest.raises(BackendError, match=r"env.storage_s3.access_key_id: the environment variable "
                                           r"T_S3_KEY cannot be read"):
        storage_target(recipe(*S3), project / ".loom")
    problems = secret_problems(recipe(*S3), {"training.train"}, project)
    assert [p.path for p in problems] == ["env.storage_s3.access_key_id"]
    assert secret_problems(recipe(*S3), {"serving.deploy"}, project) == []  # only training reads it


@pytest.mark.parametrize("bad, words", [
    (("+env.storage_s3={endpoint_url: 'http://127.0.0.1:9000'}",), "read only for an s3:// storage path"),
    (("env.storage_path=s3://runs/ray", "+env.storage_s3={access_key_id: {env: A}}"),
     "Give both access_key_id and secret_access_key"),
    (("env.storage_path=s3://runs/ray", "+env.storage_s3={access_key_id: plain, secret_access_key: {env: B}}"),
     "secrets never sit in YAML"),
])
def test_settings_that_would_do_nothing_or_leak_are_refused(project, bad, words):
    with pytest.raises(RecipeError, match=words):
        recipe(*bad)


def test_kuberay_pods_read_the_object_store_keys_from_the_secret(project):
    from framework.backends.kuberay import pod_secrets

    loaded = load_recipe(["recipe=churn", *S3])
    found = {s.recipe_key: s.env for s in pod_secrets(loaded.recipe, loaded.data)}
    assert found["env.storage_s3.access_key_id"] == "T_S3_KEY"
    assert found["env.storage_s3.secret_access_key"] == "T_S3_SECRET"
