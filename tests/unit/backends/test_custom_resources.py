"""Custom Ray resources pin training workers and serving replicas to chosen nodes (issue 17):
``training.scaling.resources_per_worker`` and ``serving.resources`` reach Ray Train, Tune, Serve
and KubeRay; a name no node has fails at once, naming the key; the embedded head refuses them at
plan; recipes without them fingerprint as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from framework.backends import cluster_wait, resources
from framework.backends.ray_serve.config import gateway_config
from framework.backends.ray_train._core import TrainJob, _bundle
from framework.errors import BackendError
from framework.loading import load_recipe
from framework.serving.settings import AppArgs, deployment_options
from framework.spec.serving import Serving
from framework.spec.training import Scaling


def recipe(*overrides: str):
    return load_recipe(["recipe=churn", *overrides]).recipe


@pytest.mark.parametrize("bad, words", [
    ({"CPU": 1}, "built-in resources: use the CPU keys"),
    ({"gpu": 1}, "use training.scaling.use_gpu"),
    ({"memory": 1e9}, "built-in"),
    ({"has space": 1}, "is not a Ray resource name"),
    ({"node2": 0}, "must be above 0"),
])
def test_builtin_names_odd_names_and_zero_amounts_are_refused(bad, words) -> None:
    for model, key in ((Serving, "resources"), (Scaling, "resources_per_worker")):
        with pytest.raises(ValidationError, match=words):
            model(**{key: bad})


def test_recipes_without_custom_resources_dump_as_before() -> None:
    # Adding the keys redeploys and retrains nothing: empty maps are not in the dump.
    assert "resources" not in Serving().model_dump()
    assert "resources_per_worker" not in Scaling().model_dump()
    assert Serving(resources={"serve_node": 1}).model_dump()["resources"] == {"serve_node": 1.0}


def test_replicas_and_workers_reserve_them(project: Path) -> None:
    r = recipe("+serving.resources={serve_node: 1}",
               "+training.scaling.resources_per_worker={train_node: 0.5}")
    options = deployment_options(AppArgs.model_validate(
        {"model_id": "churn", "task": "binary", "feature_names": ["a"], "serving": r.serving}))
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "resources": {"serve_node": 1.0}}
    job = TrainJob(params={}, num_boost_round=1, early_stopping_rounds=None, num_workers=2,
                   cpus_per_worker=1.0, use_gpu=False, max_failures=0, storage_path="/tmp",
                   name="t", resources=dict(r.training.scaling.resources_per_worker))
    assert _bundle(job) == {"CPU": 1.0, "train_node": 0.5}
    plain = deployment_options(AppArgs.model_validate(
        {"model_id": "churn", "task": "binary", "feature_names": ["a"]}))
    assert plain["ray_actor_options"] == {"num_cpus": 0.5}


def test_the_gateway_runs_on_the_head() -> None:
    # Losing a worker node never takes the gateway (and its retries) with it.
    options = gateway_config("/")["deployments"][0]["ray_actor_options"]
    assert options["resources"] == {"node:__internal_head__": 0.001}


def test_the_embedded_head_refuses_them_at_plan(project: Path, tmp_path: Path) -> None:
    r = recipe("+serving.resources={serve_node: 1}",
               "+training.scaling.resources_per_worker={train_node: 1}")
    problems = resources.resource_problems(r, {"training.train", "serving.deploy"}, tmp_path / "ws")
    assert [p.path for p in problems][:2] == ["training.scaling.resources_per_worker",
                                              "serving.resources"]
    assert "has no custom resources" in problems[0].message and "env.ray_address" in problems[0].hint
    assert resources.resource_problems(r, {"registry.register"}, tmp_path / "ws") == []


def _nodes(monkeypatch, *resources_of_nodes: dict[str, float]) -> None:
    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [
        {"Alive": True, "Resources": {"CPU": 2.0, "node:10.0.0.1": 1.0, **res}}
        for res in resources_of_nodes] + [{"Alive": False, "Resources": {"gone": 5.0}}])


def test_a_resource_no_live_node_has_fails_at_once_naming_the_key(monkeypatch) -> None:
    _nodes(monkeypatch, {}, {"serve_node": 1.0})
    cluster_wait.require_resources({"CPU": 9.0, "serve_node": 1.0}, "serving.resources",
                                          "each replica")  # CPUs are waited for, not refused
    with pytest.raises(BackendError) as err:
        cluster_wait.require_resources({"CPU": 1.0, "gone": 1.0},
                                              "training.scaling.resources_per_worker",
                                              "each training worker")
    text = str(err.value)
    assert text.startswith("training.scaling.resources_per_worker asks 1 of the custom resource "
                           "'gone' for each training worker, but no node of the cluster has it")
    assert "(custom resources on the cluster: serve_node)" in text
    assert "ray start --resources='{\"gone\": 1}'" in text
    with pytest.raises(BackendError, match="its largest node has 1"):
        cluster_wait.require_resources({"serve_node": 2.0}, "serving.resources", "each replica")


def test_kuberay_pods_offer_what_the_recipe_asks(project: Path, tmp_path: Path, monkeypatch) -> None:
    from test_kuberay_export import _export, _kind

    files = _export(tmp_path, "+training.scaling.resources_per_worker={train_node: 1}",
                    "+serving.resources={serve_node: 0.5}", "serving.replicas=2")
    [train] = _kind(files, "RayJob")["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert json.loads(json.loads(train["rayStartParams"]["resources"])) == {"train_node": 1.0}
    [serve] = _kind(files, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    # Two 0.5-CPU replicas per 1-CPU pod: each pod offers both replicas' serve_node.
    assert json.loads(json.loads(serve["rayStartParams"]["resources"])) == {"serve_node": 1.0}


def test_gpu_workers_on_a_cluster_without_gpus_fail_at_once_unless_it_autoscales(monkeypatch) -> None:
    # Before: Ray Train waited training.scaling.resource_wait_s (300 s) for {'GPU': 1}.
    _nodes(monkeypatch, {}, {"serve_node": 1.0})
    monkeypatch.setattr(cluster_wait, "_autoscaler_can_add", lambda name, amount: False)
    with pytest.raises(BackendError) as err:
        cluster_wait.require_resources({"CPU": 1.0, "GPU": 1.0}, "training.scaling.resources_per_worker",
                                       "each training worker")
    text = str(err.value)
    assert text.startswith("training.scaling.use_gpu asks 1 GPU for each training worker, but no "
                           "node of the cluster has it and no autoscaler can add one")
    assert "set training.scaling.use_gpu: false" in text
    # A cluster whose autoscaler has a GPU node type gets the node on demand: no error.
    monkeypatch.setattr(cluster_wait, "_autoscaler_can_add", lambda name, amount: name == "GPU")
    cluster_wait.require_resources({"CPU": 1.0, "GPU": 1.0}, "k", "each training worker")
    _nodes(monkeypatch, {"GPU": 1.0})
    monkeypatch.setattr(cluster_wait, "_autoscaler_can_add", lambda name, amount: False)
    cluster_wait.require_resources({"CPU": 1.0, "GPU": 1.0}, "k", "each training worker")


def test_without_an_autoscaler_nothing_can_be_added(ray_session) -> None:
    # The session's local Ray has no autoscaler config: a missing resource stays missing.
    assert cluster_wait._autoscaler_can_add("GPU", 1) is False
    with pytest.raises(BackendError, match="no node of the cluster has it"):
        cluster_wait.require_resources({"never_offered": 1.0}, "serving.resources", "each replica")
