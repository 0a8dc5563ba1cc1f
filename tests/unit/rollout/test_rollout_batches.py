"""Canary analysis counts requests, not instances: batches through a real Predictor, in-process.

The controller drives an in-process ``Predictor`` (its slots, fallback chain and stats recorder)
on a fake clock; the recorder's samples are the controller's sample source.
"""

from __future__ import annotations

import asyncio
import copy
import random
from typing import Any

import pytest

from framework.rollout.analysis import analyse, split_roles
from framework.rollout.controller import RolloutController
from framework.rollout.fakes import FakeClock, FakePromoter
from framework.rollout.state import StateStore
from framework.serving.predictor import Predictor
from framework.serving.schemas import Instance
from framework.serving.settings import AppArgs
from framework.serving.slots import ModelFault
from framework.serving.stats import StatsRecorder, StatsStore
from framework.spec.rollout import Analysis

from rollout_world import canary_spec

FEATURES = ["a", "b", "c"]
BATCH = 50
#: Latencies here are real (the predict calls run now) on a fake clock: on a loaded machine one
#: slow batch among a window's few requests is its p99. These tests are about what counts as a
#: request, so latency is not judged (CI once rolled a healthy candidate back on it).
NO_LATENCY_LIMITS = {"min_requests": 20, "max_latency_ratio": 1000, "max_p99_latency_ms": 60_000}


class NoLookup:
    """Instances carry every feature: the feature store is never asked."""

    def get(self, entity_rows):
        return [{} for _ in entity_rows]


class PredictorApp:
    """TrafficSetter over an in-process Predictor: what it is set to is what answers."""

    def __init__(self, predictor: Predictor, config: dict[str, Any]) -> None:
        self.predictor, self.config = predictor, config
        predictor.reconfigure(config)

    def set(self, user_config: dict[str, Any], surge: bool = False) -> None:
        self.config = copy.deepcopy(user_config)
        self.predictor.reconfigure(self.config)

    def current(self) -> dict[str, Any]:
        return copy.deepcopy(self.config)


class RecorderSource:
    """SampleSource over the Predictor's StatsRecorder, as the stats actor would hold them."""

    def __init__(self, recorder: StatsRecorder) -> None:
        self.recorder, self.store = recorder, StatsStore()

    def window(self, start: float, end: float) -> list[dict[str, Any]]:
        buffered = self.recorder._buffer
        self.store.add([buffered.popleft() for _ in range(len(buffered))])
        return self.store.window(start, end)


@pytest.fixture(scope="module")
def booster_path(tmp_path_factory):
    import numpy as np
    import xgboost

    rng = np.random.default_rng(0)
    x = rng.random((200, len(FEATURES)))
    booster = xgboost.train({"objective": "binary:logistic"},
                            xgboost.DMatrix(x, label=(x[:, 0] > 0.5).astype(float)), 2)
    path = tmp_path_factory.mktemp("model") / "m.ubj"
    booster.save_model(str(path))
    return str(path)


def _world(tmp_path, booster_path, candidate_failure_rate: float):
    clock = FakeClock()
    recorder = StatsRecorder("churn", enabled=True, clock=clock.now)
    args = AppArgs(model_id="churn", task="binary", feature_names=FEATURES, serving={
        "cache": {"enabled": False}, "fallback": [{"type": "previous_version"}],
        # every failure must reach the samples, not an open circuit's fast refusals
        "circuit_breaker": {"failure_threshold": 1_000_000}})
    faults = random.Random(3)

    async def predict_fn(slot, vectors):
        if slot.version == "4" and faults.random() < candidate_failure_rate:
            raise ModelFault("candidate failed the whole batch")
        return [min(1.0, max(0.0, v[0])) for v in vectors]  # both versions score alike

    predictor = Predictor(args, NoLookup(), predict_fn, stats=recorder, seed=0)
    slot = {"model_path": booster_path}
    config = {"slots": {"stable": {**slot, "version": "3", "model_uri": "models:/churn/3"},
                        "candidate": {**slot, "version": "4", "model_uri": "models:/churn/4"}},
              "candidate_weight": 0, "shadow_percent": 0, "config_version": 1}
    app = PredictorApp(predictor, config)
    deps = {"setter": app, "source": RecorderSource(recorder), "promoter": FakePromoter("3"),
            "clock": clock}
    return StateStore(tmp_path / "ws", "churn"), predictor, deps


def _drive(store, predictor, deps, spec) -> RolloutController:
    """10 batch requests of 50 instances a (fake) second until the rollout ends."""
    clock, rows = deps["clock"], random.Random(5)
    ctl = RolloutController.start(store, spec, **deps)

    async def second() -> None:
        for _ in range(10):
            batch = [Instance(features={f: rows.random() for f in FEATURES}) for _ in range(BATCH)]
            await predictor.predict(batch)
            clock.sleep(0.1)

    deadline = clock.now() + 600
    while not ctl.done and clock.now() < deadline:
        asyncio.run(second())
        ctl.tick_safely()
    return ctl


def test_batches_failing_half_the_time_measure_half_errors_and_roll_back(tmp_path, booster_path):
    store, predictor, deps = _world(tmp_path, booster_path, candidate_failure_rate=0.5)
    spec = canary_spec(steps=[50, 100], analysis=NO_LATENCY_LIMITS)
    ctl = _drive(store, predictor, deps, spec)
    assert ctl.state.status == "rolled_back" and "error rate" in ctl.state.reason
    judged = [a for a in ctl.state.analyses if a["verdict"] == "fail"]
    assert judged
    for analysis in judged:
        assert 0.3 <= analysis["error_rate"] <= 0.7  # per request: ~50%, not ~2% per instance
        ok = analysis["n_candidate"] - analysis["candidate_errors"]
        assert analysis["candidate_instances"] == BATCH * analysis["n_candidate"]
        assert ok > 0
    assert deps["promoter"].champion == "3" and deps["promoter"].moves == []


def test_healthy_batches_are_promoted(tmp_path, booster_path):
    store, predictor, deps = _world(tmp_path, booster_path, candidate_failure_rate=0.0)
    ctl = _drive(store, predictor, deps, canary_spec(steps=[50, 100], analysis=NO_LATENCY_LIMITS))
    assert ctl.state.status == "promoted" and deps["promoter"].champion == "4", ctl.state.reason


def _request(role: str, ok: bool, scores: list[float], version: str = "4") -> dict[str, Any]:
    many = len(scores) > 1
    return {"ts": 1.0, "version": version, "role": role, "ok": ok, "latency_ms": 5.0,
            "instances": max(1, len(scores)), "score": None if many or not scores else scores[0],
            **({"scores": scores} if many else {})}


def test_a_batch_is_one_request_and_its_scores_all_count_for_psi():
    rng = random.Random(0)
    stable = [_request("stable", True, [rng.random()], "3") for _ in range(100)]
    good = [_request("candidate", True, [rng.random() for _ in range(BATCH)]) for _ in range(20)]
    failed = [_request("candidate", False, []) for _ in range(20)]
    cand, ref = split_roles(stable + good + failed, "4", "3", "candidate")
    result = analyse(cand, ref, Analysis(min_requests=20), window=(0, 10), candidate_version="4")
    assert (result.n_candidate, result.candidate_errors, result.error_rate) == (40, 20, 0.5)
    assert result.candidate_instances == 20 * BATCH + 20
    assert result.verdict == "fail" and "error rate 0.500" in result.reason
    # PSI reads all 1,000 batch scores (its sampling noise says how many it compared) and
    # finds the same distribution as stable's
    assert result.psi_noise == pytest.approx(9 * (1 / 100 + 1 / (20 * BATCH)))
    assert result.psi - result.psi_noise < 0.2 and "PSI" not in result.reason


def test_shadow_batches_pair_every_instance_with_the_stable_answer():
    shadow = {**_request("shadow", True, [0.9, 0.1, 0.8]), "stable_scores": [0.8, 0.7, 0.9]}
    stable = [_request("stable", True, [0.5], "3") for _ in range(5)]
    result = analyse([shadow], stable, Analysis(min_requests=1), window=(0, 1),
                     candidate_version="4", role="shadow")
    assert result.n_pairs == 3 and result.agreement == pytest.approx(2 / 3)
