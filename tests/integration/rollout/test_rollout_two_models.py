"""Two rollouts at once on one real Serve: a canary of one model, a blue-green of another, under load."""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import bench_rollout as B  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
MODELS = {"alpha": "canary", "beta": "blue_green"}


@pytest.fixture(scope="module")
def apps(ray_session, sample_data, tmp_path_factory):
    """alpha and beta on Serve, each with version 1 stable and version 2 loaded at 0%."""
    from ray import serve

    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import runtime, traffic

    os.environ["LOOM_API_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("two-rollouts")
    runtime.ensure_serve("127.0.0.1", B.free_port())
    host, port = runtime.http_address()
    models = {"1": B.train_booster(sample_data, tmp / "m1.ubj", rounds=5, depth=3, seed=1),
              "2": B.train_booster(sample_data, tmp / "m2.ubj", rounds=12, depth=4, seed=2)}
    features = {"type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    for model_id in MODELS:
        recipe = B.compose_recipe([f"registry.model_name={model_id}", "serving.cache.enabled=false",
                                   "++serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0"])
        args = cfg.app_args(recipe, tmp, features=features)
        user_config = {"slots": {"stable": B.demo_slot(models, "1"),
                                 "candidate": B.demo_slot(models, "2")},
                       "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}
        traffic.deploy_app(cfg.app_config(model_id, args, user_config))
    yield {"base": f"http://{host}:{port}", "tmp": tmp}
    from framework.rollout import actor
    from framework.serving.stats import drop_stats

    for model_id in MODELS:
        actor._stop_actor(model_id)
        traffic.delete_app(model_id)
        drop_stats(model_id)
    serve.shutdown()


def _spec(strategy: str) -> Any:
    from framework.rollout.phases import spec_from_recipe
    from framework.spec.rollout import BlueGreen, Canary

    analysis = {"min_requests": 10, "max_prediction_psi": 50.0, "max_p99_latency_ms": 2000,
                "max_latency_ratio": 10}
    if strategy == "canary":
        return spec_from_recipe(Canary.model_validate(
            {"strategy": "canary", "steps": [20, 60, 100], "interval_s": 2, "failure_limit": 2,
             "analysis": analysis}))
    return spec_from_recipe(BlueGreen.model_validate(
        {"strategy": "blue_green", "interval_s": 2, "bake_time_s": 3, "shadow_percent": 100,
         "failure_limit": 2, "analysis": analysis}))


def _is_subsequence(seen: list[float], order: list[float]) -> bool:
    it = iter(order)
    return all(any(w == x for x in it) for w in seen)


def test_a_canary_and_a_blue_green_at_once_never_undo_each_others_weights(apps, tmp_path):
    from framework.backends.ray_serve import traffic
    from framework.rollout import actor
    from framework.rollout.engines import real_ports
    from framework.rollout.fakes import FilePromoter
    from framework.rollout.state import StateStore

    ws = tmp_path / "ws"  # one workspace, as in one project: both rollouts write its state file
    stop, seen = threading.Event(), {m: [] for m in MODELS}

    def sample() -> None:  # the live weight of each app, as often as the controller allows
        while not stop.is_set():
            for model_id in MODELS:
                weight = traffic.current_user_config(model_id)["candidate_weight"]
                if not seen[model_id] or seen[model_id][-1] != weight:
                    seen[model_id].append(weight)
            time.sleep(0.05)

    loads = [B.spawn_load(f"{apps['base']}/v1/models/{m}/predictions", tmp_path / f"{m}.jsonl",
                          rps=50, n=6000, key=KEY, threads=4, stop_file=tmp_path / "stop")
             for m in MODELS]
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        time.sleep(1.0)
        sampler.start()
        for model_id, strategy in MODELS.items():
            promoter = FilePromoter(str(tmp_path / f"{model_id}-registry.json"), champion="1")
            actor.start(ws, model_id, _spec(strategy),
                        functools.partial(real_ports, model_id, promoter))
        finals = {m: actor.wait(ws, m, progress=lambda line: None, timeout_s=120) for m in MODELS}
    finally:
        stop.set()
        (tmp_path / "stop").touch()
        codes = [p.wait(timeout=180) for p in loads]
    assert codes == [0, 0]
    assert {m: f["status"] for m, f in finals.items()} == {"alpha": "promoted", "beta": "promoted"}
    for model_id in MODELS:
        store = StateStore(ws, model_id)
        ordered = [r["weight"] for r in store.read_audit() if r["event"] == "traffic"]
        # every live weight sampled is one its own controller set, in the order it set them:
        # a lost update would show an older weight coming back
        assert _is_subsequence(seen[model_id], [0.0, *ordered]), (model_id, seen[model_id], ordered)
        assert traffic.current_user_config(model_id)["slots"]["stable"]["version"] == "2"
        records = B.read_records(tmp_path / f"{model_id}.jsonl")
        assert records and [r for r in records if r["status"] != 200] == []
