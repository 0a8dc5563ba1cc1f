"""The exported Serve config, the deploy/promote slot logic, and port checks."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "serving"))
import serving_helpers as H  # noqa: E402

from framework.backends import ray_cluster  # noqa: E402
from framework.backends.ray_serve import config as cfg  # noqa: E402
from framework.backends.ray_serve.backend import _next_user_config, promote_candidate  # noqa: E402

MODEL = {"version": "3", "model_path": "/abs/model.ubj", "model_uri": "models:/churn/3"}


def test_serve_config_is_a_valid_deploy_schema_on_localhost(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_API_KEY", "the-secret-key")
    recipe = H.compose_recipe()
    config = cfg.serve_config(recipe, tmp_path, cfg.initial_user_config(MODEL))
    schema = cfg.validate_config(config)
    assert schema.http_options.host == "127.0.0.1"
    app, gateway = schema.applications
    assert app.import_path == "framework.serving.app:build_app" and app.name == "churn"
    # each model at its own prefix; the gateway beside them answers /v1/predictions and /v1/models
    assert app.route_prefix == "/v1/models/churn"
    assert gateway.import_path == "framework.serving.gateway:build_gateway"
    assert gateway.route_prefix == "/v1" and gateway.args["models_prefix"] == "/v1/models"
    deployment = app.deployments[0]
    assert deployment.user_config["slots"]["stable"]["version"] == "3"
    assert deployment.max_ongoing_requests == 128   # 2x: the replica answers the excess with a 503
    assert app.args["features"]["repo_dir"] == str(tmp_path.resolve() / "feast" / "churn")
    assert app.args["entity_keys"] == {"customer_id": "string"}
    text = json.dumps(config)
    assert "the-secret-key" not in text and "0.0.0.0" not in text


def test_autoscaling_recipe_sets_autoscaling_not_replicas(tmp_path):
    recipe = H.compose_recipe(overrides=["serving=autoscaling"])
    deployment = cfg.serve_config(recipe, tmp_path, cfg.initial_user_config(MODEL))[
        "applications"][0]["deployments"][0]
    assert deployment["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in deployment
    assert deployment["ray_actor_options"] == {"num_cpus": 0.25}


def test_first_deploy_is_stable_a_new_version_is_a_weight_zero_candidate():
    first = _next_user_config(None, MODEL)
    assert first["slots"] == {"stable": {"version": "3", "model_path": "/abs/model.ubj",
                                         "model_uri": "models:/churn/3"}, "candidate": None,
                              "previous": None}
    assert _next_user_config(first, MODEL) is first
    second = _next_user_config(first, {**MODEL, "version": "4", "model_path": "/abs/m4.ubj"})
    assert second["slots"]["candidate"]["version"] == "4" and second["candidate_weight"] == 0
    assert second["config_version"] == first["config_version"] + 1
    promoted = promote_candidate(second)
    assert promoted["slots"]["stable"]["version"] == "4" and promoted["slots"]["candidate"] is None
    assert promoted["slots"]["previous"]["version"] == "3"
    assert promote_candidate(promoted) is promoted


def test_going_back_to_the_stable_versions_recipe_unloads_a_rolled_back_candidate():
    first = _next_user_config(None, MODEL)
    rejected = _next_user_config(first, {**MODEL, "version": "4", "model_path": "/abs/m4.ubj"})
    back = _next_user_config(rejected, MODEL)  # the rollout of 4 rolled back: weight 0, still loaded
    assert back["slots"]["stable"]["version"] == "3" and back["slots"]["candidate"] is None
    assert back["config_version"] == rejected["config_version"] + 1
    # While a rollout runs its candidate stays: the controller owns it.
    assert _next_user_config(rejected, MODEL, rollout_running=True) is rejected


def test_a_slot_carries_its_versions_contract_through_the_user_config():
    contract = {"major": 2, "task": "regression", "features": [{"name": "x", "type": "float64"}]}
    doc = _next_user_config(None, {**MODEL, "contract": contract})
    assert doc["slots"]["stable"]["contract"]["task"] == "regression"
    assert doc["slots"]["stable"]["contract"]["major"] == 2


def test_a_taken_port_names_the_process_holding_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        holder = ray_cluster.port_holder(port)
    import os

    assert holder is not None and f"pid {os.getpid()} (" in holder


def test_long_workspaces_get_a_short_temp_dir(tmp_path):
    deep = tmp_path / ("x" * 60)
    assert len(str(ray_cluster.temp_dir(deep))) <= ray_cluster.MAX_TEMP_DIR_LEN
    assert ray_cluster.temp_dir(deep) == ray_cluster.temp_dir(deep)


def test_importing_the_backend_imports_no_sdk():
    import subprocess

    code = ("import sys, framework.backends.ray_serve, framework.backends.ray_cluster; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray','xgboost','feast','mlflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_curl_and_cli_pairs(tmp_path):
    from framework.backends.ray_serve import client
    from framework.errors import BackendError

    recipe = H.compose_recipe()
    curl = client.curl_command(recipe)
    assert "http://127.0.0.1:8000/v1/models/churn/predictions" in curl
    assert '"Authorization: Bearer $LOOM_API_KEY"' in curl and '"customer_id": "42"' in curl
    assert client.split_pairs(recipe, ["customer_id=42", "tenure_months=24"]) == (
        {"customer_id": "42"}, {"tenure_months": 24.0})
    with pytest.raises(BackendError, match="Not an entity key"):
        client.split_pairs(recipe, ["nope=1"])
    with pytest.raises(BackendError, match="Nothing answers"):
        client.predict("http://127.0.0.1:9/v1/models/churn/predictions", None, {}, {}, timeout_s=2)


def test_exported_config_is_yaml_serve_accepts(tmp_path, monkeypatch):
    import yaml

    from framework.backends.ray_serve import client

    monkeypatch.setenv("LOOM_API_KEY", "k")
    recipe = H.compose_recipe()
    path = client.write_serve_config(cfg.serve_config(recipe, tmp_path, cfg.initial_user_config(MODEL)),
                                     tmp_path / "serve.yaml")
    loaded = yaml.safe_load(path.read_text())
    assert cfg.validate_config(loaded).applications[0].args == loaded["applications"][0]["args"]


def test_launch_summary_and_export_with_a_given_model(tmp_path, monkeypatch):
    import yaml

    from framework.backends.ray_serve import commands

    monkeypatch.setenv("LOOM_API_KEY", "k")
    recipe = H.compose_recipe()
    lines = commands.launch_summary(recipe, {"url": "http://127.0.0.1:8000/v1/models/churn/predictions",
                                             "stable_version": "3", "candidate_version": None})
    assert lines[0].startswith("Endpoint: http://127.0.0.1:8000/") and "curl -s" in lines[2]
    out = commands.export_serve_config(recipe, tmp_path, tmp_path, tmp_path / "serve.yaml", model=MODEL)
    assert yaml.safe_load(out.read_text())["http_options"]["host"] == "127.0.0.1"


def test_the_curl_example_uses_a_real_entity_from_the_data(sample_data, tmp_path):
    import shutil

    from framework.backends.ray_serve import client

    shutil.copytree(sample_data, tmp_path / "data")
    curl = client.curl_command(H.compose_recipe(), project_dir=tmp_path)
    assert '"customer_id": "C000000"' in curl


@pytest.mark.parametrize("doc,where", [
    ({}, "user_config.slots"),
    ({"slots": {"stable": {"version": "1"}}}, "slots.stable.model_path"),
    ({"slots": {"stable": {"version": "1", "model_path": "/m.pkl"}}}, "model_path"),
    ({"slots": {"stable": {"version": "1", "model_path": "/m.ubj"}}, "candidate_weight": 120},
     "candidate_weight"),
    ({"slots": {"stable": {"version": "1", "model_path": "/m.ubj"}}, "weight": 5}, "weight"),
])
def test_malformed_user_config_is_refused_before_it_reaches_replicas(doc, where):
    from framework.backends.ray_serve.traffic import check_user_config
    from framework.errors import BackendError

    with pytest.raises(BackendError, match=where):
        check_user_config(doc)
    check_user_config(cfg.initial_user_config(MODEL))


def test_models_and_gateways_of_another_route_prefix_never_collide(tmp_path):
    ours = cfg.serve_config(H.compose_recipe(), tmp_path, cfg.initial_user_config(MODEL))
    theirs = cfg.serve_config(H.compose_recipe(overrides=["++serving.route_prefix=/team-b/"]),
                              tmp_path, cfg.initial_user_config(MODEL))
    routes = [a["route_prefix"] for c in (ours, theirs) for a in c["applications"]]
    assert routes == ["/v1/models/churn", "/v1", "/team-b/v1/models/churn", "/team-b/v1"]
    names = [a["name"] for c in (ours, theirs) for a in c["applications"]]
    assert names[1] != names[3]  # one gateway per prefix
    cfg.validate_config({"applications": ours["applications"] + [theirs["applications"][1]]})


def test_two_projects_on_one_cluster_share_no_engine_name(tmp_path):
    from framework.backends.model_registry.tracking import experiment_name
    from framework.rollout.actor import actor_name
    from framework.serving.stats import actor_name as stats_actor

    def names(*overrides):
        recipe = H.compose_recipe(overrides=list(overrides))
        config = cfg.serve_config(recipe, tmp_path, cfg.initial_user_config(MODEL))
        app, gateway = config["applications"]
        return {"app": app["name"], "route": app["route_prefix"], "gateway": gateway["name"],
                "gateway_route": gateway["route_prefix"], "stats": stats_actor(app["args"]["app_name"]),
                "rollout": actor_name(recipe.app_name), "feast": recipe.project,
                "experiment": experiment_name(recipe)}

    a = names("env.project=teama", "++serving.route_prefix=/teama")
    b = names("env.project=teamb", "++serving.route_prefix=/teamb")
    assert a["app"] == "teama-churn" and a["feast"] == "teama_churn"
    assert a["experiment"] == "loom/teama/churn" and a["route"] == "/teama/v1/models/churn"
    assert all(a[k] != b[k] for k in a), (a, b)
    plain = names()  # one project per cluster: the model's own names, as before
    assert (plain["app"], plain["feast"], plain["experiment"]) == ("churn", "churn", "loom/churn")
