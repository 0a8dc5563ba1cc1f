"""The generated monitoring files on real engines: churn launched on Ray Serve, a real Prometheus
(Debian's package) scraping Ray's metrics endpoint with the rendered prometheus.yml and alerts.yml,
and a real Alertmanager posting to a webhook in this test with the rendered alertmanager.yml.

An injected error burst fires ``high_error_rate`` (read through Prometheus' ``/api/v1/alerts``)
and Alertmanager posts it to the webhook with the bearer token; requests whose ``tenure_months``
lies far outside training's fire ``feature_drift`` for that feature. Every query of the generated
Grafana dashboard runs on that Prometheus. Windows and ``for`` are short through overrides.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
import prom_servers as servers  # noqa: E402
import serving_helpers as H  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "test-key-0123456789"
TOKEN = "webhook-token-0123456789"
ROOT = Path(__file__).resolve().parents[3]


def _args(http_port: int, metrics_port: int, am_port: int, hook_port: int) -> list[str]:
    hook = f"http://127.0.0.1:{hook_port}/alerts"
    return ["recipe=churn", "rollout=direct", f"serving.http.port={http_port}",
            "serving.num_cpus_per_replica=0.2", "serving.surge_replicas=0",
            "serving.cache.enabled=false", "serving.fallback=[]", "training.model.num_boost_round=10",
            "++serving.circuit_breaker.reset_timeout_s=1",  # the burst opens it; closed soon after
            f"++env.metrics_export_port={metrics_port}", "monitoring.scrape_interval_s=1",
            "monitoring.slo.window_s=20", "monitoring.slo.for_s=2",
            "monitoring.drift.window_s=15", "++monitoring.drift.min_rows=30", "monitoring.drift.for_s=2",
            "++monitoring.drift.max_feature_age_s=60",  # the sample data's snapshots are days old
            f"++monitoring.alertmanager={{address:'127.0.0.1:{am_port}',webhook:{{url:'{hook}',"
            "bearer_token:{env:LOOM_TEST_WEBHOOK_TOKEN}},group_wait_s:1,group_interval_s:1}"]


class _Hook(http.server.BaseHTTPRequestHandler):
    """Records every POST Alertmanager makes: (Authorization header, JSON body)."""

    posts: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.posts.append((self.headers.get("Authorization", ""), json.loads(body or b"{}")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _wait(predicate, timeout_s: float, what: str, every_s: float = 0.5, seen=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; {seen()}")


def _series_now(port: int, *names: str) -> str:
    """What Prometheus holds now for ``names`` (for a failure message)."""
    return "; ".join(f"{n}: {[(r['metric'], r['value'][1]) for r in _api(port, '/api/v1/query', query=n)['result']]}"
                     for n in names)


def _api(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def _firing(port: int, name: str, **labels: str) -> list[dict]:
    return [a for a in _api(port, "/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == name and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]


@pytest.fixture(scope="module")
def stack(ray_session, sample_data, tmp_path_factory):
    """churn served, Prometheus and Alertmanager running on the files Loom rendered."""
    import ray

    from framework import api
    from framework.backends.ray_serve import traffic

    prometheus = _binary("prometheus", "prometheus")
    alertmanager = _binary("prometheus-alertmanager", "prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("monitoring")
    project = tmp / "project"
    for folder in ("recipes", "conf"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copytree(sample_data, project / "data")
    metrics_port = ray._private.worker.global_worker.node.metrics_export_port
    ports = {"http": H.free_port(), "prom": H.free_port(), "am": H.free_port()}
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    args = _args(ports["http"], metrics_port, ports["am"], hook.server_address[1])
    procs: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        mp.setenv("LOOM_TEST_WEBHOOK_TOKEN", TOKEN)
        try:
            planned = api.plan(args)
            api.apply(planned)
            out = planned.ctx.outputs
            files = Path(out["monitoring.rules"]["rules_file"]).parent
            procs.append(servers.start([alertmanager, f"--config.file={files / 'alertmanager.yml'}",
                                 f"--storage.path={tmp / 'am'}", f"--web.listen-address=127.0.0.1:{ports['am']}",
                                 "--cluster.listen-address="], ports["am"], tmp / "alertmanager.log"))
            procs.append(servers.start([prometheus, f"--config.file={files / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'prom'}",
                                 f"--web.listen-address=127.0.0.1:{ports['prom']}"], ports["prom"],
                                tmp / "prometheus.log"))
            yield {"url": out["serving.deploy"]["url"], "prom": ports["prom"], "files": files,
                   "hook": _Hook.posts, "traffic": traffic, "project": project, "args": args}
        finally:
            for proc in procs:
                servers.stop(proc)
            hook.shutdown()
            with contextlib.suppress(Exception):
                traffic.delete_app("churn")
                traffic.drop_gateway_if_unused("/")


def _binary(name: str, package: str) -> str:
    import debian

    return debian.binary(name, package)


def _with_fault(traffic, fault: dict | None) -> None:
    """Set (or clear) a fault on the stable slot; the first call also lets the replicas honour it."""
    configs = traffic.app_configs()
    app = configs["churn"]
    user_config = dict(app["deployments"][0]["user_config"])
    stable = {k: v for k, v in user_config["slots"]["stable"].items() if k != "fault"}
    user_config["slots"] = {**user_config["slots"], "stable": {**stable, **({"fault": fault} if fault else {})}}
    user_config["config_version"] = int(user_config.get("config_version", 0)) + 1
    env = (app.get("runtime_env") or {}).get("env_vars", {})
    if env.get("LOOM_TEST_FAULTS") != "1":  # a runtime_env change replaces the replicas once
        app["runtime_env"] = {**(app.get("runtime_env") or {}), "env_vars": {**env, "LOOM_TEST_FAULTS": "1"}}
        app["deployments"][0]["user_config"] = user_config
        traffic.deploy_app(app)
    else:
        traffic.update_user_config("churn", user_config)


def _row(i: int, **shift: float) -> dict:
    row = {"tenure_months": 1 + i % 60, "monthly_charges": 20.0 + i % 90, "contract_months": (1, 12, 24)[i % 3],
           "support_calls": i % 6, "payment_delay_days": float(i % 20)}
    return {**row, **shift}


def _send(url: str, n: int, **shift: float) -> list[int]:
    body = {"instances": [{"features": _row(i, **shift)} for i in range(n)]}
    return [H.call(url, body, KEY)[0] for _ in range(3)]


def test_an_error_burst_fires_high_error_rate_and_alertmanager_posts_it(stack):
    _with_fault(stack["traffic"], {"error_rate": 1.0})
    try:
        def burst() -> bool:
            statuses = [H.call(stack["url"], {"features": _row(i)}, KEY)[0] for i in range(10)]
            assert set(statuses) == {503}, statuses  # no fallback: every request fails
            return bool(_firing(stack["prom"], "high_error_rate", model="churn"))

        _wait(burst, 120, "high_error_rate to fire", every_s=0.2,
              seen=lambda: _series_now(stack["prom"], "ray_loom_requests_total", "ALERTS"))
    finally:
        _with_fault(stack["traffic"], None)
    (alert,) = _firing(stack["prom"], "high_error_rate", model="churn")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "More than 2% of churn's requests fail."

    def posted() -> bool:
        return any(a["labels"].get("alertname") == "high_error_rate"
                   for _, body in stack["hook"] for a in body.get("alerts", []))

    _wait(posted, 60, "Alertmanager to post high_error_rate to the webhook")
    auth, body = next((h, b) for h, b in stack["hook"]
                      if any(a["labels"]["alertname"] == "high_error_rate" for a in b["alerts"]))
    assert auth == f"Bearer {TOKEN}"
    assert body["receiver"] == "loom-churn" and body["status"] == "firing"
    assert body["commonLabels"]["model"] == "churn"
    assert TOKEN not in (stack["files"] / "alertmanager.yml").read_text()


def test_drifted_requests_fire_feature_drift_for_that_feature(stack):
    _wait(lambda: H.call(stack["url"], {"features": _row(0)}, KEY)[0] == 200, 30,
          "the model's circuit breaker to close after the error burst")

    def drift() -> bool:
        statuses = _send(stack["url"], 20, tenure_months=10_000)  # training saw 0..72
        assert set(statuses) == {200}, statuses
        return bool(_firing(stack["prom"], "feature_drift", model="churn", feature="tenure_months"))

    _wait(drift, 120, "feature_drift to fire for tenure_months", every_s=0.2,
          seen=lambda: _series_now(stack["prom"], "ray_loom_feature_psi", "ray_loom_monitored_rows_total",
                                   "ALERTS"))
    (alert,) = _firing(stack["prom"], "feature_drift", model="churn", feature="tenure_months")
    assert alert["labels"]["version"] == "1" and alert["labels"]["severity"] == "warning"
    summary = alert["annotations"]["summary"]
    assert summary.startswith("Feature tenure_months of churn version 1 drifted: PSI ") and summary.endswith("> 0.2.")
    _wait(lambda: bool(_firing(stack["prom"], "out_of_range_features", feature="tenure_months")), 60,
          "out_of_range_features to fire for tenure_months")


def test_values_looked_up_in_feast_show_their_age_and_stale_features_fires(stack):
    def ask() -> bool:
        for cid in ("C000001", "C000042", "C000777"):
            status, _, body = H.call(stack["url"], {"entities": {"customer_id": cid}}, KEY)
            assert status == 200 and body["degraded"] is False, body
        return bool(_firing(stack["prom"], "stale_features", model="churn", view="customer_profile"))

    _wait(ask, 90, "stale_features to fire for customer_profile", every_s=0.5,
          seen=lambda: _series_now(stack["prom"], "ray_loom_feature_age_seconds", "ALERTS"))
    ages = _api(stack["prom"], "/api/v1/query",
                query='ray_loom_feature_age_seconds{model="churn",view="customer_profile"}')["result"]
    by_stat = {r["metric"]["stat"]: float(r["value"][1]) for r in ages}
    assert 60 < by_stat["mean"] <= by_stat["max"]  # seconds since the snapshots' event times

    # loom monitor reads the same ages back through monitoring.prometheus_url, per view.
    from framework import api
    from framework.monitor.render import render_monitor

    url = f"http://127.0.0.1:{stack['prom']}"
    report = api.monitor([*stack["args"], f"++monitoring.prometheus_url={url}"],
                         project_dir=stack["project"], window="1h")
    (view,) = report["freshness_views"]["views"]
    assert view["view"] == "customer_profile" and view["flagged"] is True  # max_feature_age_s 60
    assert 60 < view["mean_age_s"] <= view["max_age_s"]
    assert "customer_profile" in render_monitor(report) and "stale" in render_monitor(report)


def test_every_dashboard_query_runs_on_prometheus(stack):
    dashboard = json.loads((stack["files"] / "dashboard.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$version", ".*")
            if not _api(stack["prom"], "/api/v1/query", query=expr)["result"]:
                empty.append(panel["title"])
    # Panels of series this test never produces: no cache, no fallback, no stream, no lookup.
    assert set(empty) <= {"Cache hits", "Fallbacks", "Feature lookup latency", "Circuit breakers",
                          "Missing features", "Unseen categories", "Stream events per second",
                          "Stream event latency", "Stream lag"}, empty
    assert {"Requests per second", "Error rate", "Latency quantiles", "Feature PSI",
            "Traffic share per version", "Answers by slot"}.isdisjoint(empty)
