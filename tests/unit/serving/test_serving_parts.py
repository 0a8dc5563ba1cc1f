"""Unit tests of the replica's parts: auth, cache, circuit breaker, rules, body parsing."""

from __future__ import annotations

import asyncio
import json

import pytest

from framework.serving.auth import KeyRing, hash_key, key_records
from framework.serving.body import parse_predict, read_json
from framework.serving.cache import AnswerCache, cache_key
from framework.serving.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from framework.serving.fallback import compile_rules, first_match, parse_condition
from framework.serving.problems import ApiError
from framework.serving.settings import KeyRecord
from framework.spec.serving import Rule, Serving


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- auth -----------------------------------------------------------------------------------------

def _ring() -> KeyRing:
    return KeyRing([KeyRecord(name="all", sha256=hash_key("k-all"), models=["*"]),
                    KeyRecord(name="fraud", sha256=hash_key("k-fraud"), models=["fraud"])])


@pytest.mark.parametrize("headers,model,expect", [
    ({}, "churn", 401),
    ({"authorization": "Bearer nope"}, "churn", 401),
    ({"authorization": "Basic k-all"}, "churn", 401),
    ({"authorization": "Bearer k-fraud"}, "churn", 403),
    ({"x-api-key": "k-fraud"}, "fraud", None),
    ({"authorization": "Bearer k-all"}, "churn", None),
], ids=["none", "wrong", "basic", "scope", "x-api-key", "bearer"])
def test_keyring_answers_401_403_or_the_holder(headers, model, expect):
    ring = _ring()
    if expect is None:
        assert ring.check(headers, model) in {"all", "fraud"}
    else:
        with pytest.raises(ApiError) as err:
            ring.check(headers, model)
        assert err.value.status == expect
        assert "k-" not in err.value.message


def test_key_records_hash_secrets_and_read_keys_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVING_TEST_KEY", "s3cret")
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"name": "ops", "key": "other", "models": ["churn"]}]))
    serving = Serving.model_validate({"auth": {"api_keys": [
        {"name": "app", "key": {"env": "SERVING_TEST_KEY"}}], "keys_file": "keys.json"}})
    records = key_records(serving, tmp_path)
    assert records == [{"name": "app", "sha256": hash_key("s3cret"), "models": ["*"]},
                       {"name": "ops", "sha256": hash_key("other"), "models": ["churn"]}]
    assert "s3cret" not in json.dumps(records)


def test_key_records_name_the_recipe_key_when_the_secret_is_missing(monkeypatch):
    monkeypatch.delenv("SERVING_TEST_MISSING", raising=False)
    serving = Serving.model_validate({"auth": {"api_keys": [
        {"name": "app", "key": {"env": "SERVING_TEST_MISSING"}}]}})
    with pytest.raises(ValueError) as err:
        key_records(serving)
    text = str(err.value)
    assert text.startswith("serving.auth.api_keys[0].key (app): ") and "SecretRef" not in text
    assert "environment variable SERVING_TEST_MISSING" in text and "export SERVING_TEST_MISSING=" in text


# -- cache ----------------------------------------------------------------------------------------

def test_cache_expires_evicts_and_drops_old_versions():
    clock = Clock()
    cache = AnswerCache(max_entries=2, ttl_s=10, clock=clock)
    a, b, c = (cache_key("1", {"id": i}, {}) for i in "abc")
    cache.put(a, "A")
    cache.put(b, "B")
    assert cache.get(a) == "A"            # a is now most recent
    cache.put(c, "C")                      # evicts b
    assert cache.get(b) is None and cache.get(c) == "C"
    clock.now += 10
    assert cache.get(a) is None            # expired
    cache.put(cache_key("2", {}, {}), "new")
    cache.put(c, "C")
    cache.keep_versions({"2"})
    assert cache.get(c) is None and cache.get(cache_key("2", {}, {})) == "new"


def test_cache_key_ignores_dict_order():
    assert cache_key("1", {"a": 1, "b": 2}, {"x": 1.0}) == cache_key("1", {"b": 2, "a": 1}, {"x": 1.0})


# -- circuit breaker ------------------------------------------------------------------------------

def test_circuit_opens_fails_fast_and_one_probe_closes_it():
    clock = Clock()
    cb = CircuitBreaker(failure_threshold=3, reset_timeout_s=5, clock=clock)
    for _ in range(3):
        assert cb.allow()
        cb.failure()
    assert cb.state == OPEN and not cb.allow()
    clock.now += 5
    assert cb.allow() and cb.state == HALF_OPEN
    assert not cb.allow()                  # only one probe at a time
    cb.success()
    assert cb.state == CLOSED and cb.allow()


def test_failed_probe_reopens_the_circuit():
    clock = Clock()
    cb = CircuitBreaker(failure_threshold=1, reset_timeout_s=5, clock=clock)
    cb.failure()
    clock.now += 5
    assert cb.allow()
    cb.failure()
    assert cb.state == OPEN and not cb.allow()


# -- rules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,row,holds", [
    ("== 1", {"f": 1}, True), (">= 4", {"f": 3}, False), ("< 3", {"f": 2.5}, True),
    ("!= x", {"f": "y"}, True), ("month", {"f": "month"}, True), ("> 1", {}, False),
    ("> 1", {"f": "abc"}, False),
])
def test_conditions(text, row, holds):
    assert parse_condition("f", text).holds(row) is holds


def test_first_matching_rule_wins():
    rules = compile_rules([Rule(when={"a": ">= 4"}, prediction="high", probability=0.8),
                           Rule(when={"a": ">= 0"}, prediction="low")])
    assert first_match(rules, {"a": 5}).prediction == "high"
    assert first_match(rules, {"a": 1}).prediction == "low"
    assert first_match(rules, {}) is None


def test_a_rule_without_a_value_is_an_error():
    with pytest.raises(ValueError, match="no value after '>='"):
        parse_condition("a", ">=")


# -- body parsing ---------------------------------------------------------------------------------

class FakeRequest:
    """Just enough of a Starlette request for ``read_json``: headers and a body stream."""

    def __init__(self, body: bytes, ctype: str = "application/json", length: bool = True):
        self.headers = {"content-type": ctype}
        if length:
            self.headers["content-length"] = str(len(body))
        self._body = body

    async def stream(self):
        for i in range(0, len(self._body), 1000):
            yield self._body[i:i + 1000]

    async def body(self) -> bytes:
        return self._body


def _read(body: bytes, **kw):
    return asyncio.run(read_json(FakeRequest(body, **kw), max_bytes=5000))


@pytest.mark.parametrize("body,kw,status", [
    (b"{", {}, 400), (b'{"a": NaN}', {}, 400), (b'{"a": Infinity}', {}, 400),
    (b"[" * 100_000, {}, 413), (b"x" * 6000, {"length": False}, 413),
    (b"{}", {"ctype": "text/plain"}, 415), (b"\xff\xfe", {}, 400),
])
def test_read_json_rejects_bad_bodies(body, kw, status):
    with pytest.raises(ApiError) as err:
        _read(body, **kw)
    assert err.value.status == status


def test_read_json_rejects_deep_nesting_as_bad_json():
    with pytest.raises(ApiError) as err:
        asyncio.run(read_json(FakeRequest(b"[" * 4000 + b"]" * 4000), max_bytes=10_000))
    assert err.value.status == 400


@pytest.mark.parametrize("data,status", [
    ([], 422), ({"model_id": "churn"}, 422), ({"entities": {"a": 1.5}}, 422),
    ({"features": {"a": "x" * 300}}, 422), ({"features": {"a": 1e400}}, 422),
    ({"features": {}, "instances": [{}]}, 422), ({"features": {}, "extra": 1}, 422),
    ({"instances": [{}] * 3}, 413), ({"model_id": 5, "features": {}}, 422),
])
def test_parse_predict_names_what_is_wrong(data, status):
    with pytest.raises(ApiError) as err:
        parse_predict(data, max_instances=2)
    assert err.value.status == status


def test_parse_predict_single_and_batch_forms():
    single = parse_predict({"model_id": "churn", "entities": {"customer_id": "C1"}}, 10)
    assert [i.entities for i in single.as_instances()] == [{"customer_id": "C1"}]
    batch = parse_predict({"instances": [{"features": {"a": 1}}, {"entities": {"id": 2}}]}, 10)
    assert len(batch.as_instances()) == 2


def test_join_keys_inside_features_are_entity_keys():
    # the reference architecture's API example, as written
    body = {"model_id": "churn", "features": {"customer_id": "12345", "tenure_months": 24,
                                              "monthly_charges": 89.99}}
    req = parse_predict(body, 10, {"customer_id": "string"})
    assert req.entities == {"customer_id": "12345"}
    assert req.features == {"tenure_months": 24, "monthly_charges": 89.99}
    batch = parse_predict({"instances": [{"features": {"customer_id": "C1", "tenure_months": 1}}]},
                          10, {"customer_id": "string"})
    assert batch.instances[0].entities == {"customer_id": "C1"}


def test_a_join_key_given_twice_with_two_values_is_refused():
    with pytest.raises(ApiError) as err:
        parse_predict({"entities": {"customer_id": "A"}, "features": {"customer_id": "B"}}, 10,
                      {"customer_id": "string"})
    assert err.value.status == 422 and "features.customer_id" in err.value.message


@pytest.mark.parametrize("raw", [
    b'{"features": {"\\ud800": 1}}',                        # a lone surrogate as a feature name
    b'{"entities": {"customer_id": "\\udfff"}}',            # ... as an entity key
    b'{"instances": [{"features": {"x": 1}}, {"entities": {"k": "a\\ud83dz"}}]}',
    b'{"features": {"\xed\xa0\x80": 1}}',                   # an encoded surrogate (not UTF-8)
], ids=["feature-name", "entity-key", "deep", "encoded"])
def test_lone_surrogates_are_a_400_not_a_500(raw):
    from framework.serving.body import decode_json

    with pytest.raises(ApiError) as err:
        decode_json(raw)
    assert err.value.status == 400


def test_a_surrogate_pair_is_ordinary_text():
    from framework.serving.body import decode_json

    assert decode_json(b'{"entities": {"k": "\\ud83d\\ude00"}}') == {"entities": {"k": "\U0001F600"}}


def test_an_integer_too_large_for_a_float_is_a_422():
    from framework.serving.features import check_request_features

    with pytest.raises(ApiError) as err:
        check_request_features({"tenure_months": 10 ** 400}, ["tenure_months"])
    assert err.value.status == 422 and "tenure_months" in err.value.message


def test_adaptive_batching_waits_only_for_requests_on_their_way():
    from framework.serving.scoring import batch_wait_s

    assert batch_wait_s(inflight=1, queued=0, wait_s=0.002) is None     # alone: no queue, no wait
    assert batch_wait_s(inflight=3, queued=2, wait_s=0.002) == 0.0      # the others are queued
    assert batch_wait_s(inflight=16, queued=3, wait_s=0.002) == 0.002   # 12 more are coming
