"""What one analysis window saw, from either source, judged the same way.

Two sources feed a rollout's analysis: the replicas' per-request samples (``SampleSource``, the
default) and Prometheus' counters of the same requests (``framework/rollout/prometheus.py``, with
``monitoring.prometheus_url``). Each gives an *evidence* object per window with the one interface
the controller uses: how many candidate requests it holds, the analysis (``analysis.judge_numbers``
makes every verdict), the ``monitoring.on_drift`` gate, and the stable reference it leaves for later
windows without stable traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from framework.rollout.analysis import (LATENCY_FLOOR_MS, AnalysisResult, analyse, drift_gate,
                                        gate_on_training_psi, judge_numbers, psi_noise_of_counts,
                                        psi_of_counts, split_roles, training_psi_of_counts)
from framework.spec.rollout import Analysis


class SampleEvidence:
    """A window's replica samples (``framework/serving/stats.py``): every number from the requests."""

    def __init__(self, samples: list[dict[str, Any]], candidate_version: str, stable_version: str,
                 role: str) -> None:
        self.candidate, self.stable = split_roles(samples, candidate_version, stable_version, role)
        self.candidate_version, self.role = candidate_version, role

    @property
    def candidate_requests(self) -> int:
        return len(self.candidate)

    def analyse(self, limits: Analysis, *, window: tuple[float, float], baseline: Any,
                intervals: int) -> AnalysisResult:
        """``analysis.analyse`` on the samples; ``baseline``: stable samples of an earlier window."""
        return analyse(self.candidate, self.stable, limits, window=window,
                       candidate_version=self.candidate_version, role=self.role,
                       baseline=baseline if isinstance(baseline, list) else None,
                       intervals=intervals)

    def gate(self, result: AnalysisResult, profile_path: str | None,
             drift: dict[str, Any] | None) -> AnalysisResult:
        return drift_gate(result, self.candidate, profile_path, drift)

    def reference(self, min_requests: int) -> list[dict[str, Any]] | None:
        """The stable samples, when there are enough to judge later windows against."""
        return self.stable if len(self.stable) >= min_requests else None


@dataclass(frozen=True)
class Tally:
    """What one version answered in one role over a window, counted rather than sampled.

    ``latency_buckets``: cumulative request counts per upper bound in ms (``inf`` last), as a
    Prometheus histogram holds them. ``score_bins``: answers per shared score bin
    (``framework/serving/score_bins.py``); None when the model has no shared bins.
    """

    requests: int
    errors: int
    latency_buckets: tuple[tuple[float, float], ...] = ()
    score_bins: tuple[int, ...] | None = None

    @property
    def p99_ms(self) -> float | None:
        return histogram_p99(self.latency_buckets, self.requests)


def histogram_p99(buckets: Sequence[tuple[float, float]], n: int) -> float | None:
    """The p99 from cumulative bucket counts, by the rank ``analysis.p99`` uses (never one request
    alone), interpolated inside its bucket as Prometheus' ``histogram_quantile`` does; a rank in
    the last (+Inf) bucket reads as the highest finite bound."""
    if n <= 0 or not buckets:
        return None
    rank = math.ceil(0.99 * n) if n == 1 else min(math.ceil(0.99 * n), n - 1)
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


class TallyEvidence:
    """A window counted by Prometheus: candidate and stable tallies, and the candidate's scores in
    its training profile's bins (``ray_loom_score_bin_total``, for ``monitoring.on_drift``)."""

    def __init__(self, candidate: Tally, stable: Tally, candidate_version: str, role: str,
                 training_bins: Sequence[int] | None = None, source: str = "prometheus") -> None:
        self.candidate, self.stable = candidate, stable
        self.candidate_version, self.role = candidate_version, role
        self.training_bins, self.source = training_bins, source

    @property
    def candidate_requests(self) -> int:
        return self.candidate.requests

    def analyse(self, limits: Analysis, *, window: tuple[float, float], baseline: Any,
                intervals: int) -> AnalysisResult:
        """The same numbers and verdict as the samples' analysis; agreement needs pairs of answers
        to one request, which counters do not keep, so it is not measured."""
        cand, stable, minimum = self.candidate, self.stable, limits.min_requests
        if stable.requests >= minimum:
            ref, source = stable, "window"
        elif isinstance(baseline, Tally) and baseline.requests >= minimum:
            ref, source = baseline, "earlier window"
        else:
            ref, source = None, "none"
        c_p99 = cand.p99_ms
        r_p99 = ref.p99_ms if ref is not None else None
        ratio = None
        if c_p99 is not None and r_p99 is not None:
            ratio = max(c_p99, LATENCY_FLOOR_MS) / max(r_p99, LATENCY_FLOOR_MS)
        shared = ref is not None and cand.score_bins is not None and ref.score_bins is not None
        ref_bins, cand_bins = _aligned(ref.score_bins, cand.score_bins) if shared else ((), ())
        nums = {
            # Counters keep the instances answered (scores), not those of a failed request.
            "candidate_instances": (sum(cand.score_bins) + cand.errors if cand.score_bins
                                    else cand.requests),
            "candidate_errors": cand.errors,
            "error_rate": cand.errors / cand.requests if cand.requests else None,
            "stable_error_rate": stable.errors / stable.requests if stable.requests else None,
            "p99_ms": c_p99, "stable_p99_ms": r_p99, "latency_ratio": ratio,
            "psi": psi_of_counts(ref_bins, cand_bins) if shared else None,
            "psi_noise": psi_noise_of_counts(ref_bins, cand_bins) if shared else 0.0,
            "agreement": None, "n_pairs": 0,
        }
        return judge_numbers(nums, cand.requests, stable.requests, source, limits, window=window,
                             candidate_version=self.candidate_version, role=self.role,
                             intervals=intervals, source_name=self.source)

    def gate(self, result: AnalysisResult, profile_path: str | None,
             drift: dict[str, Any] | None) -> AnalysisResult:
        if not profile_path or not self.training_bins:
            return result
        return gate_on_training_psi(result, training_psi_of_counts(self.training_bins, profile_path),
                                    drift)

    def reference(self, min_requests: int) -> Tally | None:
        return self.stable if self.stable.requests >= min_requests else None


def _aligned(a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
    size = max(len(a), len(b))
    return list(a) + [0] * (size - len(a)), list(b) + [0] * (size - len(b))


def evidence_of(source: Any, start: float, end: float, candidate_version: str,
                stable_version: str, role: str) -> Any:
    """The evidence of ``[start, end)``: a source that counts (``evidence``) gives it whole; a
    ``SampleSource`` gives samples, judged one by one."""
    if hasattr(source, "evidence"):
        return source.evidence(start, end, candidate_version, stable_version, role)
    return SampleEvidence(source.window(start, end), candidate_version, stable_version, role)
