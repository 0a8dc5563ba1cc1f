"""Prometheus metrics of the prediction API, through ``ray.serve.metrics`` (exported with a ``ray_`` prefix).

Names as scraped from Ray's metrics port:

- ``ray_loom_requests_total{model,version,outcome}``  outcome: ok, degraded, client_error, error
- ``ray_loom_request_latency_ms_bucket{model,version}`` request latency histogram
- ``ray_loom_feature_lookup_latency_ms_bucket{model}`` online feature lookup latency histogram
- ``ray_loom_cache_hits_total{model}``                 answers served from the cache
- ``ray_loom_fallbacks_total{model,level}``            answers from a fallback level
- ``ray_loom_circuit_state{model,dependency}``         0 closed, 1 half-open, 2 open
- ``ray_loom_unseen_categories_total{model,feature}``  categories a version never saw in training
"""

from __future__ import annotations

from typing import Any

LATENCY_BOUNDARIES_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000]


class NullMetrics:
    """Metrics that go nowhere: in-process use and unit tests."""

    def request(self, version: str, outcome: str, latency_ms: float) -> None:
        """Count one request and observe its latency."""

    def lookup(self, latency_ms: float) -> None:
        """Observe one feature lookup."""

    def cache_hit(self) -> None:
        """Count one cache hit."""

    def fallback(self, level: str) -> None:
        """Count one fallback answer."""

    def circuit(self, dependency: str, value: int) -> None:
        """Set a circuit's state."""

    def unseen_category(self, feature: str) -> None:
        """Count one category the answering version never saw in training (read as missing)."""


class ServeMetrics(NullMetrics):
    """The same calls, recorded with Ray Serve's metrics API inside a replica."""

    def __init__(self, model_id: str) -> None:
        from ray.serve import metrics

        self.tags = {"model": model_id}
        self._requests = metrics.Counter(
            "loom_requests", description="Prediction requests by model, version and outcome.",
            tag_keys=("model", "version", "outcome"))
        self._latency = metrics.Histogram(
            "loom_request_latency_ms", description="Prediction request latency in ms.",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("model", "version"))
        self._lookup = metrics.Histogram(
            "loom_feature_lookup_latency_ms", description="Online feature lookup latency in ms.",
            boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("model",))
        self._hits = metrics.Counter(
            "loom_cache_hits", description="Answers served from the cache.", tag_keys=("model",))
        self._fallbacks = metrics.Counter(
            "loom_fallbacks", description="Answers from a fallback level.", tag_keys=("model", "level"))
        self._circuit = metrics.Gauge(
            "loom_circuit_state", description="Circuit state: 0 closed, 1 half-open, 2 open.",
            tag_keys=("model", "dependency"))
        self._unseen = metrics.Counter(
            "loom_unseen_categories", description="Categories the answering version never saw in "
            "training; read as missing.", tag_keys=("model", "feature"))

        # The model tag is a default tag, so hot-path calls pass only what varies.
        for metric in (self._requests, self._latency, self._lookup, self._hits, self._fallbacks,
                       self._circuit, self._unseen):
            metric.set_default_tags(dict(self.tags))  # Serve adds its tags to the dict given

    def request(self, version: str, outcome: str, latency_ms: float) -> None:
        self._requests.inc(1, tags={"version": version, "outcome": outcome})
        self._latency.observe(latency_ms, tags={"version": version})

    def lookup(self, latency_ms: float) -> None:
        self._lookup.observe(latency_ms)

    def cache_hit(self) -> None:
        self._hits.inc(1)

    def fallback(self, level: str) -> None:
        self._fallbacks.inc(1, tags={"level": level})

    def circuit(self, dependency: str, value: int) -> None:
        self._circuit.set(value, tags={"dependency": dependency})

    def unseen_category(self, feature: str) -> None:
        self._unseen.inc(1, tags={"feature": feature})


def make_metrics(model_id: str, enabled: bool) -> Any:
    """Serve metrics inside a replica, else the null ones."""
    return ServeMetrics(model_id) if enabled else NullMetrics()
