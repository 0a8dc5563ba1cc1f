"""End to end with real Feast: features applied and materialized, answers use the online store."""

from __future__ import annotations

import pytest

import serving_helpers as H

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"


def test_http_answers_use_feast_online_features(ray_session, project, monkeypatch):
    import xgboost
    from ray import serve

    from framework import api
    from framework.backends.feast.backend import FeastBackend
    from framework.backends.ray_serve import ServeBackend, runtime, traffic

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    planned = api.plan(["recipe=churn", "rollout=direct", f"serving.http.port={port}",
                        "++serving.num_cpus_per_replica=0.25"], project_dir=project)
    ctx, recipe = planned.ctx, planned.ctx.recipe
    feast = FeastBackend()
    for step in planned.plan.steps:
        if step.kind.startswith("feast."):
            ctx.outputs[step.address] = feast.apply(step, ctx)
    model = H.train_booster(project / "data", project / "model.ubj", rounds=10)
    ctx.outputs["registry.register"] = {"model_name": "churn", "version": "1",
                                        "model_uri": "models:/churn/1", "model_path": str(model)}
    runtime.ensure_serve("127.0.0.1", port)
    try:
        out = ServeBackend(stats=False).apply(planned.plan.step("serving.deploy"), ctx)
        ids = ["C000001", "C000042", "C000777"]
        online = H.online_rows(ctx, ids)
        booster = xgboost.Booster(model_file=str(model))
        want = H.predict_rows(booster, online, recipe.feature_names())
        for cid, expected in zip(ids, want):
            status, _, body = H.call(out["url"], {"entities": {"customer_id": cid}}, KEY)
            assert status == 200, body
            assert body["probability"] == pytest.approx(float(expected), abs=1e-6)
        # The request's features override Feast's: a changed value changes the answer.
        row = dict(online[0], support_calls=online[0]["support_calls"] + 7)
        (changed,) = H.predict_rows(booster, [row], recipe.feature_names())
        status, _, body = H.call(out["url"], {"entities": {"customer_id": ids[0]},
                                              "features": {"support_calls": row["support_calls"]}}, KEY)
        assert body["probability"] == pytest.approx(changed, abs=1e-6)
    finally:
        traffic.delete_app("churn")
        serve.shutdown()
