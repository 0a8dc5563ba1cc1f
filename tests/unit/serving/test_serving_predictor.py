"""The whole request in-process (no Serve): features, slots, cache, fallback chain, breakers, stats."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "serving"))
import serving_helpers as H  # noqa: E402

from framework.serving.features import InMemoryLookup  # noqa: E402
from framework.serving.predictor import Predictor  # noqa: E402
from framework.serving.problems import ApiError  # noqa: E402
from framework.serving.schemas import Instance  # noqa: E402
from framework.serving.scoring import predict_matrix  # noqa: E402
from framework.serving.settings import AppArgs  # noqa: E402
from framework.serving.stats import StatsRecorder, StatsStore  # noqa: E402


@pytest.fixture(autouse=True)
def _faults(monkeypatch):
    """These tests inject model faults through user_config (honoured only with this set)."""
    monkeypatch.setenv("LOOM_TEST_FAULTS", "1")


@pytest.fixture(scope="module")
def models(tmp_path_factory, sample_data):
    out = tmp_path_factory.mktemp("models")
    return {"1": H.train_booster(sample_data, out / "m1.ubj", rounds=5, seed=1),
            "2": H.train_booster(sample_data, out / "m2.ubj", rounds=12, depth=4, seed=2)}


def _slot(version, path, **fault):
    return {"version": version, "model_path": str(path), "model_uri": f"models:/churn/{version}",
            **({"fault": fault} if fault else {})}


def _config(models, stable="1", candidate=None, weight=0, cv=1, **fault):
    return {"slots": {"stable": _slot(stable, models[stable], **fault),
                      "candidate": _slot(candidate, models[candidate]) if candidate else None},
            "candidate_weight": weight, "shadow_percent": 0, "config_version": cv}


def _predictor(models, sample_data, serving=None, stats=None, fallback_models=()):
    import random

    rows = H.latest_features(sample_data).to_dict(orient="records")
    base = H.compose_recipe().serving.model_dump(mode="json")
    args = AppArgs(model_id="churn", task="binary", feature_names=H.FEATURES,
                   entity_keys={"customer_id": "string"}, serving={**base, **(serving or {})},
                   fallback_models=list(fallback_models))
    rng = random.Random(0)

    async def predict_fn(slot, vectors):
        return predict_matrix(slot, vectors, rng)

    p = Predictor(args, InMemoryLookup(["customer_id"], H.FEATURES, rows), predict_fn, stats=stats, seed=0)
    p.reconfigure(_config(models))
    return p, {r["customer_id"]: r for r in rows}


def _ask(p, *instances):
    return asyncio.run(p.predict([Instance(**i) for i in instances]))


def _direct(path, row):
    import numpy as np
    import xgboost

    booster = xgboost.Booster(model_file=str(path))
    return float(booster.inplace_predict(np.asarray([[row[f] for f in H.FEATURES]], dtype=np.float32))[0])


def test_online_features_and_overrides_give_the_models_own_answer(models, sample_data):
    p, table = _predictor(models, sample_data)
    (ans,) = _ask(p, {"entities": {"customer_id": "C000007"}})
    assert ans["probability"] == pytest.approx(_direct(models["1"], table["C000007"]), abs=1e-6)
    assert ans["prediction"] in {"high_risk", "low_risk"} and ans["model_version"] == "1"
    override = {**table["C000007"], "support_calls": 9}
    (ans2,) = _ask(p, {"entities": {"customer_id": "C000007"}, "features": {"support_calls": 9}})
    assert ans2["probability"] == pytest.approx(_direct(models["1"], override), abs=1e-6)


def test_missing_features_are_a_422_naming_them(models, sample_data):
    p, _ = _predictor(models, sample_data)
    with pytest.raises(ApiError) as err:
        _ask(p, {"features": {"tenure_months": 3}})
    assert err.value.status == 422 and "monthly_charges" in err.value.message
    with pytest.raises(ApiError) as err:
        _ask(p, {"entities": {"customer_id": "NOPE"}})
    assert err.value.status == 422 and "support_calls" in err.value.message
    with pytest.raises(ApiError) as err:
        _ask(p, {"entities": {"account_id": 1}})
    assert err.value.status == 422 and "account_id" in err.value.message


def test_cache_hits_and_a_version_change_leaves_no_stale_answer(models, sample_data):
    p, table = _predictor(models, sample_data)
    first = _ask(p, {"entities": {"customer_id": "C000001"}})[0]
    again = _ask(p, {"entities": {"customer_id": "C000001"}})[0]
    assert again["cached"] and again["probability"] == first["probability"]
    p.reconfigure(_config(models, stable="2", cv=2))
    after = _ask(p, {"entities": {"customer_id": "C000001"}})[0]
    assert not after["cached"] and after["model_version"] == "2"
    assert after["probability"] == pytest.approx(_direct(models["2"], table["C000001"]), abs=1e-6)


def test_a_failing_stable_falls_back_to_the_previous_version_then_rules(models, sample_data):
    p, _ = _predictor(models, sample_data, serving={"cache": {"enabled": False}})
    p.reconfigure(_config(models, stable="2", cv=2, error_rate=1.0))
    (ans,) = _ask(p, {"entities": {"customer_id": "C000003"}})
    assert ans["degraded"] and ans["fallback"] == "previous_version" and ans["model_version"] == "1"
    p.slots.previous = None
    features = {"tenure_months": 1, "monthly_charges": 50.0, "contract_months": 1,
                "support_calls": 5, "payment_delay_days": 1.0}
    (ans,) = _ask(p, {"features": features})
    assert (ans["fallback"], ans["prediction"], ans["probability"]) == ("rules", "high_risk", 0.8)
    (ans,) = _ask(p, {"features": {**features, "support_calls": 0}})
    assert (ans["fallback"], ans["prediction"]) == ("default", "low_risk")


def test_the_model_circuit_opens_and_one_probe_closes_it(models, sample_data):
    p, _ = _predictor(models, sample_data, serving={"cache": {"enabled": False}})
    p.reconfigure(_config(models, cv=2, error_rate=1.0))
    threshold = p.args.serving.circuit_breaker.failure_threshold
    for i in range(threshold):
        assert _ask(p, {"entities": {"customer_id": f"C00010{i}"}})[0]["degraded"]
    breaker = p.breakers["model:1"]
    assert breaker.state == "open"
    p.reconfigure(_config(models, cv=3))                      # the fault is gone
    assert _ask(p, {"entities": {"customer_id": "C000200"}})[0]["degraded"]  # still open: fails fast
    breaker._opened_at -= breaker.reset_timeout_s               # the reset timeout has passed
    ans = _ask(p, {"entities": {"customer_id": "C000201"}})[0]
    assert not ans["degraded"] and breaker.state == "closed"


def test_candidate_weight_routes_traffic_and_samples_record_roles(models, sample_data):
    stats = StatsRecorder("churn", enabled=True)
    p, _ = _predictor(models, sample_data, serving={"cache": {"enabled": False}}, stats=stats)
    p.reconfigure(_config(models, candidate="2", weight=100, cv=2))
    (ans,) = _ask(p, {"entities": {"customer_id": "C000004"}})
    assert ans["model_version"] == "2"
    assert not stats._buffer  # no rollout asked for samples: none kept
    p.reconfigure({**_config(models, candidate="2", weight=100, cv=3), "record_samples": True})
    (ans,) = _ask(p, {"entities": {"customer_id": "C000004"}})
    store = StatsStore(capacity=10)
    store.add(list(stats._buffer))
    (sample,) = store.window(0, float("inf"))
    assert sample["role"] == "candidate" and sample["version"] == "2" and sample["ok"]
    assert sample["score"] == pytest.approx(ans["probability"])


def test_stats_store_is_a_bounded_ring():
    store = StatsStore(capacity=3)
    store.add([{"ts": float(t)} for t in range(5)])
    assert [s["ts"] for s in store.window(0, 10)] == [2.0, 3.0, 4.0]
    assert [s["ts"] for s in store.window(3, 4)] == [3.0]


def test_a_fallback_model_answers_when_the_primary_fails(models, sample_data):
    chain = [{"type": "model", "model_name": "churn_simple"}, {"type": "default", "prediction": "x"}]
    p, table = _predictor(models, sample_data, serving={"fallback": chain},
                          fallback_models=[{"name": "churn_simple", "version": "9",
                                            "model_path": str(models["2"])}])
    p.reconfigure(_config(models, cv=2, error_rate=1.0))
    (ans,) = _ask(p, {"entities": {"customer_id": "C000005"}})
    assert (ans["fallback"], ans["model_version"], ans["degraded"]) == ("model", "9", True)
    assert ans["probability"] == pytest.approx(_direct(models["2"], table["C000005"]), abs=1e-6)


class BrokenLookup:
    """A feature store that is down."""

    calls = 0

    def get(self, entity_rows):
        BrokenLookup.calls += 1
        raise ConnectionError("online store unreachable")


def test_a_failing_feature_store_degrades_to_rules_and_its_circuit_opens(models, sample_data):
    p, _ = _predictor(models, sample_data, serving={"cache": {"enabled": False}})
    p.lookup = BrokenLookup()
    threshold = p.args.serving.circuit_breaker.failure_threshold
    for _ in range(threshold + 2):
        (ans,) = _ask(p, {"entities": {"customer_id": "C000009"},
                          "features": {"contract_months": 1, "support_calls": 6}})
        assert (ans["degraded"], ans["fallback"], ans["prediction"]) == (True, "rules", "high_risk")
    assert BrokenLookup.calls == threshold and p.breakers["feature_store"].state == "open"
    full = {"tenure_months": 1, "monthly_charges": 50.0, "contract_months": 1,
            "support_calls": 0, "payment_delay_days": 1.0}
    (ans,) = _ask(p, {"entities": {"customer_id": "C000009"}, "features": full})
    assert not ans["degraded"] and ans["model_version"] == "1"


def test_shadow_traffic_is_recorded_never_returned(models, sample_data):
    stats = StatsRecorder("churn", enabled=True)
    p, _ = _predictor(models, sample_data, serving={"cache": {"enabled": False}}, stats=stats)
    config = _config(models, candidate="2", weight=0, cv=2)
    p.reconfigure({**config, "shadow_percent": 100, "record_samples": True})

    async def ask_and_let_shadow_run():
        answers = await p.predict([Instance(entities={"customer_id": "C000011"})])
        for _ in range(5):
            await asyncio.sleep(0)
        return answers

    (ans,) = asyncio.run(ask_and_let_shadow_run())
    assert ans["model_version"] == "1"
    roles = {(s["role"], s["version"]) for s in stats._buffer}
    assert roles == {("stable", "1"), ("shadow", "2")}
    # the shadow sample carries the stable answer's score, so agreement can be judged per request
    (stable,) = [s for s in stats._buffer if s["role"] == "stable"]
    (shadow,) = [s for s in stats._buffer if s["role"] == "shadow"]
    assert shadow["stable_score"] == stable["score"] and shadow["score"] != stable["score"]


def test_a_pin_answers_with_that_version_and_bypasses_the_split(models, sample_data):
    p, _ = _predictor(models, sample_data)
    p.reconfigure(_config(models, stable="1", candidate="2", weight=100, cv=2))
    inst = [Instance(entities={"customer_id": "C000042"})]
    assert _ask(p, {"entities": {"customer_id": "C000042"}})[0]["model_version"] == "2"  # the split
    for pin, version in (("1", "1"), ("stable", "1"), ("champion", "1"), ("candidate", "2")):
        assert asyncio.run(p.predict(inst, pin))[0]["model_version"] == version
    with pytest.raises(ApiError) as err:
        asyncio.run(p.predict(inst, "7"))
    assert err.value.status == 404 and "1 (stable), 2 (candidate)" in err.value.message


def test_missing_features_go_to_the_model_when_the_recipe_says_so(models, sample_data):
    strict, _ = _predictor(models, sample_data)
    partial = {"features": {"tenure_months": 24, "monthly_charges": 89.99}}
    with pytest.raises(ApiError, match="Missing required features"):
        _ask(strict, partial)
    lenient, _ = _predictor(models, sample_data, serving={"missing_features": "model"})
    (answer,) = _ask(lenient, partial)
    assert answer["model_version"] == "1" and 0 <= answer["probability"] <= 1
    assert answer["missing_features"] == ["contract_months", "support_calls", "payment_delay_days"]
    full = _ask(lenient, {"entities": {"customer_id": "C000042"}})[0]
    assert "missing_features" not in full


def test_events_pick_their_own_slot_and_a_bad_one_fails_alone(models, sample_data):
    p, table = _predictor(models, sample_data, serving={"cache": {"enabled": False}})
    p.reconfigure({**_config(models, candidate="2", weight=50, cv=2)})
    events = [Instance(entities={"customer_id": f"C{i:06d}"}) for i in range(200)]
    events[5] = Instance(entities={"customer_id": "NOPE"})  # no stored row: missing features
    events[9] = Instance(entities={"customer_id": "C000009"}, features={"colour": 1})
    out = asyncio.run(p.predict_each(events))
    assert isinstance(out[5], ApiError) and out[5].status == 422 and "support_calls" in out[5].message
    assert isinstance(out[9], ApiError) and "colour" in out[9].message
    versions = [a["model_version"] for i, a in enumerate(out) if i not in (5, 9)]
    assert 60 < versions.count("2") < 140 and versions.count("1") + versions.count("2") == 198
    for i in (0, 1, 2):
        model = models[out[i]["model_version"]]
        assert out[i]["probability"] == pytest.approx(_direct(model, table[f"C{i:06d}"]), abs=1e-6)


def test_events_wait_while_no_version_is_loaded(models, sample_data):
    p, _ = _predictor(models, sample_data)
    p.slots.stable = None
    with pytest.raises(ApiError) as err:
        asyncio.run(p.predict_each([Instance(entities={"customer_id": "C000001"})]))
    assert err.value.status == 503
