"""The prediction API on real Ray Serve over real HTTP: answers, bad input, auth, cache, fallback."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import serving_helpers as H

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
FRAUD_ONLY = "fraud-only-key-42"


@pytest.fixture(scope="module")
def app(ray_session, sample_data, tmp_path_factory):
    """The churn app deployed declaratively on Serve (127.0.0.1, a free port), memory features."""
    from ray import serve

    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import runtime, traffic

    os.environ["LOOM_API_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("serving")
    models = {"1": H.train_booster(sample_data, tmp / "m1.ubj", rounds=5, seed=1),
              "2": H.train_booster(sample_data, tmp / "m2.ubj", rounds=12, depth=4, seed=2)}
    keys = tmp / "keys.json"
    keys.write_text(json.dumps([{"name": "fraud_team", "key": FRAUD_ONLY, "models": ["fraud"]}]))
    recipe = H.compose_recipe(overrides=[
        f"++serving.auth.keys_file={keys}", "++serving.num_cpus_per_replica=0.25",
        "++serving.circuit_breaker.failure_threshold=3", "++serving.circuit_breaker.reset_timeout_s=1",
        "++serving.max_body_bytes=65536", "++serving.max_instances=50",
        "++serving.max_ongoing_requests=8", "++serving.batching.max_batch_size=8",
        "++serving.timeouts.body_read_s=1", "++serving.timeouts.model_ms=800"])
    runtime.ensure_serve("127.0.0.1", H.free_port())
    host, port = runtime.http_address()
    features = {"type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
                "timestamp_field": "event_timestamp"}
    args = cfg.app_args(recipe, tmp, features=features)
    slot = {"version": "1", "model_path": str(models["1"]), "model_uri": "models:/churn/1"}
    # Fault injection (user_config 'fault') is honoured only where the replica's environment says so.
    traffic.deploy_app({**cfg.app_config("churn", args, cfg.initial_user_config(slot)),
                        "runtime_env": {"env_vars": {"LOOM_TEST_FAULTS": "1"}}})
    traffic.ensure_gateway("/")
    yield {"base": f"http://{host}:{port}", "models": models,
           "table": H.latest_features(sample_data).set_index("customer_id")}
    traffic.delete_app("churn")
    serve.shutdown()


def _direct(path: Path, rows: list[dict]) -> list[float]:
    import numpy as np
    import xgboost

    booster = xgboost.Booster(model_file=str(path))
    matrix = np.asarray([[r[f] for f in H.FEATURES] for r in rows], dtype=np.float32)
    return [float(x) for x in booster.inplace_predict(matrix)]


def _predict(app, body, key=KEY, path="/v1/predictions"):
    return H.call(app["base"] + path, body, key)


def _models(app):
    status, _, body = H.call(app["base"] + "/v1/models", key=KEY)
    assert status == 200
    return body["models"][0]


def _set_user_config(slots, cv, **extra):
    from framework.backends.ray_serve import traffic

    traffic.update_user_config("churn", {"slots": slots, "candidate_weight": 0, "shadow_percent": 0,
                                         "config_version": cv, **extra})


def _slot(app, version, **fault):
    return {"version": version, "model_path": str(app["models"][version]),
            "model_uri": f"models:/churn/{version}", **({"fault": fault} if fault else {})}


def test_http_answers_equal_the_models_in_process_predictions(app):
    ids = [f"C{i:06d}" for i in range(0, 400, 20)]
    rows = [app["table"].loc[i].to_dict() for i in ids]
    expected = _direct(app["models"]["1"], rows)
    for cid, want in zip(ids, expected):
        status, _, body = _predict(app, {"model_id": "churn", "entities": {"customer_id": cid}})
        assert status == 200, body
        assert body["probability"] == pytest.approx(want, abs=1e-6)
        assert body["prediction"] == ("high_risk" if want >= 0.5 else "low_risk")
        assert body["model_version"] == "1" and body["degraded"] is False
    batch = {"instances": [{"features": {f: r[f] for f in H.FEATURES}} for r in rows[:5]]}
    status, _, body = _predict(app, batch, path="/v1/models/churn/predictions")
    assert status == 200
    assert [a["probability"] for a in body["predictions"]] == pytest.approx(expected[:5], abs=1e-6)


def _malformed_cases() -> list[tuple[str, dict]]:
    good = {f: 1.0 for f in H.FEATURES}
    bodies = [
        [], [1, 2], "text", 42, None, {}, {"model_id": "churn"}, {"model_id": 1, "features": good},
        {"model_id": ["churn"], "features": good}, {"model_id": "churn", "features": []},
        {"model_id": "churn", "features": "x"}, {"model_id": "churn", "features": {"tenure_months": "3"}},
        {"model_id": "churn", "features": {"tenure_months": [1]}},
        {"model_id": "churn", "features": {"tenure_months": {"a": 1}}},
        {"model_id": "churn", "features": {**good, "nope": 1}},
        {"model_id": "churn", "features": {"tenure_months": 1}},
        {"model_id": "churn", "entities": {"customer_id": 1.5}},
        {"model_id": "churn", "entities": {"customer_id": None}},
        {"model_id": "churn", "entities": {"customer_id": ["C1"]}},
        {"model_id": "churn", "entities": {"account_id": "C1"}},
        {"model_id": "churn", "entities": {"customer_id": "NOT-THERE"}},
        {"model_id": "churn", "entities": []}, {"model_id": "churn", "entities": "C1"},
        {"model_id": "churn", "features": good, "extra": True},
        {"model_id": "churn", "features": good, "instances": [{"features": good}]},
        {"model_id": "churn", "instances": []}, {"model_id": "churn", "instances": {}},
        {"model_id": "churn", "instances": [1]}, {"model_id": "churn", "instances": [{"x": 1}]},
        {"model_id": "churn", "instances": [{"features": good}] * 51},
        {"model_id": "churn", "instances": [{"features": {"tenure_months": 1}}]},
        {"model_id": "nope", "features": good}, {"model_id": "", "features": good},
        {"model_id": "x" * 500, "features": good}, {"model_id": "fraud", "features": good},
        {"model_id": "churn", "features": {**good, "tenure_months": 1e400}},
        {"model_id": "churn", "features": {**good, "tenure_months": -1e400}},
        {"model_id": "churn", "features": {f: None for f in H.FEATURES}},
        {"model_id": "churn", "features": {"": 1}},
    ]
    cases = [("json", {"body": b}) for b in bodies]
    raws = [b"", b"{", b'{"model_id": "churn", "features": {"tenure_months": NaN}}',
            b'{"model_id": "churn", "features": {"tenure_months": Infinity}}',
            b'{"model_id": "churn", "features": {"tenure_months": -Infinity}}',
            b"\xff\xfe\x00", b"[" * 5000 + b"]" * 5000, b'{"a": 1}{"b": 2}', b"nul",
            b'{"model_id": "churn", "features": {"tenure_months": 1' + b"0" * 5000 + b"}}",
            b"x" * 70_000, b'{"model_id": "churn", "features": ' + b"[" * 30_000 + b"}",
            b'{"model_id": "churn", "features": {"\\ud800": 1}}',
            b'{"model_id": "churn", "entities": {"customer_id": "\\udfff"}}',
            b'{"model_id": "churn", "features": {"tenure_months": 1' + b"0" * 400 + b"}}"]
    cases += [("raw", {"raw": r}) for r in raws]
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""):
        cases.append(("raw", {"raw": json.dumps({"model_id": "churn", "features": good}).encode(),
                              "headers": {"Content-Type": ctype}}))
    cases += [("path", {"path": "/v1/models/nope/predictions", "body": {"features": good}}),
              ("path", {"path": "/v1/models/churn/predictions", "body": {"model_id": "fraud",
                                                                         "features": good}}),
              ("path", {"path": "/v1/nothing", "body": {"features": good}}),
              ("method", {"path": "/v1/predictions", "method": "PUT", "body": {"features": good}}),
              ("method", {"path": "/v1/models", "method": "DELETE"})]
    return cases


def test_malformed_requests_get_4xx_never_500_or_a_traceback(app):
    cases = _malformed_cases()
    assert len(cases) >= 50
    seen = []
    for kind, case in cases:
        status, _, body = H.call(app["base"] + case.get("path", "/v1/predictions"), case.get("body"),
                                 KEY, method=case.get("method"), headers=case.get("headers"),
                                 raw=case.get("raw"))
        text = json.dumps(body)
        seen.append(status)
        assert 400 <= status < 500, (kind, case, status, text[:300])
        assert "Traceback" not in text and "/work/" not in text and "File \"" not in text
        if isinstance(body, dict):
            assert set(body) == {"error", "request_id"}, text[:300]
    assert {400, 404, 413, 415, 422} <= set(seen)
    # hostile keys never reach the feature store, so they cannot open its breaker for everyone
    assert _models(app)["circuits"]["feature_store"]["state"] == "closed"


def test_every_route_needs_a_key_and_keys_are_scoped(app):
    good = {f: 1.0 for f in H.FEATURES}
    routes = [("GET", "/v1/models", None), ("POST", "/v1/predictions", {"model_id": "churn", "features": good}),
              ("POST", "/v1/models/churn/predictions", {"features": good}),
              ("GET", "/v1/models/churn", None), ("GET", "/v1/models/churn/docs", None),
              ("GET", "/v1/models/churn/openapi.json", None)]
    for method, path, body in routes:
        status, headers, _ = H.call(app["base"] + path, body, None, method=method)
        assert status == 401, path
        status, _, _ = H.call(app["base"] + path, body, "wrong-key", method=method)
        assert status == 401, path
        status, _, _ = H.call(app["base"] + path, body, KEY, method=method)
        assert status == 200, path
    for method, path, body in routes[1:4]:
        status, _, resp = H.call(app["base"] + path, body, FRAUD_ONLY, method=method)
        assert status == 403, (path, resp)
    # the listing shows only what the key may see: a fraud-only key sees no churn
    status, _, listed = H.call(app["base"] + "/v1/models", key=FRAUD_ONLY)
    assert status == 200 and listed == {"models": []}
    status, _, _ = H.call(app["base"] + "/v1/models", headers={"X-API-Key": KEY})
    assert status == 200
    assert H.call(app["base"] + "/v1/models/churn/healthz")[0] == 200
    status, _, spec = H.call(app["base"] + "/v1/models/churn/openapi.json", key=KEY)
    assert "/predictions" in spec["paths"]


def test_a_user_config_change_is_applied_in_place_without_failed_requests(app):
    before = _models(app)
    body = {"model_id": "churn", "features": {f: 2.0 for f in H.FEATURES}}
    stop = time.monotonic() + 600

    def load() -> list[int]:
        statuses = []
        while time.monotonic() < stop and len(statuses) < 2000:
            statuses.append(_predict(app, body)[0])
            if getattr(load, "done", False):
                break
        return statuses

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load) for _ in range(4)]
        time.sleep(0.3)
        _set_user_config({"stable": _slot(app, "1"), "candidate": None}, before["config_version"] + 1)
        _wait_for(lambda: _models(app)["config_version"] == before["config_version"] + 1)
        load.done = True
        statuses = [s for f in futures for s in f.result()]
    after = _models(app)
    assert len(statuses) >= 20 and set(statuses) == {200}
    assert after["replica"] == before["replica"]


def _wait_for(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_cache_hits_and_a_version_change_leaves_no_stale_answer(app):
    body = {"model_id": "churn", "entities": {"customer_id": "C000333"}}
    first = _predict(app, body)[2]
    second = _predict(app, body)[2]
    assert second["cached"] and second["probability"] == first["probability"]
    cv = _models(app)["config_version"]
    _set_user_config({"stable": _slot(app, "2"), "candidate": None}, cv + 1)
    _wait_for(lambda: _models(app)["stable"]["version"] == "2")
    after = _predict(app, body)[2]
    want = _direct(app["models"]["2"], [app["table"].loc["C000333"].to_dict()])[0]
    assert after["model_version"] == "2" and not after["cached"]
    assert after["probability"] == pytest.approx(want, abs=1e-6)


def test_a_failing_primary_degrades_opens_the_circuit_and_one_probe_closes_it(app):
    from framework.serving.stats import read_window

    started = time.time()
    cv = _models(app)["config_version"]
    _set_user_config({"stable": _slot(app, "2", error_rate=1.0), "candidate": None,
                      "previous": _slot(app, "1")}, cv + 1, record_samples=True)
    _wait_for(lambda: _models(app)["config_version"] == cv + 1)
    answers = [_predict(app, {"model_id": "churn", "entities": {"customer_id": f"C000{500 + i}"}})
               for i in range(5)]
    assert all(s == 200 and b["degraded"] and b["fallback"] == "previous_version"
               and b["model_version"] == "1" for s, _, b in answers)
    assert _models(app)["circuits"]["model:2"]["state"] == "open"
    _set_user_config({"stable": _slot(app, "2"), "candidate": None, "previous": _slot(app, "1")},
                     cv + 2)
    _wait_for(lambda: _models(app)["config_version"] == cv + 2)
    time.sleep(1.0)                            # the breaker's reset timeout (1 s in this recipe)
    probe = _predict(app, {"model_id": "churn", "entities": {"customer_id": "C000600"}})[2]
    assert not probe["degraded"] and probe["model_version"] == "2"
    assert _models(app)["circuits"]["model:2"]["state"] == "closed"

    def failed_samples() -> list[dict]:
        return [s for s in read_window("churn", started, time.time() + 1)
                if s["version"] == "2" and not s["ok"]]

    _wait_for(lambda: len(failed_samples()) >= 3)
    assert {s["role"] for s in failed_samples()} == {"stable"}


def test_overload_is_a_json_503_with_retry_after(app):
    cv = _models(app)["config_version"]
    slow = _slot(app, "1", extra_latency_ms=400)
    _set_user_config({"stable": slow, "candidate": None}, cv + 1)
    _wait_for(lambda: _models(app)["config_version"] == cv + 1)
    body = {"model_id": "churn", "features": {f: 3.0 for f in H.FEATURES}}
    try:
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: _predict(app, body), range(24)))
    finally:
        _set_user_config({"stable": _slot(app, "1"), "candidate": None}, cv + 2)
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    for status, headers, payload in answers:
        if status == 503:
            assert headers.get("retry-after") == "1" and payload["error"]["code"] == "unavailable"


def test_a_model_slower_than_its_timeout_is_answered_by_the_fallback_and_counted(app):
    cv = _models(app)["config_version"]
    _set_user_config({"stable": _slot(app, "2", extra_latency_ms=3000), "candidate": None,
                      "previous": _slot(app, "1")}, cv + 1)
    try:
        _wait_for(lambda: _models(app)["config_version"] == cv + 1)
        started = time.monotonic()
        status, _, body = _predict(app, {"model_id": "churn", "features": {f: 4.0 for f in H.FEATURES}})
        took = time.monotonic() - started
        failures = _models(app)["circuits"]["model:2"]["failures"]
    finally:
        _set_user_config({"stable": _slot(app, "1"), "candidate": None}, cv + 2)
        _wait_for(lambda: _models(app)["config_version"] == cv + 2)
    assert status == 200 and body["degraded"] and body["fallback"] == "previous_version", body
    assert body["model_version"] == "1" and 0.7 < took < 2.5     # serving.timeouts.model_ms=800
    assert failures >= 1


def test_a_body_that_never_arrives_is_a_json_408_after_body_read_s(app):
    import socket
    from urllib.parse import urlparse

    url = urlparse(app["base"])
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(b"POST /v1/models/churn/predictions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                     b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n{\"feat")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    took = time.monotonic() - started
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"application/json" in head.lower() and 0.9 < took < 5
    assert json.loads(payload)["error"] == {
        "code": "request_timeout", "details": [],
        "message": "The request body did not arrive within 1 s (serving.timeouts.body_read_s); "
                   "send the whole body at once."}


def test_injected_faults_are_never_shown_to_clients(app):
    model = _models(app)
    for role in ("stable", "candidate", "previous"):
        assert model[role] is None or "fault" not in model[role], model[role]
    assert '"fault"' not in json.dumps(model)
