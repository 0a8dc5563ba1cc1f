"""`loom launch` end to end on real engines: Feast, Ray Train, MLflow, Ray Serve, over real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
IDS = ["C000001", "C000042", "C000777"]


def _args(port: int, *extra: str) -> list[str]:
    return ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
            "serving.num_cpus_per_replica=0.25", "training.model.num_boost_round=30",
            "++monitoring.log.sample_rate=1.0", "++monitoring.log.flush_s=1", *extra]


def test_launch_serves_the_registered_model_with_feast_features(ray_session, project, monkeypatch):
    import xgboost
    from ray import serve

    from framework import api
    from framework.backends.model_registry import resolve_model
    from framework.backends.model_registry.tracking import tracking_uri
    from framework.backends.ray_serve import traffic

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    port = H.free_port()
    planned = api.plan(_args(port))
    assert {s.action for s in planned.plan.steps} == {"create"}
    try:
        api.apply(planned)
        ctx, recipe = planned.ctx, planned.ctx.recipe
        deploy = ctx.outputs["serving.deploy"]
        register = ctx.outputs["registry.register"]

        # The served answers equal the registered model on Feast's online features.
        model = resolve_model(tracking_uri(recipe, ctx.workspace), "churn", register["version"])
        booster = xgboost.Booster(model_file=str(model["model_path"]))
        online = H.online_rows(ctx, IDS)
        assert all(v is not None for row in online for v in row.values())
        want = H.predict_rows(booster, online, recipe.feature_names())
        asked = []
        for cid, expected in zip(IDS, want):
            status, _, body = H.call(deploy["url"], {"entities": {"customer_id": cid}}, KEY)
            assert status == 200, body
            assert body["probability"] == pytest.approx(float(expected), abs=1e-6)
            assert body["model_version"] == register["version"] and body["degraded"] is False
            assert body["prediction"] == ("high_risk" if expected >= 0.5 else "low_risk")
            asked.append(body["request_id"])

        # Monitoring: the version's training profile sits beside its booster for the replicas'
        # drift bins, and every answer (sample_rate 1) reaches the prediction log with its id.
        assert Path(register["profile_path"]).is_file()
        assert set(asked) <= _logged_ids(Path(ctx.workspace) / "predictions" / "churn")

        # Applied: the same recipe plans no changes; a serving-only change does not retrain.
        assert not api.plan(_args(port)).plan.has_changes
        changes = {s.address for s in api.plan(_args(port, "serving.cache.ttl_s=5")).plan.changes}
        assert changes == {"serving.deploy", "rollout.direct"}

        # A new model version: retrains, registers version 2, and `direct` puts it in front.
        second = api.plan(_args(port, "training.model.params.max_depth=2"))
        assert "training.train" in {s.address for s in second.plan.changes}
        api.apply(second)
        assert second.ctx.outputs["registry.register"]["version"] != register["version"]
        status, _, body = H.call(deploy["url"], {"entities": {"customer_id": IDS[0]}}, KEY)
        assert status == 200 and body["model_version"] == second.ctx.outputs["registry.register"]["version"]
    finally:
        traffic.delete_app("churn")
        serve.shutdown()


def _logged_ids(directory: Path, timeout_s: float = 30.0) -> set[str]:
    """Request ids in the prediction log, once a flush (flush_s=1) has written them."""
    import time

    import pandas as pd

    deadline = time.monotonic() + timeout_s
    ids: set[str] = set()
    while time.monotonic() < deadline:
        files = sorted(directory.rglob("*.parquet"))
        ids = set(pd.concat(pd.read_parquet(f) for f in files)["request_id"]) if files else set()
        if len(ids) >= len(IDS):
            return ids
        time.sleep(0.5)
    return ids
