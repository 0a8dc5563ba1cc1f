"""A Grafana dashboard per model, as JSON Grafana imports: the model's ray_loom_* series, panel by panel.

The dashboard has two variables: ``datasource`` (pick the Prometheus that scrapes Ray at import
time) and ``version`` (the model versions seen serving). Every query is scoped to the model.
"""

from __future__ import annotations

from typing import Any

from framework.backends.promql import promql_string

#: Grafana's dashboard JSON model version the panels are written for (Grafana 10 and later).
SCHEMA_VERSION = 39
RATE = "$__rate_interval"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


class _Panels:
    """Lays panels out two to a row of the grid, with collapsible section rows between."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._y = 0
        self._x = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"id": len(self.panels) + 1, "type": "row", "title": title,
                            "collapsed": False, "gridPos": {"x": 0, "y": self._y, "w": 24, "h": 1},
                            "panels": []})
        self._y += 1

    def add(self, title: str, description: str, targets: list[tuple[str, str]], unit: str,
            threshold: float | None = None) -> None:
        """A time series panel; ``targets`` are ``(PromQL, legend)`` pairs."""
        defaults: dict[str, Any] = {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1}}
        if threshold is not None:
            defaults["thresholds"] = {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": threshold}]}
            defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
        self.panels.append({
            "id": len(self.panels) + 1, "type": "timeseries", "title": title, "description": description,
            "datasource": DATASOURCE, "gridPos": {"x": self._x, "y": self._y, "w": 12, "h": 8},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend, "range": True} for i, (expr, legend) in enumerate(targets)],
        })
        self._x = 12 if self._x == 0 else 0
        self._y += 8 if self._x == 0 else 0

    def _newline(self) -> None:
        if self._x:
            self._x, self._y = 0, self._y + 8


def dashboard(recipe: Any) -> dict[str, Any]:
    """The dashboard JSON for ``recipe``'s model.

    Args:
        recipe: The validated recipe: the model id, thresholds for the panels' red lines, and
            whether drift and streaming panels apply.

    Returns:
        A Grafana dashboard (JSON model) with ``uid`` ``loom-<model>``, importable as is.
    """
    model_id, m = recipe.model_id, recipe.monitoring
    q = _Queries(model_id)
    p = _Panels()
    p.row("Service")
    p.add("Requests per second", "Prediction requests by version and outcome.",
          [(f"sum by (version, outcome) (rate({q.sel('ray_loom_requests_total')}[{RATE}]))",
            "v{{version}} {{outcome}}")], "reqps")
    p.add("Error rate", "Share of requests that failed (outcome error), per version.",
          [(q.error_rate(), "v{{version}}")], "percentunit", m.slo.max_error_rate)
    p.add("Latency quantiles", "Request latency p50, p95 and p99 per version.",
          [(q.quantile(x, "ray_loom_request_latency_ms_bucket", "version"), f"p{int(x * 100)} v{{{{version}}}}")
           for x in (0.5, 0.95, 0.99)], "ms", m.slo.max_p99_latency_ms)
    p.add("Traffic share per version", "Each version's share of the answered requests: the rollout's "
          "weights as served.", [(q.share(), "v{{version}}")], "percentunit")
    p.add("Answers by slot", "Requests each version slot answered per second, by role (stable, "
          "candidate, shadow) and outcome (error: the version failed and a fallback answered): "
          "what a rollout's analysis reads with monitoring.prometheus_url.",
          [(f"sum by (version, role, outcome) (rate({q.sel('ray_loom_slot_requests_total')}"
            f"[{RATE}]))", "v{{version}} {{role}} {{outcome}}")], "reqps")
    p.add("Cache hits", "Answers served from the cache, per second, and as a share of requests.",
          [(f"sum(rate({q.sel('ray_loom_cache_hits_total', version=False)}[{RATE}]))", "hits/s"),
           (f"sum(rate({q.sel('ray_loom_cache_hits_total', version=False)}[{RATE}])) / "
            f"sum(rate({q.sel('ray_loom_requests_total', version=False)}[{RATE}]))", "hit ratio")], "short")
    p.add("Fallbacks", "Answers from a fallback level, per second.",
          [(f"sum by (level) (rate({q.sel('ray_loom_fallbacks_total', version=False)}[{RATE}]))",
            "{{level}}")], "reqps")
    p.add("Feature lookup latency", "Online feature store lookups, p50 and p99.",
          [(q.quantile(x, "ray_loom_feature_lookup_latency_ms_bucket"), f"p{int(x * 100)}")
           for x in (0.5, 0.99)], "ms")
    p.add("Circuit breakers", "Per dependency: 0 closed, 1 half-open, 2 open.",
          [(f"max by (dependency) ({q.sel('ray_loom_circuit_state', version=False)})", "{{dependency}}")],
          "short")
    if m.drift.enabled:
        p.row("Model and data")
        p.add("Feature PSI", "PSI of each feature over each replica's last window against the "
              "training profile (worst replica).",
              [(f"max by (version, feature) ({q.sel('ray_loom_feature_psi')})", "v{{version}} {{feature}}")],
              "short", m.drift.psi_threshold)
        p.add("Score PSI", "PSI of the scores against training's (worst replica).",
              [(f"max by (version) ({q.sel('ray_loom_score_psi')})", "v{{version}}")],
              "short", m.drift.psi_threshold)
        p.add("Missing features", "Share of binned rows missing each feature.",
              [(q.per_row("ray_loom_feature_missing_total"), "v{{version}} {{feature}}")],
              "percentunit", m.drift.missing_threshold)
        p.add("Out-of-range features", "Share of binned rows with a value outside training's range.",
              [(q.per_row("ray_loom_feature_out_of_range_total"), "v{{version}} {{feature}}")],
              "percentunit", m.drift.out_of_range_threshold)
        p.add("Feature freshness", "Mean and max age of the online feature values served (now "
              "minus their event time), per feature view.",
              [(f"max by (view, stat) ({q.sel('ray_loom_feature_age_seconds', version=False)})",
                "{{view}} {{stat}}")], "s", m.drift.max_feature_age_s)
        p.add("Unseen categories", "Categories the answering version never saw in training, per second.",
              [(f"sum by (feature) (rate({q.sel('ray_loom_unseen_categories_total', version=False)}[{RATE}]))",
                "{{feature}}")], "short")
    if recipe.streaming is not None:
        p.row("Streaming")
        p.add("Stream events per second", "Events answered by the consumers, by outcome.",
              [(f"sum by (outcome) (rate({q.sel('ray_loom_stream_events_total', version=False)}[{RATE}]))",
                "{{outcome}}")], "short")
        p.add("Stream event latency", "Event time to result written, p50 and p99.",
              [(q.quantile(x, "ray_loom_stream_event_latency_ms_bucket"), f"p{int(x * 100)}")
               for x in (0.5, 0.99)], "ms")
        p.add("Stream lag", "Source events not yet read, and read but not yet answered.",
              [(f"max({q.sel('ray_loom_stream_lag', version=False)})", "lag"),
               (f"max({q.sel('ray_loom_stream_pending', version=False)})", "pending")], "short")
    return {
        "uid": f"loom-{model_id}"[:40], "title": f"Loom: {model_id}", "tags": ["loom", model_id],
        "description": f"Generated by Loom from recipe '{recipe.name}'.",
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "timezone": "",
        "annotations": {"list": []}, "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "version", "label": "Version", "type": "query", "datasource": DATASOURCE,
             "definition": q.versions(), "query": {"query": q.versions(), "refId": "versions"},
             "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0,
             "refresh": 2, "sort": 3, "options": []},
        ]},
        "panels": p.panels,
    }


class _Queries:
    """PromQL for one model's panels; ``version=~"$version"`` where the series has a version."""

    def __init__(self, model_id: str) -> None:
        self.model = f"model={promql_string(model_id)}"

    def sel(self, series: str, version: bool = True) -> str:
        matchers = self.model + (',version=~"$version"' if version else "")
        return f"{series}{{{matchers}}}"

    def versions(self) -> str:
        return f"label_values(ray_loom_requests_total{{{self.model}}}, version)"

    def error_rate(self) -> str:
        errors = self.sel("ray_loom_requests_total").replace("}", ',outcome="error"}')
        return (f"sum by (version) (rate({errors}[{RATE}])) / "
                f"sum by (version) (rate({self.sel('ray_loom_requests_total')}[{RATE}]))")

    def quantile(self, q: float, bucket: str, by: str = "") -> str:
        version = bool(by)
        labels = f"{by}, le" if by else "le"
        return f"histogram_quantile({q:g}, sum by ({labels}) (rate({self.sel(bucket, version)}[{RATE}])))"

    def share(self) -> str:
        total = self.sel("ray_loom_requests_total", version=False)
        return (f"sum by (version) (rate({total}[{RATE}])) / ignoring (version) group_left "
                f"sum(rate({total}[{RATE}]))")

    def per_row(self, series: str) -> str:
        return (f"sum by (version, feature) (rate({self.sel(series)}[{RATE}])) / on (version) group_left "
                f"sum by (version) (rate({self.sel('ray_loom_monitored_rows_total')}[{RATE}]))")
