"""One contract for the serving backends: the fake and the real Ray Serve one behave alike."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "serving"))
import serving_helpers as H  # noqa: E402

from framework.backends.base import RunContext  # noqa: E402
from framework.backends.fake import FakeBackend  # noqa: E402
from framework.compile.compiler import compile_steps  # noqa: E402

MODEL_ID = "churn_contract"


@pytest.fixture(scope="module")
def models(tmp_path_factory, sample_data):
    out = tmp_path_factory.mktemp("contract_models")
    return {v: H.train_booster(sample_data, out / f"m{v}.ubj", rounds=3 + int(v), seed=int(v))
            for v in ("1", "2")}


@pytest.fixture(scope="module")
def serve_backend(request):
    """ServeBackend on the session's Ray, Serve on a free 127.0.0.1 port, shut down afterwards."""
    request.getfixturevalue("ray_session")
    from ray import serve

    from framework.backends.ray_serve import ServeBackend, runtime, traffic

    runtime.ensure_serve("127.0.0.1", H.free_port())
    features = {"type": "memory", "path": str(request.getfixturevalue("sample_data") / "churn" /
                                               "features.parquet"), "timestamp_field": "event_timestamp"}
    yield ServeBackend(features=features, stats=False)
    traffic.delete_app(MODEL_ID)
    serve.shutdown()


@pytest.fixture(params=["fake", pytest.param("ray_serve", marks=pytest.mark.integration)])
def backend(request):
    return FakeBackend() if request.param == "fake" else request.getfixturevalue("serve_backend")


def _context(tmp_path: Path, model: dict) -> tuple[RunContext, dict]:
    recipe = H.compose_recipe(overrides=[
        "rollout=direct", f"registry.model_name={MODEL_ID}", "++serving.route_prefix=/contract",
        "++serving.num_cpus_per_replica=0.25"])
    steps = {s.address: s for s in compile_steps(recipe, {})}
    ctx = RunContext(recipe=recipe, project_dir=ROOT, workspace=tmp_path / "ws",
                     outputs={"registry.register": model})
    return ctx, steps


def _model(models, version):
    return {"model_name": MODEL_ID, "version": version, "model_uri": f"models:/{MODEL_ID}/{version}",
            "model_path": str(models[version])}


def test_deploy_observe_promote_delete(backend, models, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_API_KEY", "test-key-0123456789")
    ctx, steps = _context(tmp_path, _model(models, "1"))
    deploy, direct = steps["serving.deploy"], steps["rollout.direct"]
    assert backend.observe(deploy, ctx) is None
    out = backend.apply(deploy, ctx)
    json.dumps(out)
    assert backend.observe(deploy, ctx) == deploy.fingerprint
    backend.apply(direct, ctx)
    assert backend.observe(direct, ctx) == direct.fingerprint
    backend.delete(deploy.address, ctx)
    assert backend.observe(deploy, ctx) is None


@pytest.mark.integration
def test_a_new_version_arrives_as_candidate_and_direct_promotes_it_in_place(
        serve_backend, models, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_API_KEY", "test-key-0123456789")
    ctx, steps = _context(tmp_path, _model(models, "1"))
    deploy, direct = steps["serving.deploy"], steps["rollout.direct"]
    first = serve_backend.apply(deploy, ctx)
    assert first["app"] == MODEL_ID and first["stable_version"] == "1"
    assert first["candidate_version"] is None
    assert first["url"].endswith(f"/contract/v1/models/{MODEL_ID}/predictions")
    body = {"entities": {"customer_id": "C000010"}}
    assert H.call(first["url"], body, "test-key-0123456789")[2]["model_version"] == "1"
    base = first["url"].split("/contract/")[0] + "/contract"

    ctx.outputs["registry.register"] = _model(models, "2")
    second = serve_backend.apply(deploy, ctx)
    assert (second["stable_version"], second["candidate_version"]) == ("1", "2")
    assert H.call(first["url"], body, "test-key-0123456789")[2]["model_version"] == "1"
    from framework.backends.ray_serve import traffic

    def replicas() -> int:
        return traffic.app_configs()[MODEL_ID]["deployments"][0]["num_replicas"]

    assert replicas() == 2  # the surge replica answers while the other is reconfigured

    promote_started = time.time()
    promoted = serve_backend.apply(direct, ctx)
    assert (promoted["stable_version"], promoted["candidate_version"]) == ("2", None)
    assert replicas() == 1  # back to the recipe's count once the candidate is stable
    config = traffic.current_user_config(MODEL_ID)
    assert config["slots"]["stable"]["version"] == "2" and config["candidate_weight"] == 0

    def answered_by_two() -> bool:
        return H.call(first["url"], body, "test-key-0123456789")[2]["model_version"] == "2"

    deadline = time.monotonic() + 60
    while not answered_by_two():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = H.call(base + "/v1/models", key="test-key-0123456789")[2]["models"][0]
    # Promoted in place: the replica answering now was running before the promotion (Serve picks
    # which of the surged replicas to stop; neither was restarted).
    assert after["replica"]["started_at"] < promote_started and after["previous"]["version"] == "1"
    assert serve_backend.observe(deploy, ctx) == deploy.fingerprint
