"""A replica's metric records leave the request path: buffered, counts summed per series, written
by a background thread (framework/serving/metrics.py)."""

from __future__ import annotations

from framework.serving import metrics as M


class Fake:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def inc(self, value, tags=None) -> None:
        self.calls.append(("inc", value, tags))

    def observe(self, value, tags=None) -> None:
        self.calls.append(("observe", value, tags))


def test_counts_are_summed_per_series_and_every_observation_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(M, "FLUSH_S", 3600.0)   # only the explicit flushes below write
    m = M.ServeMetrics("churn")
    try:
        requests, latency, lookup = Fake(), Fake(), Fake()
        m._requests, m._latency, m._lookup = requests, latency, lookup
        m.request("1", "ok", 2.0)
        m.request("1", "ok", 3.0)
        m.request("2", "degraded", 4.0)
        m.lookup(0.5)
        assert requests.calls == [] and latency.calls == []   # nothing on the request path
        m.flush()
        assert sorted(requests.calls) == [
            ("inc", 1, {"version": "2", "outcome": "degraded"}),
            ("inc", 2, {"version": "1", "outcome": "ok"})]
        assert latency.calls == [("observe", 2.0, {"version": "1"}), ("observe", 3.0, {"version": "1"}),
                                 ("observe", 4.0, {"version": "2"})]
        assert lookup.calls == [("observe", 0.5, None)]        # the default tags only
        m.flush()
        assert len(requests.calls) == 2                        # written once
        m.request("1", "ok", 1.0)
    finally:
        m.close()                                              # a stopping replica writes the rest
    assert requests.calls[-1] == ("inc", 1, {"version": "1", "outcome": "ok"})
    assert not m._flusher.is_alive() or m._stop.is_set()


def test_the_background_thread_writes_without_being_asked(monkeypatch) -> None:
    import time

    monkeypatch.setattr(M, "FLUSH_S", 0.02)
    m = M.ServeMetrics("churn")
    try:
        hits = Fake()
        m._hits = hits
        m.cache_hit()
        deadline = time.monotonic() + 5
        while not hits.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hits.calls == [("inc", 1, None)]
    finally:
        m.close()
