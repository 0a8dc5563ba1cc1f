"""Property-based fuzzing of the prediction API on real Ray Serve over real HTTP: whatever a client
sends, the answer is a 2xx or a 4xx in Loom's one JSON error shape, never a 5xx, a traceback,
plain text or a stall; and no client input counts as a feature-store failure.

Two model apps (a string join key and an int64 one, in-memory features) behind the gateway.
Hypothesis draws batches of requests (bodies, routes, content types, keys), sent concurrently on
keep-alive connections; derandomized, so a run is repeatable and bounded in time.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import serving_helpers as H

pytestmark = pytest.mark.integration
KEY = "fuzz-key-0123456789"
#: Requests per Hypothesis example (sent at once) and examples: >= 10,000 bodies in all.
PER_EXAMPLE = 16
EXAMPLES = 640
MAX_BODY = 65_536
MAX_INSTANCES = 50
ACCT_ROW = {"account_id": 42, **{f: 1.0 for f in H.FEATURES}}


@pytest.fixture(scope="module")
def apps(ray_session, sample_data, tmp_path_factory):
    """churn (customer_id: string) and acct (account_id: int64) on Serve, behind the gateway."""
    from ray import serve

    from framework.backends.ray_serve import config as cfg
    from framework.backends.ray_serve import runtime, traffic

    os.environ["LOOM_API_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("fuzz")
    model = H.train_booster(sample_data, tmp / "m1.ubj", rounds=5, seed=1)
    recipe = H.compose_recipe(overrides=[
        "++serving.num_cpus_per_replica=0.25", f"++serving.max_body_bytes={MAX_BODY}",
        f"++serving.max_instances={MAX_INSTANCES}", "++serving.max_ongoing_requests=64",
        "serving.cache.enabled=false"])
    runtime.ensure_serve("127.0.0.1", H.free_port())
    host, port = runtime.http_address()
    slot = {"version": "1", "model_path": str(model), "model_uri": "models:/churn/1"}
    churn = cfg.app_args(recipe, tmp, features={
        "type": "memory", "path": str(sample_data / "churn" / "features.parquet"),
        "timestamp_field": "event_timestamp"})
    acct = {**cfg.app_args(recipe, tmp, features={"type": "memory", "rows": [ACCT_ROW]}),
            "model_id": "acct", "app_name": "acct", "entity_keys": {"account_id": "int64"}}
    for name, args in (("churn", churn), ("acct", acct)):
        traffic.deploy_app(cfg.app_config(name, args, cfg.initial_user_config(slot)))
    traffic.ensure_gateway("/", MAX_BODY)
    yield {"host": host, "port": port}
    for name in ("churn", "acct"):
        traffic.delete_app(name)
    serve.shutdown()


# -- what a hostile or careless client sends -----------------------------------------------------

def weighted(*choices: tuple[int, Any]) -> Any:
    """One of the strategies, drawn in proportion to its weight (``st.one_of`` draws evenly)."""
    pool = [s for weight, s in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(pool.__getitem__)  # a short repr, unlike sampled_from


INT_EDGES = [0, -1, 2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**400, -(10**400)]
# Every code point; one short text in four also draws lone surrogates (Hypothesis leaves
# category Cs out by default, and a surrogate anywhere makes the whole body a 400).
CHARS = st.characters(exclude_categories=())
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
SHORT = weighted((3, st.text(CHARS, max_size=12)),
                 (1, st.text(st.one_of(CHARS, SURROGATES), max_size=12)))
GIANT = st.sampled_from([257, 1000, 5_000, 70_000]).map(lambda n: "C" * n)
TEXT = st.one_of(SHORT, st.sampled_from(["", "C000042", "C000007", "\x00", "🙂", "C" * 256]), GIANT)
# NaN and Infinity (a 400 wherever they are) come in RAW bodies, not in every other one.
NUMBER = st.one_of(st.integers(), st.integers(-(10**500), 10**500), st.sampled_from(INT_EDGES),
                   st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none())
SCALAR = st.one_of(NUMBER, TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(SHORT, inner, max_size=4), max_leaves=8)
NAMES = st.one_of(st.sampled_from(["customer_id", "account_id", "model_id", "", *H.FEATURES]), SHORT)
ENTITIES = st.one_of(
    st.fixed_dictionaries({"customer_id": st.one_of(TEXT, NUMBER)}),
    st.fixed_dictionaries({"account_id": st.one_of(NUMBER, TEXT, st.just(42))}),
    st.dictionaries(NAMES, VALUE, max_size=3), VALUE)
FEATURES = st.one_of(
    st.fixed_dictionaries({}, optional={f: st.one_of(NUMBER, SCALAR, VALUE) for f in H.FEATURES}),
    st.just({f: 1.0 for f in H.FEATURES}), st.dictionaries(NAMES, VALUE, max_size=6), VALUE)
INSTANCE = st.one_of(st.fixed_dictionaries({}, optional={
    "entities": ENTITIES, "features": FEATURES, "extra": VALUE}), VALUE)
MODEL_ID = st.one_of(st.sampled_from(["churn", "acct", "churn@1", "churn@", "acct@champion",
                                      "churn@stable", "churn@9", "nope", "", "x" * 200]),
                     SHORT, VALUE)
BATCH = st.one_of(st.lists(INSTANCE, max_size=6),
                  st.integers(0, MAX_INSTANCES + 5).map(
                      lambda n: [{"features": {f: 1.0 for f in H.FEATURES}}] * n))
# Nearly right: a real model, plausible keys, every feature a number (edge values included).
NUMERIC = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([3.4e38, 3.5e38, -1e39, 1e308, 2**63, 10**38, 5e-324, -0.0]))
GOOD_KEYS = st.one_of(st.fixed_dictionaries({"customer_id": st.one_of(
                          st.sampled_from(["C000042", "C000007", "NOPE"]), TEXT)}),
                      st.fixed_dictionaries({"account_id": st.one_of(st.just(42), NUMBER)}))
NEAR = st.fixed_dictionaries(
    {"features": st.one_of(st.fixed_dictionaries({f: NUMERIC for f in H.FEATURES}),
                           st.fixed_dictionaries({}, optional={f: NUMERIC for f in H.FEATURES}))},
    optional={"entities": GOOD_KEYS})
NEAR_BODY = st.one_of(
    st.tuples(st.sampled_from(["churn", "acct", "churn@1", "acct@stable"]), NEAR).map(
        lambda t: {"model_id": t[0], **t[1]}),
    st.tuples(st.sampled_from(["churn", "acct"]), st.lists(NEAR, min_size=1, max_size=8)).map(
        lambda t: {"model_id": t[0], "instances": t[1]}))
BODY = st.one_of(
    st.fixed_dictionaries({}, optional={"model_id": MODEL_ID, "entities": ENTITIES,
                                        "features": FEATURES, "instances": st.one_of(BATCH, VALUE),
                                        "unknown": VALUE}),
    st.fixed_dictionaries({"model_id": st.sampled_from(["churn", "acct"]),
                           "entities": ENTITIES}),
    VALUE)
BODY = weighted((3, BODY), (2, NEAR_BODY))


def _nested(n: int) -> bytes:
    return b'{"model_id": "churn", "features": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"


RAW = st.one_of(
    st.integers(1, 6_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3_000).map(_nested),
    st.integers(300, 5_000).map(lambda n: b'{"model_id": "churn", "features": {"tenure_months": '
                                + b"9" * n + b"}}"),
    st.binary(max_size=64),
    st.sampled_from([b"", b"null", b"NaN", b'{"a": Infinity}', b'{"model_id": "churn", "features": '
                     b'{"tenure_months": NaN}}', b'{"model_id": "acct", "features": {"x": -Infinity}}', b"\xef\xbb\xbf{}", b'{"a": 1}{"b": 2}',
                     b'{"model_id": "churn", "entities": {"customer_id": "\\udfff"}}',
                     b'{"model_id": "churn", "features": {"\\ud800": 1}}',
                     b'{"model_id": "acct", "entities": {"account_id": 9223372036854775808}}']))


def _encode(body: Any, how: int) -> bytes:
    if how == 1:   # raw UTF-8, lone surrogates encoded as such (not valid UTF-8)
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if how == 2:   # UTF-16 (JSON may come in it)
        return json.dumps(body).encode("utf-16")
    return json.dumps(body).encode()  # \uXXXX escapes, lone surrogates too


ENCODED = st.tuples(BODY, st.sampled_from([0, 0, 0, 0, 1, 2])).map(lambda t: _encode(*t))
PAYLOAD = weighted((3, ENCODED), (1, RAW))
REQUEST = st.tuples(
    st.sampled_from(["/v1/predictions"] * 3 + ["/v1/models/churn/predictions"] * 2
                    + ["/v1/models/acct/predictions"] * 2 + ["/v1/models/nope/predictions"]),
    st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain",
                                                 "APPLICATION/JSON", ""]),
    st.sampled_from([KEY] * 8 + ["", "wrong-key"]),
    PAYLOAD)


# -- sending and judging ---------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP connection per thread; a closed connection is reopened once."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._local = threading.local()

    def post(self, path: str, ctype: str, key: str, raw: bytes) -> tuple[int, str, bytes]:
        headers = {"Content-Length": str(len(raw))}
        if ctype:
            headers["Content-Type"] = ctype
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
            try:
                conn.request("POST", path, body=raw, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheader("content-type", ""), resp.read()
            except (http.client.HTTPException, ConnectionError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise AssertionError(f"the server dropped the connection twice: {exc!r}") from exc
        raise AssertionError("unreachable")


def _judge(request: tuple, answer: tuple[int, str, bytes]) -> None:
    from framework.serving.problems import CODES

    path, ctype, key, raw = request
    status, rtype, text = answer
    shown = f"POST {path} {ctype!r} key={bool(key)} body={raw[:300]!r} -> {status} {text[:300]!r}"
    assert 200 <= status < 300 or 400 <= status < 500, shown
    assert rtype.startswith("application/json"), shown
    assert b"Traceback" not in text and b'File "' not in text, shown
    body = json.loads(text)
    if status >= 400:
        assert set(body) == {"error", "request_id"}, shown
        err = body["error"]
        assert set(err) == {"code", "message", "details"} and err["code"] == CODES[status], shown
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["details"], list)
    else:
        assert body["model_id"] in ("churn", "acct") and ("prediction" in body or "predictions" in body)


def _get(apps: dict, path: str) -> dict:
    conn = http.client.HTTPConnection(apps["host"], apps["port"], timeout=15)
    conn.request("GET", path, headers={"Authorization": f"Bearer {KEY}"})
    return json.loads(conn.getresponse().read())


def test_no_client_input_gets_a_5xx_a_traceback_or_a_stall(apps):
    client = Client(apps["host"], apps["port"])
    sent: list[int] = []
    statuses: dict[int, int] = {}

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],  # a failure prints its own request
              suppress_health_check=list(HealthCheck))
    @given(st.lists(REQUEST, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def fuzz(requests: list[tuple]) -> None:
        answers = list(pool.map(lambda r: client.post(*r), requests))
        for request, answer in zip(requests, answers):
            _judge(request, answer)
            statuses[answer[0]] = statuses.get(answer[0], 0) + 1
        sent.append(len(requests))

    started = time.monotonic()
    with ThreadPoolExecutor(PER_EXAMPLE) as pool:
        fuzz()
    took = time.monotonic() - started
    print(f"fuzz: {sum(sent)} requests in {took:.1f} s; statuses {dict(sorted(statuses.items()))}")
    assert sum(sent) >= 10_000
    assert {200, 400, 401, 404, 413, 415, 422} <= set(statuses)
    # nothing a client sent counted as a feature-store failure: good requests are not degraded
    good = {"churn": {"customer_id": "C000042"}, "acct": {"account_id": 42}}
    for model_id, entities in good.items():
        status, _, raw = client.post("/v1/predictions", "application/json", KEY,
                                     json.dumps({"model_id": model_id, "entities": entities}).encode())
        answer = json.loads(raw)
        assert status == 200 and not answer["degraded"] and answer["model_version"] == "1", answer
    for model in _get(apps, "/v1/models")["models"]:
        circuits = model["circuits"]
        assert circuits.get("feature_store", {"failures": 0})["failures"] == 0, model["model_id"]
        assert all(c["state"] == "closed" for c in circuits.values()), circuits
