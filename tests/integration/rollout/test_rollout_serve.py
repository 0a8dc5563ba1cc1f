"""Rollouts on real Ray Serve under real load from a second process: blue-green, canary, restart."""

from __future__ import annotations

import time

import pytest

from rollout_helpers import B, KEY, LOOSE_PSI, ROOT
from rollout_helpers import analyses as _analyses, audit as _audit, run as _run
from rollout_helpers import spec as _spec, traffic_changes as _traffic

pytestmark = pytest.mark.integration


def test_blue_green_switch_under_load_fails_nothing(app, fresh):
    fresh["reset"]()
    spec = _spec("blue_green", interval_s=2, bake_time_s=3, shadow_percent=100, failure_limit=1)
    records, final = _run(app, fresh, spec, rps=150, n=2250)
    assert final["status"] == "promoted", final["reason"]
    assert len(records) >= 2000
    assert [r for r in records if r["status"] != 200] == []
    assert {r["version"] for r in records} == {"1", "2"}
    switch = next(r for r in _traffic(fresh) if r["weight"] == 100)
    before = [r for r in records if r["t"] + r["lat_ms"] / 1000 < switch["requested_at"]]
    after = [r for r in records if r["t"] > switch["ts"] + 0.5]
    assert before and {r["version"] for r in before} == {"1"}  # shadow answers never returned
    assert after and {r["version"] for r in after} == {"2"}
    shadow = [a for a in final["last_analyses"] if a["candidate_role"] == "shadow"] or \
        [a for a in _analyses(fresh) if a["candidate_role"] == "shadow"]
    assert shadow and shadow[0]["n_candidate"] >= 20 and shadow[0]["psi"] is not None
    assert shadow[0]["n_pairs"] >= 20 and 0 <= shadow[0]["agreement"] <= 1  # with blue, per request
    assert fresh["promoter"].champion == "2"


def _replicas() -> int:
    from framework.backends.ray_serve import traffic

    return traffic.app_configs()["churn"]["deployments"][0]["num_replicas"]


def test_healthy_canary_rises_to_100_and_moves_champion(app, fresh):
    fresh["reset"]()
    assert _replicas() == 2  # the recipe's 1 + serving.surge_replicas while a candidate waits
    spec = _spec("canary", steps=[25, 50, 100], interval_s=2, failure_limit=2)
    records, final = _run(app, fresh, spec, rps=100, n=1400)
    assert final["status"] == "promoted", final["reason"]
    weights = [r["weight"] for r in _traffic(fresh)]
    assert weights == [25, 50, 100, 0]  # 0: the slots swap, version 2 is stable
    steps = [r["ts"] for r in _audit(fresh, "step")] + [_audit(fresh, "promoted")[0]["ts"]]
    assert all(b - a >= spec.interval_s for a, b in zip(steps, steps[1:]))
    assert [r for r in records if r["status"] != 200] == []
    assert fresh["promoter"].champion == "2" and fresh["promoter"].tags == {}
    assert _replicas() == 1  # the surge replica went with the promotion


def test_bad_canary_rolls_back_in_time_with_errors_only_from_candidate(app, fresh):
    from framework.rollout.status import status
    from framework.serving.stats import read_window

    fresh["reset"](error_rate=0.2)
    spec = _spec("canary", steps=[30, 60, 100], interval_s=2, failure_limit=2)
    records, final = _run(app, fresh, spec, rps=100, n=1200)
    assert final["status"] == "rolled_back"
    # What the controller recorded: the first window starts when the 30% step is live, windows
    # are back to back and interval_s long, and the failure_limit-th failed one rolls back.
    live_at = _traffic(fresh)[0]["live_at"]
    analyses = _analyses(fresh)
    windows = [(a["window_start"], a["window_end"]) for a in analyses]
    assert windows[0][0] == pytest.approx(live_at, abs=1e-3)
    assert all(end - start == pytest.approx(spec.interval_s) for start, end in windows)
    assert all(b[0] == pytest.approx(a[1]) for a, b in zip(windows, windows[1:]))
    assert [a["verdict"] for a in analyses] == ["fail"] * spec.failure_limit
    rolled = _audit(fresh, "rolled_back")[0]
    assert rolled["failures"] == spec.failure_limit and rolled["ts"] >= windows[-1][1]
    assert windows[-1][1] - live_at == pytest.approx(spec.interval_s * spec.failure_limit, abs=1e-3)
    assert _audit(fresh, "resumed") == []  # one controller from the start: no hand-over
    back = _traffic(fresh)[-1]  # candidate weight 0 is live
    assert back["weight"] == 0 and back["requested_at"] >= rolled["ts"]
    assert [r for r in records if r["status"] != 200] == []
    after = [r for r in records if r["t"] > back["ts"] + 1.0]
    assert after and all(r["version"] == "1" and not r["degraded"] for r in after)
    started = _audit(fresh, "start")[0]["ts"]
    failed = [s for s in read_window("churn", started - 1, time.time()) if not s["ok"]]
    assert failed and {s["version"] for s in failed} == {"2"}
    assert fresh["promoter"].champion == "1" and "error rate" in fresh["promoter"].tags["2"]
    s = status(fresh["ws"], "churn")
    assert "error rate" in s["reason"] and s["weights"]["candidate_weight"] == 0


def test_controller_restart_mid_rollout_resumes(app, fresh):
    import ray

    from framework.rollout import actor

    fresh["reset"]()
    spec = _spec("canary", steps=[20, 40, 60, 100], interval_s=2, failure_limit=2)

    def kill_mid_rollout() -> None:
        actor.wait(fresh["ws"], "churn", progress=lambda line: None, timeout_s=60,
                   until=lambda s: s["phase"]["index"] >= 2)
        ray.kill(actor._get_actor("churn"), no_restart=False)  # Ray restarts it

    records, final = _run(app, fresh, spec, rps=100, n=12000, until=kill_mid_rollout,
                          load_until_end=True)
    assert final["status"] == "promoted", final["reason"]
    resumed = _audit(fresh, "resumed")
    assert len(resumed) == 1  # the restart; the rollout began in the actor, with no hand-over
    weights = [r["weight"] for r in _traffic(fresh)]
    assert weights[:-1] == sorted(weights[:-1]) and weights[-1] == 0  # never started over
    # the restarted controller went on judging from the phase it was in, up to the promotion
    later = [a for a in _analyses(fresh) if a["ts"] > resumed[0]["ts"]]
    assert later and later[0]["phase"] == resumed[0]["phase"]
    assert [r for r in records if r["status"] != 200] == []


def _plan_steps(*overrides: str):
    from framework.compile.compiler import compile_steps

    recipe = B.compose_recipe(["rollout=canary", "rollout.interval_s=2", "rollout.failure_limit=2",
                               "rollout.analysis.min_requests=20",
                               f"rollout.analysis.max_prediction_psi={LOOSE_PSI}",
                               "++rollout.analysis.max_latency_ratio=10", *overrides])
    steps = compile_steps(recipe, {})
    return recipe, [s for s in steps if s.kind == "rollout.step"]


def _ctx(recipe, fresh, lines):
    from framework.backends.base import RunContext

    deploy = {"app": "churn", "stable_version": "1", "candidate_version": "2"}
    return RunContext(recipe=recipe, project_dir=ROOT, workspace=fresh["ws"],
                      outputs={"serving.deploy": deploy}, progress=lines.append)


def test_backend_walks_the_plan_steps_with_progress_and_observes_them(app, fresh):
    from framework.rollout.backend import RolloutBackend

    fresh["reset"]()
    recipe, steps = _plan_steps("rollout.steps=[50,100]")
    lines: list[str] = []
    ctx = _ctx(recipe, fresh, lines)
    backend = RolloutBackend(ports=fresh["ports"], poll_s=0.2, timeout_s=120)
    # Load that outlasts the rollout on a busy machine (it took > 10 s of 800 requests in a
    # loaded suite run), stopped once the rollout is over.
    proc = B.spawn_load(app["url"], fresh["tmp"] / "load.jsonl", rps=80, n=8000, key=KEY)
    try:
        time.sleep(0.5)
        outs = [backend.apply(step, ctx) for step in steps]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert outs[-1]["status"] == "promoted" and fresh["promoter"].champion == "2"
    assert [backend.observe(s, ctx) for s in steps] == [s.fingerprint for s in steps]
    assert any("step2" in line and "analysis" in line for line in lines)


def test_a_second_rollout_while_one_runs_is_refused_then_superseded(app, fresh):
    from framework.errors import StateError
    from framework.rollout import actor
    from framework.rollout.backend import RolloutBackend

    fresh["reset"]()
    recipe, steps = _plan_steps("rollout.steps=[10,100]", "rollout.interval_s=60")
    ctx = _ctx(recipe, fresh, [])
    RolloutBackend(wait=False, ports=fresh["ports"]).apply(steps[0], ctx)
    first = actor.status(fresh["ws"], "churn")
    assert first["status"] == "running" and first["weights"]["candidate_weight"] == 10
    with pytest.raises(StateError, match="two controllers fighting"):
        RolloutBackend(wait=False, ports=fresh["ports"]).apply(steps[0], ctx)
    RolloutBackend(wait=False, supersede=True, ports=fresh["ports"]).apply(steps[0], ctx)
    second = actor.status(fresh["ws"], "churn")
    assert second["rollout_id"] != first["rollout_id"] and second["status"] == "running"
    done = actor.abort(fresh["ws"], "churn", fresh["ports"], reason="test over")
    assert done["status"] == "aborted" and done["weights"]["candidate_weight"] == 0
    from framework.backends.ray_serve import traffic

    assert traffic.current_user_config("churn")["candidate_weight"] == 0


def test_without_room_for_the_surge_replica_the_change_goes_on_without_it(app, sample_data,
                                                                         tmp_path, monkeypatch):
    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import traffic

    # One replica of 1.2 CPU fits beside the churn app on the 2-CPU test cluster; a second does not.
    monkeypatch.setattr(traffic, "SURGE_WAIT_S", 3.0)
    recipe = B.compose_recipe(["++serving.num_cpus_per_replica=1.2", "++serving.route_prefix=/tight",
                               "serving.cache.enabled=false"])
    models = {"1": app["models"]["1"], "2": app["models"]["2"]}
    features = {"type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    args = cfg.app_args(recipe, tmp_path, features=features, stats=False)
    user_config = {"slots": {"stable": B.demo_slot(models, "1"), "candidate": None},
                   "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}
    app_config = cfg.app_config("tight", args, user_config)
    traffic.deploy_app(app_config)
    try:
        started = time.monotonic()
        assert traffic.set_surge("tight", True) is False
        assert traffic.app_status("tight")[0] == "RUNNING"
        assert traffic.app_configs()["tight"]["deployments"][0]["num_replicas"] == 1
        again = time.monotonic()
        assert traffic.set_surge("tight", True) is False  # remembered: no second wait
        assert time.monotonic() - again < 1.0 <= again - started
        traffic.update_user_config("tight", {**user_config, "candidate_weight": 0,
                                             "slots": {**user_config["slots"],
                                                       "candidate": B.demo_slot(models, "2")},
                                             "config_version": 2}, surge=True)
        live = traffic.current_user_config("tight")
        assert live["slots"]["candidate"]["version"] == "2"  # the change itself went through
    finally:
        traffic.set_surge("tight", False)
        traffic.delete_app("tight")
