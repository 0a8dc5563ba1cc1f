"""Streaming inference on real engines: churn served by Ray Serve, events on a real Redis.

10,000 events go through two consumer actors; one is killed with SIGKILL halfway. Every event id
gets exactly one result, bad events land in the dead-letter stream with their reason, and the
answers equal the online API's. An event that carries the whole push view updates the online and
offline stores before it is scored (the speed layer).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import serving_helpers as H  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.redis]
KEY = "test-key-0123456789"
EVENTS = 10_000


def _args(port: int, redis: str) -> list[str]:
    return ["recipe=churn", "rollout=direct", f"serving.http.port={port}",
            "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
            "serving.cache.enabled=false", "training.model.num_boost_round=10",
            f"streaming.bus.url=redis://{redis}/0", "streaming.consumers=2",
            "streaming.cpus_per_consumer=0.05", "streaming.claim_idle_ms=1000", "streaming.start=all",
            "+features.views.customer_profile.push=true"]


def _produce(client, source: str, customers: list[str], start: int, stop: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(start, stop):
        fields = {"event_id": f"e{i}", "customer_id": customers[i % len(customers)]}
        if i % 7 == 0:  # an event that carries a feature value overriding the stored one
            fields["support_calls"] = str(i % 10)
        pipe.xadd(source, fields)
        if len(pipe) >= 500:
            pipe.execute()
    pipe.execute()


def _scrape(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def test_events_are_scored_once_each_through_a_consumer_crash(ray_session, project, redis_server):
    import pandas as pd
    import ray
    import redis
    from ray import serve

    from framework import api
    from framework.backends.ray_serve import traffic
    from framework.errors import BackendError
    from framework.streaming import control

    port = H.free_port()
    args = _args(port, redis_server)
    client = redis.Redis.from_url(f"redis://{redis_server}/0", decode_responses=True)
    names = {"source": "loom:churn:events", "sink": "loom:churn:predictions",
             "dead": "loom:churn:dead"}
    customers = sorted(pd.read_parquet(project / "data" / "churn" / "features.parquet")
                       ["customer_id"].unique().tolist())
    try:
        with pytest.raises(BackendError, match="not served"):
            api.stream("up", args)
        planned = api.plan(args)
        api.apply(planned)
        url = planned.ctx.outputs["serving.deploy"]["url"]

        up = api.stream("up", args)
        assert [c["ready"] for c in up["consumers"]] == [True, True], up
        assert api.stream("up", args)["consumers"][0]["alive_s"] >= up["consumers"][0]["alive_s"]

        # Bad events: each goes to the dead-letter stream with its reason, none stops a consumer.
        bad = [{"customer_id": "C000001"}, {"event_id": "b1", "customer_id": "C000001", "colour": "red"},
               {"event_id": "b2", "customer_id": "C000001", "support_calls": "many"},
               {"event_id": "b3", "customer_id": "C000001", "event_time": "yesterday"},
               {"event_id": "b4", "customer_id": "x" * 300}]
        for fields in bad:
            client.xadd(names["source"], fields)

        _produce(client, names["source"], customers, 0, EVENTS // 2)
        _wait(lambda: client.xlen(names["sink"]) >= EVENTS // 4, 120, "a quarter of the results")
        victim = ray.get_actor(control.actor_name("churn", 0), namespace="loom")
        pid = ray.get(victim.pid.remote())
        os.kill(pid, signal.SIGKILL)  # mid-stream: it holds read, unanswered events
        _produce(client, names["source"], customers, EVENTS // 2, EVENTS)
        _wait(lambda: client.xlen(names["sink"]) >= EVENTS, 240, "every result")
        _wait(lambda: client.xlen(names["dead"]) >= len(bad), 30, "the dead letters")
        time.sleep(1.5)  # anything still in flight lands (there should be nothing)

        results = client.xrange(names["sink"])
        ids = [r["event_id"] for _, r in results]
        assert len(ids) == len(set(ids)) == EVENTS, (len(ids), len(set(ids)))
        assert set(ids) == {f"e{i}" for i in range(EVENTS)}
        dead = {f.get("event", ""): f["reason"] for _, f in client.xrange(names["dead"])}
        reasons = " | ".join(dead.values())
        for fragment in ("no 'event_id'", "unknown field(s) colour", "feature 'support_calls' is 'many'",
                         "'event_time' is 'yesterday'", "300 characters long"):
            assert fragment in reasons, reasons

        # The same answers as the online API (same version, same features, same overrides).
        by_id = {r["event_id"]: r for _, r in results}
        for i in (1, 7, 4242, 9999):
            body = {"entities": {"customer_id": customers[i % len(customers)]}}
            if i % 7 == 0:
                body["features"] = {"support_calls": i % 10}
            status, _, online = H.call(url, body, KEY)
            assert status == 200, online
            got = by_id[f"e{i}"]
            assert float(got["probability"]) == pytest.approx(online["probability"], abs=1e-6)
            assert got["prediction"] == online["prediction"]
            assert got["model_version"] == online["model_version"] == "1"

        # The speed layer: an event with every field of the push view writes them to both stores.
        fresh = {"tenure_months": 1, "monthly_charges": 99.5, "contract_months": 1,
                 "support_calls": 9, "payment_delay_days": 30.0}
        client.xadd(names["source"], {"event_id": "push-1", "customer_id": "C000042",
                                      **{k: str(v) for k, v in fresh.items()}})
        _wait(lambda: client.xlen(names["sink"]) >= EVENTS + 1, 60, "the pushed event's result")
        pushed = client.xrevrange(names["sink"], count=1)[0][1]
        assert pushed["event_id"] == "push-1"
        status, _, given = H.call(url, {"entities": {"customer_id": "C000042"}, "features": fresh}, KEY)
        status2, _, looked = H.call(url, {"entities": {"customer_id": "C000042"}}, KEY)
        assert status == status2 == 200
        assert float(pushed["probability"]) == pytest.approx(given["probability"], abs=1e-6)
        assert looked["probability"] == pytest.approx(given["probability"], abs=1e-6)  # online
        source = pd.read_parquet(project / "data" / "churn" / "features.parquet")
        row = source[source["customer_id"] == "C000042"].sort_values("event_timestamp").iloc[-1]
        assert row["monthly_charges"] == 99.5 and row["support_calls"] == 9  # offline, for training

        # Ray restarted the killed consumer (it imports the model's stack again: seconds).
        _wait(lambda: all(c["ready"] for c in api.stream("status", args)["consumers"]), 120,
              "the killed consumer to be back")
        st = api.stream("status", args)
        assert st["group"]["pending"] == 0 and st["group"]["lag"] == 0, st["group"]
        assert st["lengths"]["sink"] == EVENTS + 1 and st["lengths"]["dead_letter"] == len(bad)
        assert len(st["consumers"]) == 2, st["consumers"]
        assert {c["consumer"]: c["alive_s"] < 600 for c in st["consumers"]} == {"c0": True, "c1": True}
        total = sum(c["ok"] + c["degraded"] for c in st["consumers"])
        assert total <= EVENTS  # the killed consumer's counts restarted from zero

        # The consumers' series sit beside the serving ones on Ray's metrics endpoint. A series
        # of the killed process went with it, so one more bad event is answered by a live one.
        client.xadd(names["source"], {"event_id": "b5", "customer_id": "C000001", "colour": "blue"})
        _wait(lambda: client.xlen(names["dead"]) >= len(bad) + 1, 30, "the last dead letter")
        port = ray._private.worker.global_worker.node.metrics_export_port
        wanted = ('ray_loom_stream_events_total{', 'outcome="ok"', 'outcome="dead_letter"',
                  "ray_loom_stream_event_latency_ms_bucket", "ray_loom_stream_lag")
        _wait(lambda: all(w in _scrape(port) for w in wanted), 60, "the stream metrics")

        down = api.stream("down", args)
        assert len(down["stopped"]) == 2
        assert control._actor("churn", 0) is None and control._actor("churn", 1) is None
        assert api.stream("status", args)["consumers"] == []
    finally:
        with contextlib.suppress(Exception):
            api.stream("down", args)
        with contextlib.suppress(BackendError):
            traffic.delete_app("churn")
            traffic.drop_gateway_if_unused("/")
        serve.shutdown()
        client.close()
