"""Low-traffic canaries: quiet intervals accumulate their samples until ``min_requests`` is reached."""

from __future__ import annotations

import pytest

from framework.rollout.analysis import split_roles
from framework.rollout.fakes import Behaviour
from framework.rollout.state import RUNNING
from framework.rollout.status import format_status, status

from rollout_world import canary_spec

MIN = 20
#: 2 requests/s in total: about 0.1 candidate request/s at 5%, one every 10 s interval.
RPS = 2.0


def low_traffic_spec(**analysis):
    # PSI on 20 requests is mostly sampling noise; these tests are about when a judgement comes.
    limits = {"min_requests": MIN, "max_inconclusive": 0, "max_prediction_psi": 50.0, **analysis}
    return canary_spec(analysis=limits)


def run(world, ctl, until=lambda: False, limit_s=3600.0):
    """Run ``ctl`` on the fake clock, at most ``limit_s`` of it (a quiet canary may wait forever)."""
    t0 = world.clock.now()
    return ctl.run(should_stop=lambda: until() or world.clock.now() > t0 + limit_s)


def analyses(world, phase=None):
    return [r for r in world.store.read_audit() if r["event"] == "analysis"
            and (phase is None or r["phase"] == phase)]


def candidates(world, start, end):
    cand, _ = split_roles(world.serving.window(start, end), "4", "3", "candidate")
    return len(cand)


@pytest.mark.parametrize("lag", [0.0, 1.1], ids=["no-lag", "sample-lag"])
def test_a_canary_at_two_requests_a_second_completes_every_step_by_accumulating(make_world, lag):
    world = make_world(rps=RPS)
    spec = low_traffic_spec()
    state = run(world, world.start(spec, sample_lag_s=lag))
    assert state.status == "promoted" and world.promoter.champion == "4"
    assert world.weights() == [5, 25, 50, 100, 0] and state.failures == 0
    first = analyses(world, spec.phases[0].address)
    *quiet, judged = first
    assert judged["verdict"] == "pass" and judged["n_candidate"] >= MIN
    assert len(quiet) >= 5 and {q["verdict"] for q in quiet} == {"inconclusive"}
    # every judgement of the step covers the step from its first interval on
    since = first[0]["window_start"]
    assert all(r["window_start"] == since for r in first)
    assert [r["intervals"] for r in first] == list(range(1, len(first) + 1))
    assert [q["window_end"] - since for q in quiet] == pytest.approx(
        [spec.interval_s * k for k in range(1, len(quiet) + 1)])
    assert all(q["n_candidate"] < MIN for q in quiet)
    # judged as soon as the samples sufficed, not at the next interval's end
    assert judged["window_end"] < quiet[-1]["window_end"] + spec.interval_s
    assert candidates(world, since, judged["window_end"] - 1.5) < MIN
    assert all(r["ts"] >= r["window_end"] + lag - 1e-6 for r in analyses(world))
    assert (f"judged on {judged['n_candidate']} candidate requests of {judged['intervals']} "
            "intervals together") in judged["reason"]
    steps = [r["ts"] for r in world.store.read_audit() if r["event"] == "step"]
    assert all(b - a >= spec.interval_s for a, b in zip(steps, steps[1:]))


def test_a_quiet_canary_beyond_max_inconclusive_rolls_back_on_the_accumulated_count(make_world):
    world = make_world(rps=RPS)
    state = run(world, world.start(low_traffic_spec(max_inconclusive=3)))
    assert state.status == "rolled_back" and world.weights() == [5, 0] and state.failures == 0
    quiet = analyses(world)
    assert [r["intervals"] for r in quiet] == [1, 2, 3]
    assert len({r["window_start"] for r in quiet}) == 1
    n = [r["n_candidate"] for r in quiet]
    assert n == sorted(n) and n[-1] < MIN
    assert n[-1] == candidates(world, quiet[0]["window_start"], quiet[-1]["window_end"])
    assert "3 analyses in a row" in state.reason and "even together" in state.reason
    assert "too little traffic" in world.promoter.tags["4"]


def test_errors_visible_only_across_accumulated_intervals_roll_the_candidate_back(make_world):
    world = make_world(rps=RPS, **{"4": Behaviour(error_rate=0.3)})
    spec = low_traffic_spec()
    state = run(world, world.start(spec))
    assert state.status == "rolled_back" and "error rate" in state.reason
    records = analyses(world)
    fails = [r for r in records if r["verdict"] == "fail"]
    assert len(fails) == spec.failure_limit == state.failures
    # no single interval had enough requests to judge: only the accumulated windows could
    assert all(r["verdict"] == "inconclusive" for r in records if r["intervals"] == 1)
    assert all(f["intervals"] > 1 and f["n_candidate"] >= MIN for f in fails)
    # a failed accumulated judgement counts once; the next accumulation starts after it
    assert [f["failures"] for f in fails] == [0, 1]  # as audited, before each was counted
    assert fails[1]["window_start"] == fails[0]["window_end"]
    assert world.promoter.champion == "3" and "failed analyses" in world.promoter.tags["4"]


def test_a_restarted_controller_goes_on_adding_to_the_accumulated_window(make_world):
    world = make_world(rps=RPS)
    ctl = world.start(low_traffic_spec())
    run(world, ctl, until=lambda: ctl.state.inconclusive >= 3)
    saved = world.store.load()
    assert saved.accumulation["intervals"] == 3 and saved.accumulation["n_candidate"] < MIN
    since = saved.accumulation["since"]
    del ctl  # the controller dies; a new one takes over from the state file
    resumed = world.resume()
    assert run(world, resumed).status == "promoted"
    first = analyses(world, resumed.spec.phases[0].address)
    assert first[-1]["verdict"] == "pass" and first[-1]["window_start"] == since
    assert first[-1]["intervals"] == len(first) > 3
    assert len([r for r in world.store.read_audit() if r["event"] == "resumed"]) == 1


def test_status_says_how_many_requests_are_still_needed(make_world):
    world = make_world(rps=RPS)
    ctl = world.start(low_traffic_spec())
    run(world, ctl, until=lambda: ctl.state.inconclusive >= 2)
    ws = world.store.dir.parents[1]
    s = status(ws, "churn")
    acc = s["accumulation"]
    n = analyses(world)[-1]["n_candidate"]
    assert s["status"] == RUNNING and acc["intervals"] == 2 and acc["n_candidate"] == n
    assert acc["min_requests"] == MIN and acc["needed"] == MIN - n
    text = format_status(s)
    assert f"analysis  {n} of {MIN} candidate requests so far (2 intervals); {MIN - n} more needed" \
        in text
    assert "over 2 intervals" in s["timeline"][-1]["text"]
    run(world, ctl)
    done = status(ws, "churn")
    assert done["status"] == "promoted" and done["accumulation"] is None
    assert "more needed" not in format_status(done)
