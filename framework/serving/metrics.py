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

    def slot_answer(self, version: str, role: str, ok: bool, latency_ms: float,
                    score_bins: dict[int, int] | None = None) -> None:
        tags = {"version": version, "role": role}
        self._slot_requests.inc(1, tags={**tags, "outcome": "ok" if ok else "error"})
        self._slot_latency.observe(latency_ms, tags=tags)
        for index, n in (score_bins or {}).items():
            self._slot_scores.inc(n, tags={**tags, "bin": str(index)})

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
