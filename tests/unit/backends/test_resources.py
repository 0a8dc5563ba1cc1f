"""`loom plan` refuses a recipe whose CPU demands cannot fit the embedded Ray head (issue 13).

Before: `loom launch recipe=churn serving.replicas=2 ...` planned fine and then sat in Ray Train's
``fit()`` for 13 minutes waiting for {'CPU': 1.0}. Now the plan fails with the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework import api
from framework.backends import ray_cluster, resources
from framework.backends.preflight import RESOURCES_TITLE
from framework.errors import RecipeError
from framework.loading import load_recipe


def recipe(*overrides: str):
    return load_recipe(["recipe=churn", *overrides]).recipe


def serving_state(workspace: Path, replicas: int = 2, rollout: str | None = "running",
                  others: dict[str, int] | None = None) -> None:
    """A workspace state where churn (and ``others``) are deployed, churn mid-rollout."""
    recipes = {"churn": {"model_id": "churn", "app_name": "churn", "steps": {
        "serving.deploy": {"kind": "serving.deploy", "attrs": {"replicas": replicas}}}}}
    for name, n in (others or {}).items():
        recipes[name] = {"model_id": name, "app_name": name, "steps": {
            "serving.deploy": {"kind": "serving.deploy", "attrs": {"replicas": n}}}}
    rollouts = {"churn": {"status": rollout}} if rollout else {}
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "state.json").write_text(json.dumps({"format": 2, "recipes": recipes,
                                                      "rollouts": rollouts}))


@pytest.fixture
def head(monkeypatch, tmp_path: Path):
    """A running workspace head with 2 CPUs, as far as the check can tell (no Ray started)."""
    workspace = tmp_path / "ws"
    monkeypatch.setattr(ray_cluster, "status", lambda ws: {"running": True})
    monkeypatch.setattr(ray_cluster, "recorded_num_cpus", lambda ws: 2.0)
    return workspace


def test_training_behind_a_running_rollout_does_not_fit(project: Path, head: Path) -> None:
    # The case: 2 replicas + 1 surge at 0.5 CPU while a rollout runs, plus the gateway.
    serving_state(head, replicas=2)
    problems = resources.resource_problems(recipe(), {"training.train"}, head)
    assert [p.path for p in problems] == ["training.scaling.cpus_per_worker"]
    text = problems[0].render()
    assert "Training needs 1 worker(s) x 1 CPU = 1 CPU" in text
    assert "the Ray head has 2 CPUs (the running workspace head)" in text
    assert "1.61 held by churn: 3 replicas x 0.5 (1 surge: a rollout is running) = 1.5" in text
    assert "gateway = 0.1" in text and "0.39 free. Ray Train would wait for them forever." in text
    assert "env.ray_num_cpus" in text and "`loom rollout status recipe=churn`" in text


def test_training_fits_beside_one_replica_and_no_rollout(project: Path, head: Path) -> None:
    serving_state(head, replicas=1, rollout="succeeded")  # 0.5 + gateway 0.1 + controller 0.01
    assert resources.resource_problems(recipe(), {"training.train", "serving.deploy"}, head) == []
    serving_state(head, replicas=2, rollout="succeeded")  # 1.11 held: 0.89 free < 1
    [problem] = resources.resource_problems(recipe(), {"training.train"}, head)
    assert "0.89 free" in problem.message


def test_serving_counts_other_models_and_its_own_surge(project: Path, head: Path) -> None:
    serving_state(head, replicas=1, rollout=None, others={"fraud": 2})
    problems = resources.resource_problems(recipe("serving.replicas=2"), {"serving.deploy"}, head)
    assert [p.path for p in problems] == ["serving.replicas"]
    text = problems[0].render()
    assert "Got 2. Serving needs 2 replica(s) + 1 surge x 0.5 CPU" in text
    assert "= 1.61 CPU" in text and "fraud: 2 replicas x 0.5 = 1" in text and "0.99 free" in text


def test_a_head_not_running_is_sized_from_the_recipe(project: Path, tmp_path: Path) -> None:
    serving_state(tmp_path / "ws")  # a stopped head serves nothing, whatever the state says
    r = recipe("++env.ray_num_cpus=1", "training.scaling.num_workers=2")
    problems = resources.resource_problems(r, {"training.train"}, tmp_path / "ws")
    assert len(problems) == 1
    assert "2 worker(s) x 1 CPU = 2 CPU, but the Ray head has 1 CPUs (env.ray_num_cpus): 1 free" \
        in problems[0].message
    assert resources.resource_problems(recipe("++env.ray_num_cpus=2"), {"training.train"},
                                       tmp_path / "ws") == []


def test_a_remote_cluster_and_plans_without_ray_steps_are_not_checked(project: Path, head: Path) -> None:
    import socket

    serving_state(head, replicas=20)
    with socket.socket() as listening:  # something answers there: its size is not checked
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert resources.resource_problems(recipe(f"env.ray_address=ray://127.0.0.1:{port}"),
                                           {"training.train"}, head) == []
    assert resources.resource_problems(recipe(), {"feast.view", "registry.register"}, head) == []


def test_a_remote_cluster_that_does_not_answer_fails_the_plan_at_once(project: Path, head: Path,
                                                                       capsys) -> None:
    # Before: the apply did its Feast steps, then ray.init retried the address for minutes.
    import socket
    import time

    from framework.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (problem,) = resources.resource_problems(recipe(f"env.ray_address=127.0.0.1:{closed}"),
                                             {"serving.deploy"}, head)
    assert problem.path == "env.ray_address" and "connection refused" in problem.message
    started = time.monotonic()
    code = main(["launch", "recipe=churn", f"env.ray_address=127.0.0.1:{closed}"])
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - started < 10
    assert RESOURCES_TITLE in err and f"Cannot reach the Ray cluster at 127.0.0.1:{closed}" in err
    assert "env.ray_address" in err and "Traceback" not in err
    assert not (project / ".loom" / "state.json").exists()  # nothing applied
    assert resources.resource_problems(recipe("env.ray_address=no-such-host.invalid:6379"),
                                       {"training.train"}, head)[0].path == "env.ray_address"


def test_tuning_needs_one_trial_to_fit(project: Path, head: Path) -> None:
    serving_state(head, replicas=3, rollout=None)
    problems = resources.resource_problems(recipe(), {"training.tune"}, head)
    assert "A tuning trial needs training.scaling.cpus_per_worker = 1 CPU" in problems[0].message
    assert resources.resource_problems(recipe("training.scaling.cpus_per_worker=0.25"),
                                       {"training.tune"}, head) == []


def test_loom_plan_fails_with_the_numbers(project: Path) -> None:
    with pytest.raises(RecipeError) as info:
        api.plan(["recipe=churn", "++env.ray_num_cpus=1", "training.scaling.num_workers=3"])
    err = info.value
    assert err.title == RESOURCES_TITLE
    [problem] = err.problems
    assert problem.path == "training.scaling.cpus_per_worker" and problem.file
    assert "3 worker(s) x 1 CPU = 3 CPU, but the Ray head has 1 CPUs" in problem.render()


def test_the_wait_bound_is_a_scaling_field_that_retrains_nothing() -> None:
    from framework.spec.training import Scaling

    assert Scaling().resource_wait_s == 300
    assert "resource_wait_s" not in Scaling().model_dump()  # the default fingerprints as before
    assert Scaling(resource_wait_s=60).model_dump()["resource_wait_s"] == 60
    with pytest.raises(ValueError):
        Scaling(resource_wait_s=0)


def test_gpu_workers_on_a_head_without_gpus_fail_the_plan(project: Path, head: Path,
                                                          monkeypatch) -> None:
    # Before: Ray Train waited for {'GPU': 1} until training.scaling.resource_wait_s gave up.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    r = recipe("scaling=cluster_gpu", "training.scaling.cpus_per_worker=0.1")
    (problem,) = resources.resource_problems(r, {"training.train"}, head)
    assert problem.path == "training.scaling.use_gpu"
    assert "asks for 4 GPU(s) (one per worker), but the workspace's Ray head has 0" in problem.message
    assert "use_gpu: false" in problem.hint
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert resources.resource_problems(r, {"training.train"}, head) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resources.resource_problems(r, {"training.tune"}, head) == []  # one trial, one GPU
