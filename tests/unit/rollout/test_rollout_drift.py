"""``monitoring.on_drift``: a candidate whose scores left its training profile fails its analysis
(rollback) or holds its step (pause_rollout); ``alert`` leaves the rollout to the usual checks.

Both versions' scores are shifted alike here, so the candidate-vs-stable PSI passes and only the
comparison with the candidate's own training profile can tell."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from framework.backends.model_registry.profile import histogram
from framework.rollout.analysis import training_psi
from framework.rollout.fakes import Behaviour
from framework.rollout.phases import spec_from_recipe
from framework.spec.rollout import Canary

SHIFTED = Behaviour(score_shift=0.45)


@pytest.fixture
def profile(tmp_path):
    """A training profile of scores as the fake serves them unshifted: Beta(2, 5)."""
    rng = random.Random(0)
    path = tmp_path / "reference_profile.json"
    path.write_text(json.dumps({"prediction": histogram([rng.betavariate(2, 5) for _ in range(5000)])}))
    return str(path)


def _spec(action):
    raw = {"strategy": "canary", "steps": [5, 25, 50, 100], "interval_s": 10, "failure_limit": 1,
           # The stable comparison is not under test: on 20 requests its PSI is mostly noise.
           "analysis": {"min_requests": 20, "max_prediction_psi": 50.0}}
    spec = spec_from_recipe(Canary.model_validate(raw))
    return replace(spec, drift=None if action is None else {"action": action, "psi_threshold": 0.2})


def _world(make_world, profile, **behaviours):
    world = make_world(rps=50.0, **behaviours)
    world.serving.history[0][1]["slots"]["candidate"]["profile_path"] = profile
    return world


def test_training_like_scores_have_a_small_psi_and_shifted_ones_a_large_one(profile):
    rng = random.Random(1)
    calm, noise = training_psi([rng.betavariate(2, 5) for _ in range(2000)], profile)
    assert calm < 0.05 and noise == pytest.approx(9 * (1 / 5000 + 1 / 2000))
    drifted, _ = training_psi([min(1.0, rng.betavariate(2, 5) + 0.45) for _ in range(2000)], profile)
    assert drifted > 1.0
    assert training_psi([0.5], "/nowhere.json") is None


def test_rollback_fails_the_drifted_candidates_analysis_and_rolls_back(make_world, profile):
    world = _world(make_world, profile, **{"3": SHIFTED, "4": SHIFTED})
    state = world.start(_spec("rollback")).run()
    assert state.status == "rolled_back" and world.promoter.champion == "3"
    judged = [r for r in world.store.read_audit() if r["event"] == "analysis"][-1]
    assert judged["verdict"] == "fail" and judged["training_psi"] > 0.2
    assert "score PSI against the candidate's training profile (beyond sampling noise)" in judged["reason"]
    assert "(monitoring.on_drift: rollback)" in judged["reason"]


def test_pause_holds_the_step_while_the_candidate_drifts(make_world, profile):
    world = _world(make_world, profile, **{"3": SHIFTED, "4": SHIFTED})
    ctl = world.start(_spec("pause_rollout"))
    t0 = world.clock.now()
    state = ctl.run(should_stop=lambda: world.clock.now() > t0 + 120)
    assert state.running and state.phase_index == 0 and state.failures == 0
    assert world.weights() == [5]  # it never moved on, and never rolled back
    verdicts = {r["verdict"] for r in world.store.read_audit() if r["event"] == "analysis"}
    assert "paused" in verdicts and verdicts <= {"paused", "inconclusive"}  # few requests at 5%
    assert ctl.promote_now("drift understood").status == "promoted"  # people decide


@pytest.mark.parametrize("action", [None, "rollback"], ids=["alert", "rollback-no-drift"])
def test_without_drift_or_with_alert_only_the_rollout_promotes(make_world, profile, action):
    behaviours = {"3": SHIFTED, "4": SHIFTED} if action is None else {}
    world = _world(make_world, profile, **behaviours)
    state = world.start(_spec(action)).run()
    assert state.status == "promoted" and world.promoter.champion == "4"
