"""Replicas load versions from the MLflow store by URI, into their node's cache (issue 17): with a
remote registry nothing in a slot is read from the driver's paths."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest

from framework.backends.ray_serve.config import model_store
from framework.loading import load_recipe
from framework.serving.control import SlotSpec
from framework.serving.slots import SlotTable, fetch_version


@pytest.mark.parametrize(("uri", "store"), [
    (None, ""), ("sqlite:////tmp/x/mlflow.db", ""),
    ("http://mlflow:5000", "http://mlflow:5000"),
    ("https://loom:s3cret@mlflow.example.com/mlflow", "https://mlflow.example.com/mlflow")])
def test_replicas_download_from_a_server_and_never_see_its_credentials(uri, store):
    overrides = [f"+registry.tracking_uri={uri}"] if uri else []
    assert model_store(load_recipe(["recipe=churn", *overrides]).recipe) == store


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A real (SQLite) MLflow store with version 1 of model 'm' (a tiny booster), and a fresh
    temp dir for the node cache."""
    import mlflow
    import xgboost

    from framework.backends.model_registry.tracking import client_for
    from framework.backends.model_registry.versions import register_version

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-tmp"))
    (tmp_path / "node-tmp").mkdir()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(uri)
    booster = xgboost.train({"objective": "binary:logistic"},
                            xgboost.DMatrix(np.array([[0.0], [1.0]] * 8), label=[0, 1] * 8), 2)
    path = tmp_path / "model.ubj"
    booster.save_model(str(path))
    exp = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifact(str(path), artifact_path="model")
    register_version(client, "m", f"{run.info.artifact_uri}/model", run.info.run_id, {})
    return uri, booster


def test_a_version_is_downloaded_once_into_this_users_0700_cache(registered):
    uri, _ = registered
    path, profile, lib = fetch_version(uri, "models:/m/1")
    root = os.path.join(tempfile.gettempdir(), f"loom-models-{os.getuid()}")
    assert path.startswith(root) and path.endswith("model.ubj") and os.path.isfile(path)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700 and profile is None and lib is None
    assert fetch_version(uri, "models:/m/1")[0] == path  # the cached copy


def test_a_slot_loads_its_version_from_the_store_not_the_driver_path(registered):
    uri, booster = registered
    table = SlotTable(defaults=(["x"], "binary", None), model_store=uri)
    spec = SlotSpec(version="1", model_path="/driver/only/model.ubj", model_uri="models:/m/1")
    slot = table._slot(spec)
    x = np.array([[1.0]], dtype=np.float32)
    assert slot.booster.inplace_predict(x)[0] == pytest.approx(booster.inplace_predict(x)[0])
    assert slot.model_path != "/driver/only/model.ubj"


def test_a_shared_cache_directory_is_refused(registered):
    uri, _ = registered
    root = os.path.join(tempfile.gettempdir(), f"loom-models-{os.getuid()}")
    os.mkdir(root)
    os.chmod(root, 0o777)
    with pytest.raises(PermissionError, match="0700"):
        fetch_version(uri, "models:/m/1")


def test_only_registry_uris_are_fetched(registered):
    with pytest.raises(ValueError, match="models:/NAME/VERSION"):
        fetch_version(registered[0], "runs:/abc/model")
