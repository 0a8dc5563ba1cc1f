"""Hostile input and bad days, in-process: key checks before the lookup, breakers that count only
dependency failures, timeouts on every dependency call, byte-bounded cache, faults out of reach."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "serving"))
import serving_helpers as H  # noqa: E402

from framework.serving.body import read_json  # noqa: E402
from framework.serving.cache import AnswerCache, cache_key  # noqa: E402
from framework.serving.features import EntityKeyError, InMemoryLookup  # noqa: E402
from framework.serving.predictor import FEATURE_STORE, Predictor  # noqa: E402
from framework.serving.problems import ApiError  # noqa: E402
from framework.serving.schemas import Instance  # noqa: E402
from framework.serving.scoring import predict_matrix  # noqa: E402
from framework.serving.settings import AppArgs, proxy_request_timeout_s  # noqa: E402
from framework.serving.slots import SlotTable  # noqa: E402
from framework.spec.serving import Serving, Timeouts  # noqa: E402

FULL = {"tenure_months": 1, "monthly_charges": 50.0, "contract_months": 1, "support_calls": 0,
        "payment_delay_days": 1.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory, sample_data):
    out = tmp_path_factory.mktemp("models")
    return {"1": H.train_booster(sample_data, out / "m1.ubj", rounds=5, seed=1),
            "2": H.train_booster(sample_data, out / "m2.ubj", rounds=12, depth=4, seed=2)}


def _slot(version, models, **fault):
    return {"version": version, "model_path": str(models[version]),
            "model_uri": f"models:/churn/{version}", **({"fault": fault} if fault else {})}


class FeastLike:
    """An online store that, like Feast's serializer, refuses an int64 key out of range."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self, entity_rows):
        self.calls += 1
        for row in entity_rows:
            value = row.get("account_id")
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise ValueError("Value out of range: " + str(value)[:20])
        return [dict.fromkeys(H.FEATURES, 1.0) for _ in entity_rows]


def _predictor(models, lookup, serving=None, keys=None, slow_versions=()):
    import random

    base = H.compose_recipe().serving.model_dump(mode="json")
    args = AppArgs(model_id="churn", task="binary", feature_names=H.FEATURES,
                   entity_keys=keys or {"customer_id": "string"},
                   serving={**base, "cache": {"enabled": False}, **(serving or {})})
    rng = random.Random(0)

    async def predict_fn(slot, vectors):
        if slot.version in slow_versions:
            await asyncio.sleep(2.0)  # a model that hangs
        return predict_matrix(slot, vectors, rng)

    p = Predictor(args, lookup, predict_fn, seed=0)
    p.reconfigure({"slots": {"stable": _slot("1", models), "candidate": None},
                   "candidate_weight": 0, "shadow_percent": 0, "config_version": 1})
    return p


def _ask(p, *instances):
    return asyncio.run(p.predict([Instance(**i) for i in instances]))


def _store_failures(p) -> int:
    cb = p.breakers.get(FEATURE_STORE)
    return 0 if cb is None else cb.failures


# -- entity keys are checked before the lookup; bad ones never count as store failures ----------

INT_KEYS = {"account_id": "int64"}


@pytest.mark.parametrize("entities,keys,message", [
    ({"account_id": 2**63}, INT_KEYS,
     "Entity key 'account_id': got 9223372036854775808. It must fit in int64 "
     "(-9223372036854775808..9223372036854775807)."),
    ({"account_id": -(2**63) - 1}, INT_KEYS, "Entity key 'account_id': got -9223372036854775809."),
    ({"account_id": 10**200}, INT_KEYS, "Entity key 'account_id': got an integer of 201 digits."),
    ({"account_id": 2**31}, {"account_id": "int32"}, "It must fit in int32 (-2147483648..2147483647)."),
    ({"account_id": "A1"}, INT_KEYS, "Entity key 'account_id' must be an integer (int64); got str."),
    ({"customer_id": "C" * 257}, None,
     "Entity key 'customer_id' is 257 characters long; at most 256 are allowed "
     "(serving.max_entity_key_chars)."),
    ({"customer_id": "C1", "x" * 500: "y"}, None, "Unknown entity keys: " + "x" * 64 + "; this model"),
], ids=["int64-high", "int64-low", "huge", "int32", "wrong-type", "too-long", "unknown-long"])
def test_a_bad_entity_key_is_a_422_naming_it_and_the_store_is_never_asked(
        models, entities, keys, message):
    lookup = FeastLike()
    p = _predictor(models, lookup, keys=keys)
    with pytest.raises(ApiError) as err:
        _ask(p, {"entities": entities})
    assert err.value.status == 422 and message in err.value.message
    assert lookup.calls == 0 and _store_failures(p) == 0


def test_a_bad_key_in_a_batch_names_its_instance(models):
    p = _predictor(models, FeastLike(), keys=INT_KEYS)
    with pytest.raises(ApiError) as err:
        _ask(p, {"entities": {"account_id": 1}}, {"entities": {"account_id": 2**64}})
    assert err.value.message.startswith("instances[1].Entity key 'account_id': got 18446744073709551616.")
    assert err.value.details == [{"field": "instances[1].entities.account_id",
                                  "message": "invalid entity key"}]


def test_clients_with_bad_keys_cannot_open_the_feature_store_breaker_for_everyone(models):
    """The issue's attack: six bad keys opened the circuit; a good request then got the default."""
    lookup = FeastLike()
    p = _predictor(models, lookup, keys=INT_KEYS)
    for _ in range(p.args.serving.circuit_breaker.failure_threshold + 1):
        with pytest.raises(ApiError):
            _ask(p, {"entities": {"account_id": 2**63 + 7}})
    (ans,) = _ask(p, {"entities": {"account_id": 42}})
    assert not ans["degraded"] and ans["model_version"] == "1"
    assert p.breakers[FEATURE_STORE].state == "closed" and _store_failures(p) == 0


def test_a_feature_too_large_for_a_32_bit_float_is_a_422_not_read_as_infinity(models):
    p = _predictor(models, InMemoryLookup(["customer_id"], H.FEATURES, []))
    with pytest.raises(ApiError) as err:
        _ask(p, {"features": {**FULL, "monthly_charges": 1e39}})
    assert err.value.status == 422 and err.value.message == (
        "Features must be finite numbers of at most 3.4e38 in size (the model reads 32-bit "
        "floats) or booleans: monthly_charges.")
    assert "model:1" not in p.breakers
    (ans,) = _ask(p, {"features": {**FULL, "monthly_charges": 3.4e38}})
    assert not ans["degraded"]


class RefusingLookup:
    """A store whose client refuses a key the checks let through (it says so: EntityKeyError)."""

    def get(self, entity_rows):
        raise EntityKeyError("customer_id 'C\\x00' cannot be serialized")


def test_a_key_the_store_refuses_is_a_422_and_releases_a_half_open_probe(models):
    p = _predictor(models, RefusingLookup())
    cb = p.breaker(FEATURE_STORE)
    cb.failure(), cb.failure()
    cb.state, cb._opened_at = "open", -1e9          # open long ago: the next call is the probe
    with pytest.raises(ApiError) as err:
        _ask(p, {"entities": {"customer_id": "C\x00"}})
    assert err.value.status == 422
    assert err.value.message == ("The online store cannot look these entity keys up: "
                                 "customer_id 'C\\x00' cannot be serialized")
    assert cb.failures == 2 and cb.allow()          # not counted; the probe may go out again


# -- timeouts on the feature lookup and the model call -------------------------------------------

class StalledLookup:
    """A Redis that accepted the connection and never answers (kill -STOP)."""

    def get(self, entity_rows):
        time.sleep(1.5)
        return [dict.fromkeys(H.FEATURES, 1.0) for _ in entity_rows]


def test_a_stalled_feature_store_times_out_into_the_fallback_without_freezing_the_loop(models):
    p = _predictor(models, StalledLookup(), serving={"timeouts": {"feature_lookup_ms": 100}})
    ticks = []

    async def ticker():
        for _ in range(5):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.01)

    async def both():
        started = time.perf_counter()
        answers, _ = await asyncio.gather(
            p.predict([Instance(entities={"customer_id": "C000001"},
                                features={"contract_months": 1, "support_calls": 6})]), ticker())
        return answers, time.perf_counter() - started

    (ans,), took = asyncio.run(both())
    assert (ans["degraded"], ans["fallback"], ans["prediction"]) == (True, "rules", "high_risk")
    assert took < 0.6 and len(ticks) == 5 and ticks[-1] - ticks[0] < 0.3  # the loop kept running
    assert _store_failures(p) == 1


def test_a_hanging_model_times_out_into_the_previous_version_and_its_breaker_counts(models):
    p = _predictor(models, InMemoryLookup(["customer_id"], H.FEATURES, []),
                   serving={"timeouts": {"model_ms": 100}}, slow_versions={"2"})
    p.reconfigure({"slots": {"stable": _slot("2", models), "previous": _slot("1", models)},
                   "config_version": 2})
    started = time.perf_counter()
    (ans,) = _ask(p, {"features": FULL})
    assert time.perf_counter() - started < 1.0
    assert (ans["degraded"], ans["fallback"], ans["model_version"]) == (True, "previous_version", "1")
    assert p.breakers["model:2"].failures == 1


def test_timeouts_have_safe_defaults_and_a_request_timeout_above_the_rest():
    t = Serving().timeouts
    assert (t.feature_lookup_ms, t.model_ms, t.body_read_s, t.request_s) == (250, 1000, 5, 30)
    assert proxy_request_timeout_s(Serving()) == 31
    with pytest.raises(ValueError, match=r"Got request_s 5\. The request timeout must exceed "
                                         r"body_read_s \+ \(feature_lookup_ms \+ model_ms\) / 1000 "
                                         r"= 6\.25 s"):
        Timeouts(request_s=5)


class StalledRequest:
    """A client that declared its body and then sends nothing (a slow-loris)."""

    headers = {"content-type": "application/json", "content-length": "100"}

    async def body(self) -> bytes:
        await asyncio.sleep(60)
        return b"{}"


def test_a_body_that_never_arrives_is_a_408_after_the_deadline():
    started = time.perf_counter()
    with pytest.raises(ApiError) as err:
        asyncio.run(read_json(StalledRequest(), 5000, 0.1))
    assert time.perf_counter() - started < 1.0 and err.value.status == 408
    assert err.value.message == ("The request body did not arrive within 0.1 s "
                                 "(serving.timeouts.body_read_s); send the whole body at once.")


# -- the cache is bounded in bytes -----------------------------------------------------------------

def test_the_cache_is_bounded_in_bytes_as_well_as_entries():
    cache = AnswerCache(max_entries=10_000, ttl_s=60, max_bytes=64 * 1024)
    answer = {"prediction": "high_risk", "probability": 0.5, "model_version": "1"}
    for i in range(1000):
        cache.put(cache_key("1", {"customer_id": f"C{i:0250d}"}, {}), answer)
    assert 0 < cache.bytes <= 64 * 1024 and 20 < len(cache) < 100
    assert cache.get(cache_key("1", {"customer_id": f"C{999:0250d}"}, {})) == answer  # newest kept
    cache.put(cache_key("1", {"k": "x" * 100_000}, {}), answer)  # alone larger than the bound
    assert cache.get(cache_key("1", {"k": "x" * 100_000}, {})) is None and cache.bytes <= 64 * 1024
    cache.keep_versions(set())
    assert len(cache) == 0 and cache.bytes == 0
    assert Serving().cache.max_bytes == 32 * 1024 * 1024


# -- fault injection is for tests only -----------------------------------------------------------

def _table_with_fault(models):
    table = SlotTable(defaults=(H.FEATURES, "binary", None))
    table.apply({"slots": {"stable": _slot("1", models, error_rate=1.0, extra_latency_ms=50)}})
    return table


def test_a_fault_in_user_config_is_ignored_without_the_test_environment(models, monkeypatch):
    monkeypatch.delenv("LOOM_TEST_FAULTS", raising=False)
    table = _table_with_fault(models)
    assert (table.stable.error_rate, table.stable.extra_latency_ms) == (0.0, 0.0)
    assert "fault" not in table.describe()["stable"]


def test_a_fault_is_honoured_with_loom_test_faults_and_never_shown(models, monkeypatch):
    monkeypatch.setenv("LOOM_TEST_FAULTS", "1")
    table = _table_with_fault(models)
    assert (table.stable.error_rate, table.stable.extra_latency_ms) == (1.0, 50.0)
    assert set(table.describe()["stable"]) == {"version", "model_uri", "contract"}


# -- a replica warms its store before its first request ------------------------------------------

class ColdLookup:
    """A store whose first read is slow (Feast's is ~150 ms idle, more on a busy node)."""

    def __init__(self) -> None:
        self.calls = 0

    def get(self, entity_rows):
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.5)
        return [dict.fromkeys(H.FEATURES, 1.0) for _ in entity_rows]


def test_a_new_replica_reads_its_store_once_so_the_first_request_is_not_degraded(models, monkeypatch):
    # Before: the first request after a deploy paid Feast's cold read, passed feature_lookup_ms on
    # a loaded CI node and got the default answer (model_version None) from a healthy replica.
    from framework.serving import app

    lookup = ColdLookup()
    own_class = app.LoomPredictor.__bases__[0]  # serve.ingress subclasses a copy of it
    monkeypatch.setitem(own_class.__init__.__globals__, "build_lookup", lambda *a: lookup)
    base = H.compose_recipe().serving.model_dump(mode="json")
    args = AppArgs(model_id="churn", task="binary", feature_names=H.FEATURES,
                   entity_keys={"customer_id": "string"},
                   serving={**base, "cache": {"enabled": False}, "batching": {"enabled": False},
                            "timeouts": {"feature_lookup_ms": 100}})
    replica = own_class(args.model_dump(mode="json"))
    assert lookup.calls == 1  # warmed in the constructor, before Serve counts the replica ready
    replica.reconfigure({"slots": {"stable": _slot("1", models), "candidate": None},
                         "candidate_weight": 0, "shadow_percent": 0, "config_version": 1})
    (ans,) = asyncio.run(replica.predictor.predict([Instance(entities={"customer_id": "C000001"})]))
    assert (ans["degraded"], ans["model_version"]) == (False, "1")


def test_warming_a_store_that_is_down_leaves_it_to_the_breaker(models):
    class Down:
        def get(self, entity_rows):
            raise ConnectionError("redis: connection refused")

    p = _predictor(models, Down())
    assert p.warm() is False and _store_failures(p) == 0  # the breaker counts requests only
    assert _predictor(models, ColdLookup()).warm() is True


def test_unwarmed_the_cold_read_passes_the_deadline_and_the_first_answer_is_degraded(models):
    p = _predictor(models, ColdLookup(), serving={"timeouts": {"feature_lookup_ms": 100}})
    (ans,) = _ask(p, {"entities": {"customer_id": "C000001"}})
    assert (ans["degraded"], ans["model_version"]) == (True, None)  # what warm() spares a replica
