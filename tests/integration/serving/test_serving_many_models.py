"""Many models on one Serve: each at its own route, the gateway for all, no lost traffic update."""

from __future__ import annotations

import os
import threading

import pytest

import serving_helpers as H

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
MODELS = ("alpha", "beta")


@pytest.fixture(scope="module")
def apps(ray_session, sample_data, tmp_path_factory):
    """Two churn-shaped models, ``alpha`` and ``beta``, each its own Serve app, and the gateway."""
    from ray import serve

    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import runtime, traffic

    os.environ["LOOM_API_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("many")
    runtime.ensure_serve("127.0.0.1", H.free_port())
    host, port = runtime.http_address()
    features = {"type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    slots = {}
    for i, model_id in enumerate(MODELS):
        recipe = H.compose_recipe(overrides=[f"registry.model_name={model_id}",
                                             "++serving.num_cpus_per_replica=0.2"])
        paths = [H.train_booster(sample_data, tmp / f"{model_id}{v}.ubj", rounds=3 + v, seed=i + v)
                 for v in (1, 2)]
        slots[model_id] = [{"version": str(v), "model_path": str(p), "model_uri": ""}
                           for v, p in zip((1, 2), paths)]
        user_config = {"slots": {"stable": slots[model_id][0], "candidate": slots[model_id][1]},
                       "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}
        args = cfg.app_args(recipe, tmp, features=features)
        traffic.deploy_app(cfg.app_config(model_id, args, user_config))
    traffic.ensure_gateway("/")
    yield {"base": f"http://{host}:{port}", "slots": slots}
    for model_id in MODELS:
        traffic.delete_app(model_id)
    assert traffic.drop_gateway_if_unused("/")
    serve.shutdown()


def test_each_model_answers_on_its_own_route_and_through_the_gateway(apps):
    body = {"entities": {"customer_id": "C000042"}}
    for model_id in MODELS:
        status, _, direct = H.call(f"{apps['base']}/v1/models/{model_id}/predictions", body, KEY)
        assert status == 200 and direct["model_id"] == model_id, direct
        status, _, routed = H.call(f"{apps['base']}/v1/predictions", {"model_id": model_id, **body},
                                   KEY)
        assert status == 200 and routed["model_id"] == model_id, routed
        assert routed["probability"] == direct["probability"]
    status, _, listed = H.call(f"{apps['base']}/v1/models", key=KEY)
    assert status == 200 and [m["model_id"] for m in listed["models"]] == list(MODELS)
    status, _, unknown = H.call(f"{apps['base']}/v1/predictions", {"model_id": "gamma", **body}, KEY)
    assert status == 404 and "gamma" in unknown["error"]["message"]


def test_concurrent_traffic_changes_of_two_models_lose_no_update(apps):
    # Serve takes its config whole: without the config lock, one model's change written back
    # from a stale read undoes the other's (a rollback that just happened, for instance).
    from framework.backends.ray_serve import traffic

    errors: list[BaseException] = []

    def walk(model_id: str) -> None:
        try:
            stable, candidate = apps["slots"][model_id]
            base = int(traffic.current_user_config(model_id)["config_version"])
            for i, weight in enumerate([10, 30, 50, 0, 20, 40, 0], start=1):
                config = {"slots": {"stable": stable, "candidate": candidate},
                          "candidate_weight": weight, "shadow_percent": 0,
                          "config_version": base + i}
                traffic.update_user_config(model_id, config)  # checks its own change is live
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=walk, args=(m,)) for m in MODELS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    for model_id in MODELS:
        assert traffic.current_user_config(model_id)["candidate_weight"] == 0


def test_two_projects_share_one_cluster_without_colliding(apps, sample_data, tmp_path, monkeypatch):
    from framework.backends.base import RunContext
    from framework.backends.ray_serve import traffic
    from framework.backends.ray_serve.backend import ServeBackend
    from framework.compile.compiler import compile_steps
    from framework.errors import BackendError
    from framework.serving.stats import actor_name

    monkeypatch.setenv("LOOM_API_KEY", KEY)
    features = {"type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    backend = ServeBackend(features=features)
    model = {"model_name": "churn", "version": "1", "model_uri": "",
             "model_path": apps["slots"]["alpha"][0]["model_path"]}

    def deploy(project: str, prefix: str) -> dict:
        recipe = H.compose_recipe(overrides=[f"env.project={project}", f"++serving.route_prefix={prefix}",
                                             "rollout=direct", "++serving.num_cpus_per_replica=0.2",
                                             "serving.surge_replicas=0"])
        step = next(s for s in compile_steps(recipe, {}) if s.kind == "serving.deploy")
        ctx = RunContext(recipe=recipe, project_dir=tmp_path, workspace=tmp_path / project,
                         outputs={"registry.register": model})
        return backend.apply(step, ctx)

    try:
        a, b = deploy("teama", "/teama"), deploy("teamb", "/teamb")
        assert (a["app"], b["app"]) == ("teama-churn", "teamb-churn")
        body = {"entities": {"customer_id": "C000042"}}
        for out, prefix in ((a, "/teama"), (b, "/teamb")):
            status, _, direct = H.call(out["url"], body, KEY)
            assert status == 200 and direct["model_id"] == "churn", direct
            status, _, listed = H.call(f"{apps['base']}{prefix}/v1/models", key=KEY)
            assert [m["model_id"] for m in listed["models"]] == ["churn"]  # its own project only
        names = set(traffic.app_configs())
        assert {"teama-churn", "teamb-churn", "alpha", "beta"} <= names
        # each app ships samples to its own stats actor (none of the other project's)
        assert actor_name("teama-churn") != actor_name("teamb-churn")
        with pytest.raises(BackendError, match="already served by Serve application 'teama-churn'"):
            deploy("teamc", "/teama")
        assert "teamc-churn" not in traffic.app_configs()
    finally:
        for app in ("teama-churn", "teamb-churn"):
            traffic.delete_app(app)
        for prefix in ("/teama", "/teamb"):
            traffic.drop_gateway_if_unused(prefix)
