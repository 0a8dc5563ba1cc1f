"""Analysis windows read from Prometheus (``monitoring.prometheus_url``), Flagger-style.

The replicas count what each version slot answers, by role, in ``ray_loom_slot_*`` series
(``framework/serving/metrics.py``); with a Prometheus scraping them, a rollout's analysis reads
those counters with PromQL instead of the replicas' per-request samples, and judges them exactly
as it judges samples (``framework/rollout/evidence.py``).

A window's counts are each series' counter at the window's end minus its counter at its start,
summed per version, role and outcome (or latency bucket, or score bin). A series born inside the
window counts from zero and a counter that went back (a restarted replica) counts from its new
value; nothing is extrapolated, so a window holds whole requests, as a window of samples does.

Replicas hand their metrics to Ray's metrics agent every ``RAY_metrics_report_interval_ms`` (10 s by
default) and Prometheus scrapes it every ``monitoring.scrape_interval_s``, so a request reaches
Prometheus up to ``delay_s`` (the two together) after it was answered. A window is read at its
bounds plus ``delay_s``: it never counts a request answered before its weights went live, and it
is complete ``lag_s`` after it ends.
"""

from __future__ import annotations

import math
import os

from framework.backends.prometheus_api import instant
from framework.backends.promql import promql_string
from framework.errors import BackendError
from framework.rollout.evidence import Tally, TallyEvidence

#: How far back a counter's last value is looked for at a window's start (a quiet series keeps
#: its value; Prometheus marks it stale only when its target goes).
LOOKBACK_S = 3600
REQUESTS = "ray_loom_slot_requests_total"
LATENCY = "ray_loom_slot_latency_ms_bucket"
SCORES = "ray_loom_slot_score_bin_total"
TRAINING_SCORES = "ray_loom_score_bin_total"  # the drift monitor's: each version's profile bins


def ray_report_interval_s() -> float:
    """How often Ray hands metrics to its agent, in seconds (``RAY_metrics_report_interval_ms``)."""
    try:
        return float(os.environ.get("RAY_metrics_report_interval_ms", "10000")) / 1000
    except ValueError:
        return 10.0


class PrometheusSource:
    """An ``EvidenceSource`` over the Prometheus at ``url`` for one model's Serve application.

    Holds plain values only, so it travels to the detached controller actor as is.
    """

    def __init__(self, url: str, model_id: str, scrape_interval_s: float,
                 report_interval_s: float | None = None, timeout_s: float = 10.0) -> None:
        self.url, self.model_id, self.timeout_s = url.rstrip("/"), model_id, timeout_s
        report = ray_report_interval_s() if report_interval_s is None else report_interval_s
        self.delay_s = report + scrape_interval_s
        self.lag_s = self.delay_s + 1.0

    def evidence(self, start: float, end: float, candidate_version: str, stable_version: str,
                 role: str) -> TallyEvidence:
        """The window ``[start, end)`` of the candidate (in ``role``) and the stable version."""
        t0, t1 = start + self.delay_s, end + self.delay_s
        versions = "|".join(sorted({candidate_version, stable_version}))
        model = f"model={promql_string(self.model_id)}"
        slots = f'{model},version=~"{versions}"'
        requests = self.deltas(REQUESTS, slots, t0, t1, ("version", "role", "outcome"))
        if not requests and not self._exists(REQUESTS, t1):
            raise BackendError(
                f"Prometheus at {self.url} holds no {REQUESTS}{{model=\"{self.model_id}\"}} series: "
                "it does not scrape this model's replicas (Ray's metrics endpoint; the launch "
                f"renders a scrape config in .loom/monitoring/{self.model_id}/prometheus.yml), or "
                "nothing was answered yet. Check monitoring.prometheus_url and "
                "monitoring.enabled; the analysis waits and retries.")
        latency = self.deltas(LATENCY, slots, t0, t1, ("version", "role", "le"))
        scores = self.deltas(SCORES, slots, t0, t1, ("version", "role", "bin"))
        training = self.deltas(TRAINING_SCORES, f"{model},version={promql_string(candidate_version)}",
                               t0, t1, ("bin",))
        return TallyEvidence(
            _tally(requests, latency, scores, candidate_version, role),
            _tally(requests, latency, scores, stable_version, "stable"),
            candidate_version, role, _counts(training) or None)

    def deltas(self, name: str, selector: str, t0: float, t1: float,
               by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Each series' increase from ``t0`` to ``t1``, summed by the labels ``by``."""
        window = math.ceil(t1 - t0) + LOOKBACK_S
        after = self._vector(f"last_over_time({name}{{{selector}}}[{window}s])", t1)
        before = self._vector(f"last_over_time({name}{{{selector}}}[{LOOKBACK_S}s])", t0)
        out: dict[tuple[str, ...], float] = {}
        for key, (labels, value) in after.items():
            was = before.get(key, (labels, 0.0))[1]
            grown = value - was if value >= was else value  # a reset counts from its new value
            group = tuple(labels.get(k, "") for k in by)
            out[group] = out.get(group, 0.0) + grown
        return out

    def _exists(self, name: str, at: float) -> bool:
        window = f"{LOOKBACK_S}s"
        model = f"model={promql_string(self.model_id)}"
        return bool(self._vector(f"last_over_time({name}{{{model}}}[{window}])", at))

    def _vector(self, query: str, at: float) -> dict[frozenset, tuple[dict[str, str], float]]:
        """An instant query's series, keyed by their whole label set."""
        try:
            found = instant(self.url, query, at, self.timeout_s, why="the rollout's analysis")
        except BackendError as exc:
            raise BackendError(f"{exc} The analysis waits and retries.") from exc
        return {frozenset(labels.items()): (labels, value) for labels, value in found}


def _tally(requests: dict, latency: dict, scores: dict, version: str, role: str) -> Tally:
    ok = round(requests.get((version, role, "ok"), 0.0))
    errors = round(requests.get((version, role, "error"), 0.0))
    buckets = sorted((float(le), n) for (v, r, le), n in latency.items() if (v, r) == (version, role))
    bins = {(b,): n for (v, r, b), n in scores.items() if (v, r) == (version, role)}
    return Tally(requests=ok + errors, errors=errors,
                 latency_buckets=tuple((bound, round(n)) for bound, n in buckets),
                 score_bins=_counts(bins) if bins else None)


def _counts(bins: dict[tuple[str], float]) -> tuple[int, ...]:
    """Counts per bin index, zeros for the bins nobody fell in."""
    if not bins:
        return ()
    index = {int(b): round(n) for (b,), n in bins.items()}
    return tuple(index.get(i, 0) for i in range(max(index) + 1))

