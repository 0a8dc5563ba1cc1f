"""The controller state machine on a fake clock, a fake Serve app and a fake registry."""

from __future__ import annotations

import pytest

from framework.errors import StateError
from framework.rollout.controller import Superseded
from framework.rollout.fakes import Behaviour
from framework.rollout.state import RUNNING

from rollout_world import blue_green_spec, canary_spec


def events(world, name):
    return [r for r in world.store.read_audit() if r["event"] == name]


def test_healthy_canary_rises_holds_each_step_and_promotes(world):
    ctl = world.start(canary_spec())
    state = ctl.run()
    assert state.status == "promoted"
    assert world.weights() == [5, 25, 50, 100, 0]  # the last update swaps slots
    # the surge replica answers through every weight change and goes with the last update
    assert world.serving.surges == [True, True, True, True, False]
    # replicas keep samples while the rollout judges them, and stop with its last update
    assert [c["record_samples"] for _, c in world.serving.updates] == [True] * 4 + [False]
    final = world.serving.current()
    assert final["slots"]["stable"]["version"] == "4" and final["slots"]["candidate"] is None
    steps = [r["ts"] for r in events(world, "step")] + [events(world, "promoted")[0]["ts"]]
    assert all(b - a >= 10 for a, b in zip(steps, steps[1:]))
    assert world.promoter.champion == "4" and world.promoter.tags == {}
    versions = [c["config_version"] for _, c in world.serving.updates]
    assert versions == sorted(set(versions))


@pytest.mark.parametrize("bad", [Behaviour(error_rate=0.2), Behaviour(latency_ms=400)],
                         ids=["errors", "slow"])
def test_bad_canary_rolls_back_in_time_and_keeps_champion(make_world, bad):
    world = make_world(**{"4": bad})
    spec = canary_spec(steps=[20, 50, 100])
    t0 = world.clock.now()
    state = world.start(spec).run()
    assert state.status == "rolled_back"
    rollback_at = events(world, "rolled_back")[0]["ts"]
    assert rollback_at - t0 <= spec.interval_s * spec.failure_limit + spec.interval_s
    last = world.serving.updates[-1][1]
    assert last["candidate_weight"] == 0 and last["shadow_percent"] == 0
    assert last["slots"]["stable"]["version"] == "3"
    assert world.weights() == [20, 0]
    assert world.serving.surges == [True, False]
    assert world.promoter.champion == "3" and world.promoter.moves == []
    assert "failed analyses" in world.promoter.tags["4"]
    assert ("error rate" if bad.error_rate else "p99 latency") in state.reason
    # the rollout is over: replicas stop keeping samples (stable answers everything, weight 0)
    assert last["record_samples"] is False
    assert world.serving.window(rollback_at + 1, rollback_at + 30) == []


def test_windows_count_from_when_each_step_is_live_not_when_it_was_asked(make_world):
    # Serve takes a while to make an update live; the old weights answer meanwhile, so a window
    # that began at the request would judge the old traffic and shorten the rollback budget.
    world = make_world(apply_s=1.5, **{"4": Behaviour(error_rate=0.2)})
    spec = canary_spec(steps=[20, 50, 100])
    assert world.start(spec).run().status == "rolled_back"
    live_at = world.serving.updates[0][0]
    windows = [(a["window_start"], a["window_end"]) for a in events(world, "analysis")]
    assert windows[0][0] == pytest.approx(live_at, abs=1e-3)
    assert all(end - start == pytest.approx(spec.interval_s) for start, end in windows)
    assert all(b[0] == a[1] for a, b in zip(windows, windows[1:]))  # contiguous
    rolled = events(world, "rolled_back")[0]
    assert rolled["failures"] == spec.failure_limit and rolled["ts"] >= windows[-1][1]
    assert windows[-1][1] - live_at == pytest.approx(spec.interval_s * spec.failure_limit, abs=1e-3)
    assert events(world, "traffic")[0]["live_at"] == live_at


def test_each_phase_holds_from_when_its_weight_is_live(make_world):
    world = make_world(apply_s=1.5)
    spec = canary_spec(steps=[25, 100])
    assert world.start(spec).run().status == "promoted"
    live = [t for t, _ in world.serving.updates]
    phase_windows = {}
    for a in events(world, "analysis"):
        phase_windows.setdefault(a["phase"], []).append(a["window_start"])
    assert [w[0] for w in phase_windows.values()] == pytest.approx(live[:2], abs=1e-3)


def test_inconclusive_windows_do_not_advance_or_fail(make_world):
    world = make_world(rps=2.0)  # about 1 candidate request per 10 s window at 5%
    ctl = world.start(canary_spec(analysis={"min_requests": 20, "max_inconclusive": 0}))
    ctl.run(should_stop=lambda: world.clock.now() > 1_000_000 + 120)
    assert ctl.state.status == RUNNING and ctl.state.phase_index == 0
    assert ctl.state.failures == 0 and world.weights() == [5]
    verdicts = {r["verdict"] for r in events(world, "analysis")}
    assert verdicts == {"inconclusive"}


def test_too_many_quiet_windows_in_a_row_roll_back(make_world):
    world = make_world(rps=2.0)
    spec = canary_spec(analysis={"min_requests": 20, "max_inconclusive": 3})
    state = world.start(spec).run()
    assert state.status == "rolled_back" and world.weights() == [5, 0]
    assert "3 analyses in a row" in state.reason and "too little traffic" in state.reason
    assert len(events(world, "analysis")) == 3 and state.failures == 0
    assert world.promoter.champion == "3" and "too little traffic" in world.promoter.tags["4"]


def test_blue_green_shadows_switches_bakes_and_retires_blue(world):
    spec = blue_green_spec()
    state = world.start(spec).run()
    assert state.status == "promoted"
    ups = [c for _, c in world.serving.updates]
    assert [(c["candidate_weight"], c["shadow_percent"]) for c in ups] == [(0, 100), (100, 0), (0, 0)]
    assert ups[1]["slots"]["stable"]["version"] == "3"  # blue stays loaded during the bake
    assert ups[2]["slots"] == {"stable": ups[1]["slots"]["candidate"], "candidate": None,
                               "previous": ups[1]["slots"]["stable"]}
    shadow = [r for r in events(world, "analysis") if r["candidate_role"] == "shadow"]
    assert shadow and shadow[0]["agreement"] is not None and shadow[0]["n_pairs"] > 0
    switch, done = events(world, "step")[1]["ts"], events(world, "promoted")[0]["ts"]
    assert done - switch >= 30
    assert world.promoter.champion == "4"


def test_blue_green_rollback_during_bake_is_one_update(world):
    ctl = world.start(blue_green_spec())
    while ctl.state.phase_index == 0:
        ctl.run(should_stop=lambda: ctl.state.phase_index > 0)
    n_before = len(world.serving.updates)
    world.serving.behaviours["4"] = Behaviour(error_rate=0.5)  # green breaks after the switch
    state = ctl.run()
    assert state.status == "rolled_back"
    assert len(world.serving.updates) == n_before + 1
    last = world.serving.updates[-1][1]
    assert last["candidate_weight"] == 0 and last["slots"]["stable"]["version"] == "3"
    assert world.promoter.champion == "3"


def test_restart_resumes_from_state_without_starting_over(world):
    ctl = world.start(canary_spec())
    ctl.run(should_stop=lambda: ctl.state.phase_index >= 2)
    world.serving.fail_next_sets = 1  # the controller dies between saving a step and setting it
    with pytest.raises(ConnectionError):
        while True:
            ctl.tick()
            world.clock.sleep(0.5)
    saved = world.store.load()
    assert saved.phase_index == 3 and not saved.applied
    assert world.serving.current()["candidate_weight"] == 50  # half-way: not yet live
    resumed = world.resume()
    assert world.serving.current()["candidate_weight"] == 100  # re-applied at once
    assert resumed.run().status == "promoted"
    assert world.weights() == [5, 25, 50, 100, 0]
    assert len(events(world, "resumed")) == 1 and len(events(world, "start")) == 1


def test_second_rollout_is_refused_unless_superseding(world):
    first = world.start(canary_spec())
    with pytest.raises(StateError, match="two controllers fighting"):
        world.start(canary_spec())
    second = world.start(canary_spec(), supersede=True)
    assert world.store.load().rollout_id == second.state.rollout_id
    world.clock.sleep(11)
    with pytest.raises(Superseded):
        first.tick()
    assert first.run().status == RUNNING  # it stops quietly, having written nothing
    assert world.store.read_audit(first.state.rollout_id)[-1]["event"] == "superseded"


def test_a_new_candidate_deployed_underneath_stops_the_controller(world):
    ctl = world.start(canary_spec())
    cfg = world.serving.current()
    cfg["slots"]["candidate"]["version"] = "5"
    world.serving.set(cfg)
    state = ctl.run()
    assert state.status == "superseded" and "version 5" in state.reason
    assert world.serving.current()["slots"]["candidate"]["version"] == "5"


def test_manual_commands(make_world):
    world = make_world()
    ctl = world.start(canary_spec())
    assert ctl.abort("drill").status == "aborted"
    assert world.promoter.tags == {} and world.serving.current()["candidate_weight"] == 0
    with pytest.raises(StateError, match="nothing to promote"):
        ctl.promote_now()
    world2 = make_world()
    ctl2 = world2.start(canary_spec())
    assert ctl2.promote_now().status == "promoted" and world2.promoter.champion == "4"
    undone = ctl2.rollback("bad after all")
    assert undone.status == "rolled_back" and world2.promoter.champion == "3"
    slots = world2.serving.current()["slots"]
    assert slots["stable"] == ctl2.state.stable and slots["candidate"] is None


def test_start_needs_both_slots(tmp_path):
    from rollout_world import World
    from framework.errors import BackendError

    world = World(tmp_path)
    world.serving.history[0][1]["slots"]["candidate"] = None
    with pytest.raises(BackendError, match="candidate=none"):
        world.start(canary_spec())


def test_status_says_why_from_files_alone(make_world):
    from framework.rollout.status import format_status, status

    world = make_world(**{"4": Behaviour(error_rate=0.2)})
    world.start(canary_spec(steps=[20, 50, 100])).run()
    s = status(world.store.dir.parents[1], "churn")
    assert s["status"] == "rolled_back" and "error rate" in s["reason"]
    assert s["weights"]["candidate_weight"] == 0 and s["weights"]["live"]
    assert s["last_analyses"][-1]["verdict"] == "fail"
    assert [r["event"] for r in s["timeline"]][:2] == ["start", "step"]
    text = format_status(s)
    assert "ROLLED_BACK" in text and "error rate" in text and "timeline" in text
    assert status(world.store.dir.parents[1], "other")["status"] == "none"


def test_with_sample_lag_a_failing_window_acts_at_its_end_and_a_pass_waits(make_world):
    from framework.rollout.controller import RolloutController

    bad = make_world(**{"4": Behaviour(error_rate=0.3)})
    spec = canary_spec(steps=[20, 50, 100])
    t0 = bad.clock.now()
    ctl = RolloutController.start(bad.store, spec, sample_lag_s=1.5, **bad.deps)
    ctl.run(poll_s=0.1)
    first_fail = events(bad, "analysis")[0]
    assert first_fail["verdict"] == "fail" and first_fail["ts"] < t0 + spec.interval_s + 0.5
    assert events(bad, "rolled_back")[0]["ts"] < t0 + 2 * spec.interval_s + 0.5

    good = make_world()
    ctl = RolloutController.start(good.store, spec, sample_lag_s=1.5, **good.deps)
    ctl.run(poll_s=0.1)
    assert ctl.state.status == "promoted"
    for rec in events(good, "analysis"):
        assert rec["ts"] >= rec["window_end"] + 1.5  # judged on the complete window


def test_check_can_start_guards_the_deploy_of_a_new_candidate(world):
    from framework.rollout.guard import check_can_start

    ws = world.store.dir.parents[1]
    check_can_start(ws, "churn", "4")  # nothing running
    world.start(canary_spec())
    check_can_start(ws, "churn", "4")  # the same version: re-applying the plan is fine
    with pytest.raises(StateError, match="version 4 is running"):
        check_can_start(ws, "churn", "5")
    check_can_start(ws, "churn", "5", supersede=True)


def test_taking_over_a_live_config_does_not_update_it_again(world):
    world.start(canary_spec())
    before = len(world.serving.updates)
    resumed = world.resume()
    assert len(world.serving.updates) == before and resumed.state.applied
    assert resumed.run().status == "promoted"


def test_wait_prints_each_decision_once_and_returns_when_the_end_is_live(world):
    from framework.rollout.actor import wait
    from framework.rollout.status import format_status

    ctl = world.start(canary_spec(steps=[50, 100]))
    ws = world.store.dir.parents[1]
    lines: list[str] = []
    running = wait(ws, "churn", progress=lines.append, poll_s=0.01,
                   until=lambda s: s["status"] == "running")
    assert running["status"] == "running" and "(updated" in format_status(running)
    assert len(lines) == len(running["timeline"]) == 2
    ctl.run()
    lines.clear()
    final = wait(ws, "churn", progress=lines.append, poll_s=0.01)
    assert final["status"] == "promoted"
    assert len(lines) == len(final["timeline"]) == len(set(lines))
    assert lines[0].startswith("rollout churn: start:") and "promoted" in lines[-1]
