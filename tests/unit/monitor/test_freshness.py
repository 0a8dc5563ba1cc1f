"""`loom monitor`'s freshness, read back from a Prometheus HTTP API (a canned one here; the real
one in tests/integration/monitoring/test_monitoring_prometheus.py)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse

import pytest

from framework.monitor.freshness import freshness_views
from framework.monitor.render import render_monitor

ANSWERS = {"avg_over_time": [({"view": "customer_profile"}, 120.0), ({"view": "usage"}, 9.5)],
           "max_over_time": [({"view": "customer_profile"}, 400.0), ({"view": "usage"}, 30.0)]}


class _Api(http.server.BaseHTTPRequestHandler):
    queries: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["query"][0]
        self.queries.append(query)
        if "bad" in query:
            self.send_response(400)
            body = {"status": "error", "error": "parse error"}
        else:
            self.send_response(200)
            rows = next(v for k, v in ANSWERS.items() if k in query)
            body = {"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"__name__": "x", **labels}, "value": [0, str(value)]}
                for labels, value in rows]}}
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def prom():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_views_flagged_against_max_feature_age_over_the_logs_window(prom) -> None:
    fresh = freshness_views(prom, "churn", 3600, max_age_s=60)
    assert fresh["views"] == [
        {"view": "customer_profile", "mean_age_s": 120.0, "max_age_s": 400.0, "flagged": True},
        {"view": "usage", "mean_age_s": 9.5, "max_age_s": 30.0, "flagged": False}]
    assert all('model="churn"' in q and "[3600s]" in q for q in _Api.queries[-2:])
    text = render_monitor({"log": {"directory": "d", "rows": 1, "window_s": 3600, "files": 1,
                                   "bytes": 1, "first": None}, "thresholds": {
        "psi": 0.2, "missing": 0.05, "out_of_range": 0.05, "min_rows": 100}, "versions": [],
        "flagged": False, "freshness": "note", "freshness_views": fresh})
    assert "mean age > 60 s, monitoring.drift.max_feature_age_s" in text
    assert "customer_profile  120.0       400.0      stale" in text and "note" not in text


def test_an_unreachable_prometheus_is_said_and_the_report_stands() -> None:
    fresh = freshness_views("http://127.0.0.1:1", "churn", None, None)
    assert "did not answer for the freshness in `loom monitor recipe=NAME`" in fresh["error"]
    assert "monitoring.prometheus_url" in fresh["error"]
