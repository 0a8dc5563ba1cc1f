"""``loom stream status`` for people."""

from __future__ import annotations

from framework.streaming.render import render_status


def _status(consumers):
    return {"model_id": "churn", "streams": {"source": "loom:churn:events", "group": "loom-churn",
                                             "sink": "loom:churn:predictions",
                                             "dead_letter": "loom:churn:dead", "seen": "x"},
            "group": {"lag": 0, "pending": 3, "consumers": 2},
            "lengths": {"source": 10_000, "sink": 9_997, "dead_letter": 3}, "consumers": consumers}


def test_status_shows_streams_lag_and_each_consumer():
    text = render_status(_status([
        {"consumer": "c0", "ready": True, "events_per_s": 812.5, "ok": 5000, "degraded": 0,
         "dead_letter": 3, "duplicate": 0, "claimed": 0, "stable": "1", "last_error": None},
        {"consumer": "c1", "ready": False, "last_error": "ConnectionError: refused"}]))
    assert "loom:churn:events -> loom:churn:predictions" in text
    assert "lag 0, pending 3" in text and "sink 9,997 results" in text
    assert "c0" in text and "812.5" in text and "c1: ConnectionError: refused" in text


def test_status_without_consumers_says_how_to_start_them():
    assert "loom stream up" in render_status(_status([]))


def test_down_says_the_streams_stay():
    assert "stay on the bus" in render_status({"model_id": "churn", "stopped": [{}, {}]})


def test_a_consumer_pushing_online_only_is_named():
    text = render_status(_status([
        {"consumer": "c0", "ready": True, "push_online_only": []},
        {"consumer": "c1", "ready": True, "push_online_only": ["profile"]}]))
    assert "pushed to the online store only:\n  c1: profile (its node cannot read" in text
    assert "c0: profile" not in text
