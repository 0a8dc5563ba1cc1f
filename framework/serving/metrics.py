"""Prometheus metrics of the prediction API, through ``ray.serve.metrics`` (exported with a ``ray_`` prefix).

Names as scraped from Ray's metrics port:

- ``ray_loom_requests_total{model,version,outcome}``  outcome: ok, degraded, client_error, error
- ``ray_loom_request_latency_ms_bucket{model,version}`` request latency histogram
- ``ray_loom_feature_lookup_latency_ms_bucket{model}`` online feature lookup latency histogram
- ``ray_loom_cache_hits_total{model}``                 answers served from the cache
- ``ray_loom_fallbacks_total{model,level}``            answers from a fallback level
- ``ray_loom_circuit_state{model,dependency}``         0 closed, 1 half-open, 2 open
- ``ray_loom_unseen_categories_total{model,feature}``  categories a version never saw in training

What each version slot answered, by role (``stable``, ``candidate``, ``shadow``), one count per
request as the rollout's samples count them (``framework/serving/stats.py``); a rollout's analysis
reads these from Prometheus when ``monitoring.prometheus_url`` is set:

- ``ray_loom_slot_requests_total{model,version,role,outcome}``  outcome ok, or error: the version
  failed or timed out (the fallback chain answered instead)
- ``ray_loom_slot_latency_ms_bucket{model,version,role}``       the request's latency up to its answer
- ``ray_loom_slot_score_bin_total{model,version,role,bin}``     answered scores in bins every version
  shares: ten of 0.1 for probabilities, the stable version's training profile bins for regression

Model and data monitoring (``framework.serving.drift``, in the bins of each version's training profile):

- ``ray_loom_monitored_rows_total{model,version}``               rows binned (the denominator)
- ``ray_loom_feature_bin_total{model,version,feature,bin}``      rows per bin of each feature
- ``ray_loom_feature_missing_total{model,version,feature}``      rows without the feature
- ``ray_loom_feature_out_of_range_total{model,version,feature}`` values outside training's range
- ``ray_loom_score_bin_total{model,version,bin}``                rows per bin of the score
- ``ray_loom_feature_psi{model,version,feature}``                PSI of the replica's last window
- ``ray_loom_score_psi{model,version}``                          the score's PSI, the same way
- ``ray_loom_feature_age_seconds{model,view,stat}``              freshness of the online values
  served (now minus their event time), ``stat`` mean or max over the last flush (Feast lookups)
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

#: How often a replica writes its buffered counts and observations to Ray's metrics. Ray exports
#: them every few seconds, so Prometheus sees no difference; the requests no longer pay for them.
FLUSH_S = 1.0

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

    def slot_answer(self, version: str, role: str, ok: bool, latency_ms: float,
                    score_bins: dict[int, int] | None = None) -> None:
        """Count one request a version slot answered (or failed) in ``role``, with its latency
        and its answers' scores counted per shared bin."""

    def monitored_rows(self, version: str, n: int) -> None:
        """Count rows binned for drift."""

    def feature_bin(self, version: str, feature: str, bin_index: int, n: int) -> None:
        """Count rows whose ``feature`` fell in a bin of the reference profile."""

    def feature_missing(self, version: str, feature: str, n: int) -> None:
        """Count rows without ``feature``."""

    def feature_out_of_range(self, version: str, feature: str, n: int) -> None:
        """Count values of ``feature`` outside the range training saw."""

    def score_bin(self, version: str, bin_index: int, n: int) -> None:
        """Count scores in a bin of the reference profile."""

    def feature_psi(self, version: str, feature: str, value: float) -> None:
        """Set a feature's PSI over the window (NaN: too few rows)."""

    def score_psi(self, version: str, value: float) -> None:
        """Set the score's PSI over the window (NaN: too few rows)."""

    def feature_age(self, view: str, mean_s: float, max_s: float) -> None:
        """Set the mean and max age of a view's online values served since the last flush."""

    def close(self) -> None:
        """Write what is buffered (a replica that stops)."""


class ServeMetrics(NullMetrics):
    """The same calls, recorded with Ray Serve's metrics API inside a replica.

    Counts and observations are buffered and written by a background thread every ``FLUSH_S``,
    counts summed per series: each Ray metric call from the request path waited for the GIL
    behind the replica's other thread, and cost about 30% of a replica's throughput at
    concurrency 16 (docs/benchmarks.md). Gauges are set at once (they change rarely).
    """

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

        self._slot_requests = metrics.Counter(
            "loom_slot_requests", description="Requests a version slot answered, by role and "
            "outcome (error: it failed and a fallback answered).",
            tag_keys=("model", "version", "role", "outcome"))
        self._slot_latency = metrics.Histogram(
            "loom_slot_latency_ms", description="Latency of the requests a version slot answered, "
            "by role, in ms.", boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("model", "version", "role"))
        self._slot_scores = metrics.Counter(
            "loom_slot_score_bin", description="Scores a version slot answered, per bin shared by "
            "every version (for the rollout's PSI).", tag_keys=("model", "version", "role", "bin"))

        self._rows = metrics.Counter("loom_monitored_rows", description="Rows binned for drift.",
                                     tag_keys=("model", "version"))
        self._bins = metrics.Counter(
            "loom_feature_bin", description="Rows per bin of each feature (training profile bins).",
            tag_keys=("model", "version", "feature", "bin"))
        self._missing = metrics.Counter("loom_feature_missing", description="Rows without the feature.",
                                        tag_keys=("model", "version", "feature"))
        self._outside = metrics.Counter(
            "loom_feature_out_of_range", description="Feature values outside training's range.",
            tag_keys=("model", "version", "feature"))
        self._score_bins = metrics.Counter(
            "loom_score_bin", description="Rows per bin of the score (training profile bins).",
            tag_keys=("model", "version", "bin"))
        self._psi = metrics.Gauge("loom_feature_psi", description="Feature PSI over the replica's "
                                  "window (NaN: too few rows).", tag_keys=("model", "version", "feature"))
        self._age = metrics.Gauge(
            "loom_feature_age_seconds", description="Age of the online feature values served "
            "(now minus their event time) since the last flush, mean or max.",
            tag_keys=("model", "view", "stat"))
        self._score_psi = metrics.Gauge("loom_score_psi", description="Score PSI over the replica's "
                                        "window (NaN: too few rows).", tag_keys=("model", "version"))

        # The model tag is a default tag, so hot-path calls pass only what varies.
        for metric in (self._requests, self._latency, self._lookup, self._hits, self._fallbacks,
                       self._circuit, self._unseen, self._slot_requests, self._slot_latency,
                       self._slot_scores, self._rows, self._bins, self._missing,
                       self._outside, self._score_bins, self._psi, self._score_psi, self._age):
            metric.set_default_tags(dict(self.tags))  # Serve adds its tags to the dict given
        self._pending: deque = deque()   # (metric, value, tags as a tuple, is a counter)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="loom-metrics", daemon=True)
        self._flusher.start()

    def _inc(self, metric: Any, n: float, tags: tuple = ()) -> None:
        self._pending.append((metric, n, tags, True))

    def _observe(self, metric: Any, value: float, tags: tuple = ()) -> None:
        self._pending.append((metric, value, tags, False))

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Write the buffered records: one ``inc`` per counter series, every observation."""
        counts: dict[tuple, float] = {}
        pending = self._pending
        while True:
            try:
                metric, value, tags, counter = pending.popleft()
            except IndexError:
                break
            if counter:
                counts[(metric, tags)] = counts.get((metric, tags), 0) + value
            else:
                metric.observe(value, tags=dict(tags) or None)
        for (metric, tags), n in counts.items():
            metric.inc(n, tags=dict(tags) or None)

    def close(self) -> None:
        self._stop.set()
        self.flush()

    def request(self, version: str, outcome: str, latency_ms: float) -> None:
        self._inc(self._requests, 1, (("version", version), ("outcome", outcome)))
        self._observe(self._latency, latency_ms, (("version", version),))

    def lookup(self, latency_ms: float) -> None:
        self._observe(self._lookup, latency_ms)

    def cache_hit(self) -> None:
        self._inc(self._hits, 1)

    def fallback(self, level: str) -> None:
        self._inc(self._fallbacks, 1, (("level", level),))

    def circuit(self, dependency: str, value: int) -> None:
        self._circuit.set(value, tags={"dependency": dependency})

    def unseen_category(self, feature: str) -> None:
        self._inc(self._unseen, 1, (("feature", feature),))

    def slot_answer(self, version: str, role: str, ok: bool, latency_ms: float,
                    score_bins: dict[int, int] | None = None) -> None:
        tags = (("version", version), ("role", role))
        self._inc(self._slot_requests, 1, (*tags, ("outcome", "ok" if ok else "error")))
        self._observe(self._slot_latency, latency_ms, tags)
        for index, n in (score_bins or {}).items():
            self._inc(self._slot_scores, n, (*tags, ("bin", str(index))))

    def monitored_rows(self, version: str, n: int) -> None:
        self._rows.inc(n, tags={"version": version})

    def feature_bin(self, version: str, feature: str, bin_index: int, n: int) -> None:
        self._bins.inc(n, tags={"version": version, "feature": feature, "bin": str(bin_index)})

    def feature_missing(self, version: str, feature: str, n: int) -> None:
        self._missing.inc(n, tags={"version": version, "feature": feature})

    def feature_out_of_range(self, version: str, feature: str, n: int) -> None:
        self._outside.inc(n, tags={"version": version, "feature": feature})

    def score_bin(self, version: str, bin_index: int, n: int) -> None:
        self._score_bins.inc(n, tags={"version": version, "bin": str(bin_index)})

    def feature_psi(self, version: str, feature: str, value: float) -> None:
        self._psi.set(value, tags={"version": version, "feature": feature})

    def score_psi(self, version: str, value: float) -> None:
        self._score_psi.set(value, tags={"version": version})

    def feature_age(self, view: str, mean_s: float, max_s: float) -> None:
        self._age.set(mean_s, tags={"view": view, "stat": "mean"})
        self._age.set(max_s, tags={"view": view, "stat": "max"})


def make_metrics(model_id: str, enabled: bool) -> Any:
    """Serve metrics inside a replica, else the null ones."""
    return ServeMetrics(model_id) if enabled else NullMetrics()
