"""The churn recipe with stores a cluster's nodes share (issue 17) and its compiled predictor (issue
14), on real engines: a remote MLflow
(a real `mlflow server`, SQL backend, `--serve-artifacts`), a Feast SQL registry and a Ray Train
storage path outside the workspace. Replicas load the model from the MLflow server by its URI, into
their node's cache, and resolve the feature service from the SQL registry given inline in their
args: nothing they read is a path of the driver's workspace."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"


def test_launch_with_a_remote_mlflow_a_sql_feast_registry_and_shared_storage(
        ray_session, project, mlflow_server, tmp_path, monkeypatch):
    import xgboost
    from mlflow import MlflowClient
    from ray import serve

    from framework import api
    from framework.backends.model_registry import resolve_model
    from framework.backends.ray_serve import traffic

    url, artifacts = mlflow_server
    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    feast_db, storage = tmp_path / "feast-registry.db", tmp_path / "shared-results"
    args = ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
            "serving.num_cpus_per_replica=0.25", "training.model.num_boost_round=20",
            f"+registry.tracking_uri={url}", f"features.store.registry=sqlite:///{feast_db}",
            f"env.storage_path={storage}", "serving.predictor=treelite"]
    planned = api.plan(args)
    try:
        api.apply(planned)
        ctx = planned.ctx
        deploy, register = ctx.outputs["serving.deploy"], ctx.outputs["registry.register"]
        version = register["version"]

        # The server holds the version, its aliases and lineage tags, and its files: nothing of
        # MLflow is in the workspace.
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        got = client.get_model_version("churn", version)
        assert client.get_model_version_by_alias("churn", "champion").version == version
        run_tags = client.get_run(got.run_id).data.tags
        for tag in ("loom.recipe", "loom.recipe_fingerprint", "loom.feature_service",
                    "loom.code_version", "loom.fingerprint"):
            assert tag in run_tags, sorted(run_tags)
        assert any(p.name == "model.ubj" for p in artifacts.rglob("*"))
        assert not (Path(ctx.workspace) / "mlflow").exists()

        # Feast's registry is the SQL one (no registry file in the repo); Ray Train wrote under
        # env.storage_path and its run folder is gone again.
        assert feast_db.is_file()
        assert not list((Path(ctx.workspace) / "feast").rglob("registry.db"))
        assert storage.is_dir() and list(storage.iterdir()) == []

        # The replica downloaded the version and its compiled library (serving.predictor,
        # checked and logged beside the UBJ at deploy) from the server into its node's cache.
        cache = (Path(tempfile.gettempdir()) / f"loom-models-{os.getuid()}"
                 / hashlib.sha256(url.encode()).hexdigest()[:12] / "churn" / version)
        assert (cache / "model.ubj").is_file() and (cache / "treelite-model.so").is_file()
        assert deploy["predictor"]["name"] == "treelite"
        assert "loom/treelite-model.so" in {a.path for a in client.list_artifacts(got.run_id, "loom")}

        # And answers with it, on the features Feast serves.
        model = resolve_model(url, "churn", version)
        booster = xgboost.Booster(model_file=str(model["model_path"]))
        online = H.online_rows(ctx, ["C000042"])
        want = H.predict_rows(booster, online, ctx.recipe.feature_names())
        status, _, body = H.call(deploy["url"], {"entities": {"customer_id": "C000042"}}, KEY)
        assert status == 200, body
        assert body["model_version"] == version and body["degraded"] is False
        assert body["probability"] == pytest.approx(float(want[0]), abs=1e-6)

        # Applied: the same recipe plans no changes against the remote stores.
        assert not api.plan(args).plan.has_changes

        # loom optimize: the table at every batch size, from the library MLflow holds.
        out = api.optimize(args)
        assert out["version"] == version and [r["rows"] for r in out["table"]] == [1, 32, 1000, 100000]
        assert all(r["xgboost_us_per_row"] > 0 and r["treelite_us_per_row"] > 0 for r in out["table"])
    finally:
        traffic.delete_app("churn")
        serve.shutdown()
