"""What each version slot answered, by role, as the replicas count it for Prometheus
(``ray_loom_slot_*``): the counts a rollout's analysis reads with ``monitoring.prometheus_url``."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import numpy as np

from framework.serving.metrics import NullMetrics
from framework.serving.predictor import Predictor
from framework.serving.schemas import Instance
from framework.serving.score_bins import PROBABILITY_EDGES, count_bins, shared_edges
from framework.serving.scoring import predict_matrix
from framework.serving.settings import AppArgs


class _Recorded(NullMetrics):
    def __init__(self):
        self.calls = []

    def slot_answer(self, version, role, ok, latency_ms, score_bins=None):
        self.calls.append((version, role, ok, latency_ms, dict(score_bins or {})))


def _booster(path, objective="binary:logistic"):
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (500, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32) if objective == "binary:logistic" else x[:, 0] * 10
    xgb.train({"objective": objective, "max_depth": 2}, xgb.DMatrix(x, label=y), 5).save_model(str(path))
    return str(path)


def _predictor(tmp_path, monkeypatch, task="binary", **config):
    monkeypatch.setenv("LOOM_TEST_FAULTS", "1")
    objective = "binary:logistic" if task == "binary" else "reg:squarederror"
    args = AppArgs(model_id="m", task=task, feature_names=["a", "b"],
                   feature_types={"a": "float64", "b": "float64"},
                   serving={"cache": {"enabled": False}, "fallback": [{"type": "previous_version"}]})
    rng = random.Random(0)

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, rng)

    metrics = _Recorded()
    p = Predictor(args, None, predict_fn, metrics=metrics, seed=1)
    p.reconfigure({"slots": {"stable": {"version": "1", "model_path": _booster(tmp_path / "1.ubj", objective),
                                        **config.pop("stable", {})},
                             "candidate": {"version": "2", "model_path": _booster(tmp_path / "2.ubj", objective),
                                           **config.pop("candidate", {})}},
                   "config_version": 1, **config})
    return p, metrics


def _ask(p, n=1, pin=None):
    async def go():
        out = []
        for i in range(200):
            out += await p.predict([Instance(features={"a": i / 100 - 1, "b": 0.5})] * n, pin=pin)
        await asyncio.sleep(0)  # shadow calls run as tasks
        return out

    return asyncio.run(go())


def test_each_request_counts_once_by_version_role_and_outcome(tmp_path, monkeypatch):
    p, m = _predictor(tmp_path, monkeypatch, candidate_weight=30,
                      candidate={"fault": {"error_rate": 0.5}})
    answers = _ask(p)
    by = Counter((v, role, ok) for v, role, ok, _, _ in m.calls)
    assert sum(by.values()) == len(answers) == 200
    assert by[("1", "stable", True)] > 100 and by[("2", "candidate", True)] > 10
    assert by[("2", "candidate", False)] > 10  # the fallback answered them: errors of version 2
    for version, role, ok, latency, bins in m.calls:
        assert latency > 0 and sum(bins.values()) == (1 if ok else 0)


def test_shadow_answers_count_as_shadow_and_pins_count_nowhere(tmp_path, monkeypatch):
    p, m = _predictor(tmp_path, monkeypatch, shadow_percent=100)
    _ask(p)
    roles = Counter(role for _, role, _, _, _ in m.calls)
    assert roles == {"stable": 200, "shadow": 200}
    m.calls.clear()
    _ask(p, pin="2")
    assert m.calls == []


def test_a_batch_is_one_request_with_every_score_binned(tmp_path, monkeypatch):
    p, m = _predictor(tmp_path, monkeypatch)
    _ask(p, n=5)
    assert len(m.calls) == 200 and all(sum(b.values()) == 5 for *_, b in m.calls)


def test_shared_bins_probabilities_fixed_regression_the_stable_profile(tmp_path, monkeypatch):
    assert shared_edges("binary", None) == PROBABILITY_EDGES
    assert count_bins(PROBABILITY_EDGES, [0.0, 0.05, 0.1, 0.99, 1.0, None, float("nan")]) == {
        0: 2, 1: 1, 9: 2}
    assert shared_edges("regression", None) is None and count_bins(None, [1.0]) == {}
    profile = tmp_path / "reference_profile.json"
    profile.write_text(json.dumps({"prediction": {"edges": [-20, -5, 0, 5, 20], "counts": [1] * 4}}))
    assert shared_edges("regression", str(profile)) == (-20, -5, 0, 5, 20)
    p, m = _predictor(tmp_path, monkeypatch, task="regression", candidate_weight=50,
                      stable={"profile_path": str(profile)})
    _ask(p)
    assert {b for *_, bins in m.calls for b in bins} <= {0, 1, 2, 3}
    assert {role for _, role, *_ in m.calls} == {"stable", "candidate"}
