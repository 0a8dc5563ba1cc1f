"""Judge one analysis window (one interval, or quiet intervals accumulated) against stable.

A sample is one request (``framework/serving/stats.py``): error rate, latency and
``min_requests`` count requests, so a failing 50-row batch weighs as much as a failing single
request; PSI and agreement compare scores, so they read every instance of every request.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from framework.serving.stats import sample_scores
from framework.spec.rollout import Analysis

Verdict = Literal["pass", "fail", "inconclusive", "paused"]

#: p99s below this are noise on a shared machine; flooring them keeps the ratio check meaningful.
LATENCY_FLOOR_MS = 2.0
#: Added to every PSI bin share so an empty bin does not make PSI infinite.
PSI_EPSILON = 1e-4
PSI_BINS = 10


@dataclass(frozen=True)
class AnalysisResult:
    """Every number of one window's analysis, the verdict and a reason people can read."""

    verdict: Verdict
    reason: str
    window_start: float
    window_end: float
    candidate_version: str
    candidate_role: str
    n_candidate: int
    n_stable: int
    candidate_errors: int
    error_rate: float | None
    stable_error_rate: float | None
    p99_ms: float | None
    stable_p99_ms: float | None
    latency_ratio: float | None
    psi: float | None
    psi_noise: float
    agreement: float | None
    n_pairs: int
    baseline: str
    candidate_instances: int = 0  # instances in the candidate's requests (a batch holds many)
    intervals: int = 1  # more than 1: the quiet intervals before this one were accumulated
    training_psi: float | None = None  # the candidate's scores against its training profile
    source: str = "samples"  # what the numbers were read from: "samples" or "prometheus"

    @property
    def accumulation(self) -> dict[str, Any] | None:
        """What an inconclusive result leaves for the next judgement to add to (else None)."""
        if self.verdict != "inconclusive":
            return None
        return {"since": self.window_start, "until": self.window_end, "intervals": self.intervals,
                "n_candidate": self.n_candidate, "n_stable": self.n_stable}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, numbers rounded for the audit log."""
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def p99(values: Sequence[float]) -> float | None:
    """The 99th percentile by nearest rank, never set by one request alone (None for no values).

    Below 100 requests the nearest-rank p99 is the slowest request, so one straggler (a GC pause,
    a busy neighbour on the node) would decide a window: a canary judged on 4 requests failed at
    a latency ratio of 24 for one slow answer. The rank is capped at the second slowest, so a
    tail is at least two requests; from 100 requests on it is the plain nearest-rank p99.
    """
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    if not n:
        return None
    rank = math.ceil(0.99 * n) if n == 1 else min(math.ceil(0.99 * n), n - 1)
    return float(ordered[rank - 1])


def psi(reference: Sequence[float], actual: Sequence[float]) -> float | None:
    """Population stability index of ``actual`` against ``reference`` (None if either is empty).

    Scores inside [0, 1] (probabilities) use ten fixed bins, so windows are comparable over time;
    other scores (regression) use the reference's deciles as bin edges.
    """
    ref = np.asarray(reference, dtype=float)
    act = np.asarray(actual, dtype=float)
    if not len(ref) or not len(act):
        return None
    edges = _bin_edges(ref, act)
    return psi_of_counts(np.histogram(ref, edges)[0], np.histogram(act, edges)[0])


def psi_of_counts(reference: Sequence[float], actual: Sequence[float]) -> float | None:
    """PSI of ``actual`` bin counts against ``reference`` counts in the same bins (None if either
    is empty): what both analysis paths compute, from samples or from Prometheus' counters."""
    ref, act = np.asarray(reference, dtype=float), np.asarray(actual, dtype=float)
    if not ref.sum() or not act.sum():
        return None
    ref_share = ref / ref.sum() + PSI_EPSILON
    act_share = act / act.sum() + PSI_EPSILON
    return float(np.sum((act_share - ref_share) * np.log(act_share / ref_share)))


def psi_noise(reference: Sequence[float], actual: Sequence[float]) -> float:
    """The PSI two samples of the same distribution show on average, from their sizes alone.

    PSI is a symmetric KL divergence, so for equal distributions it is about
    (bins - 1) * (1/n_ref + 1/n_act): 0.18 for 50 against 50 requests. Judging the excess over
    it keeps small windows from failing healthy candidates.
    """
    if not len(reference) or not len(actual):
        return 0.0
    edges = _bin_edges(np.asarray(reference, float), np.asarray(actual, float))
    return psi_noise_of_counts(np.histogram(reference, edges)[0], np.histogram(actual, edges)[0])


def psi_noise_of_counts(reference: Sequence[float], actual: Sequence[float]) -> float:
    """``psi_noise`` from two count vectors in the same bins."""
    ref, act = np.asarray(reference, dtype=float), np.asarray(actual, dtype=float)
    if not ref.sum() or not act.sum():
        return 0.0
    bins = max(1, int(np.count_nonzero(ref + act)))
    return float((bins - 1) * (1 / ref.sum() + 1 / act.sum()))


def _bin_edges(ref: np.ndarray, act: np.ndarray) -> np.ndarray:
    lo, hi = min(ref.min(), act.min()), max(ref.max(), act.max())
    if lo >= 0 and hi <= 1:
        return np.linspace(0.0, 1.0, PSI_BINS + 1)
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    return np.concatenate([[min(lo, inner[0]) - 1e-9], inner, [max(hi, inner[-1]) + 1e-9]])


def split_roles(
    samples: Iterable[dict[str, Any]], candidate_version: str, stable_version: str, role: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(candidate requests of ``role``, stable requests), each filtered by its version."""
    cand, stable = [], []
    for s in samples:
        if s.get("role") == role and str(s.get("version")) == candidate_version:
            cand.append(s)
        elif s.get("role") == "stable" and str(s.get("version")) == stable_version:
            stable.append(s)
    return cand, stable


def analyse(
    candidate: list[dict[str, Any]],
    stable: list[dict[str, Any]],
    limits: Analysis,
    *,
    window: tuple[float, float],
    candidate_version: str,
    role: str = "candidate",
    baseline: list[dict[str, Any]] | None = None,
    intervals: int = 1,
) -> AnalysisResult:
    """Compare one window's candidate samples against the stable ones.

    Args:
        candidate: requests answered (or shadowed) by the candidate version in the window, one
            sample each whatever its batch size.
        stable: requests answered by the stable version in the same window.
        limits: the recipe's ``rollout.analysis`` thresholds.
        window: (start, end) epoch seconds, recorded in the result.
        candidate_version: the version judged, recorded in the result.
        role: "candidate" (canary, blue-green bake) or "shadow" (blue-green shadow phase).
        baseline: stable samples from an earlier window, used for the relative checks (latency
            ratio, PSI) when this window has fewer than ``min_requests`` stable samples, as at
            100% weight.
        intervals: how many analysis intervals the window spans (more than 1 when quiet
            intervals were accumulated), recorded in the result and named in its reason.

    Returns:
        An AnalysisResult: "inconclusive" below ``min_requests`` candidate requests, else "fail" when
        any threshold is broken (the reason lists each), else "pass".
    """
    ref, source = _reference(stable, baseline, limits.min_requests)
    return judge_numbers(_numbers(candidate, stable, ref), len(candidate), len(stable), source,
                         limits, window=window, candidate_version=candidate_version, role=role,
                         intervals=intervals)


def judge_numbers(
    nums: dict[str, Any], n: int, n_stable: int, source: str, limits: Analysis, *,
    window: tuple[float, float], candidate_version: str, role: str, intervals: int,
    source_name: str = "samples",
) -> AnalysisResult:
    """The verdict on one window's numbers, however they were measured (replica samples or
    Prometheus): ``n`` candidate and ``n_stable`` stable requests, ``source`` where the stable
    reference came from ("window", "earlier window" or "none")."""
    failed = _broken_limits(nums, limits)
    if n < limits.min_requests:
        verdict: Verdict = "inconclusive"
        reason = f"only {n} of {limits.min_requests} {role} requests needed to judge"
    elif failed:
        verdict, reason = "fail", "; ".join(failed)
    else:
        verdict, reason = "pass", _pass_reason(nums, source)
    if intervals > 1:  # say which window was judged: the quiet intervals before were added
        reason += (f" over {intervals} intervals" if verdict == "inconclusive"
                   else f"; judged on {n} {role} requests of {intervals} intervals together")
    return AnalysisResult(
        verdict=verdict, reason=reason, window_start=window[0], window_end=window[1],
        candidate_version=candidate_version, candidate_role=role, n_candidate=n,
        n_stable=n_stable, baseline=source, intervals=intervals, source=source_name, **nums,
    )


def _reference(
    stable: list[dict[str, Any]], baseline: list[dict[str, Any]] | None, min_requests: int
) -> tuple[list[dict[str, Any]], str]:
    if len(stable) >= min_requests:
        return stable, "window"
    if baseline and len(baseline) >= min_requests:
        return baseline, "earlier window"
    return [], "none"


def _numbers(
    cand: list[dict[str, Any]], stable: list[dict[str, Any]], ref: list[dict[str, Any]]
) -> dict[str, Any]:
    errors = sum(1 for s in cand if not s.get("ok", True))
    c_p99 = p99([float(s["latency_ms"]) for s in cand])
    r_p99 = p99([float(s["latency_ms"]) for s in ref])
    ratio = None
    if c_p99 is not None and r_p99 is not None:
        ratio = max(c_p99, LATENCY_FLOOR_MS) / max(r_p99, LATENCY_FLOOR_MS)
    agreement, pairs = _agreement(cand, stable)
    return {
        "candidate_instances": sum(int(s.get("instances", 1)) for s in cand),
        "candidate_errors": errors,
        "error_rate": errors / len(cand) if cand else None,
        "stable_error_rate": _error_rate(stable),
        "p99_ms": c_p99,
        "stable_p99_ms": r_p99,
        "latency_ratio": ratio,
        "psi": psi(_scores(ref), _scores(cand)),
        "psi_noise": psi_noise(_scores(ref), _scores(cand)),
        "agreement": agreement,
        "n_pairs": pairs,
    }


def _error_rate(samples: list[dict[str, Any]]) -> float | None:
    return sum(1 for s in samples if not s.get("ok", True)) / len(samples) if samples else None


def _scores(samples: list[dict[str, Any]]) -> list[float]:
    """Every instance's score of the answered requests."""
    return [float(v) for s in samples if s.get("ok", True)
            for v in sample_scores(s) if v is not None]


def _agreement(
    cand: list[dict[str, Any]], stable: list[dict[str, Any]]
) -> tuple[float | None, int]:
    """Share of paired answers on the same side of 0.5 (shadow samples pair with stable ones).

    A shadow sample pairs each instance with the stable answer to it: through its own
    ``stable_score`` / ``stable_scores``, or through a ``request_id`` both samples carry.
    """
    by_id = {s["request_id"]: s for s in stable if s.get("request_id") is not None}
    pairs = []
    for s in cand:
        if not s.get("ok", True):
            continue
        others = sample_scores(s, "stable_score")
        if all(o is None for o in others) and s.get("request_id") in by_id:
            others = sample_scores(by_id[s["request_id"]])
        for mine, other in zip(sample_scores(s), others):
            if mine is not None and other is not None:
                pairs.append((float(mine) >= 0.5) == (float(other) >= 0.5))
    return (sum(pairs) / len(pairs) if pairs else None), len(pairs)


def _broken_limits(nums: dict[str, Any], limits: Analysis) -> list[str]:
    checks = [
        ("error rate", nums["error_rate"], limits.max_error_rate, "{:.3f}"),
        ("p99 latency ms", nums["p99_ms"], limits.max_p99_latency_ms, "{:.1f}"),
        ("p99 latency ratio to stable", nums["latency_ratio"], limits.max_latency_ratio, "{:.2f}"),
        ("score PSI against stable (beyond sampling noise)", _psi_excess(nums),
         limits.max_prediction_psi, "{:.3f}"),
    ]
    return [
        f"{name} {fmt.format(value)} > {fmt.format(limit)}"
        for name, value, limit, fmt in checks
        if value is not None and value > limit
    ]


def _psi_excess(nums: dict[str, Any]) -> float | None:
    return None if nums["psi"] is None else max(0.0, nums["psi"] - nums["psi_noise"])


def _pass_reason(nums: dict[str, Any], source: str) -> str:
    text = f"error rate {nums['error_rate']:.3f}, p99 {nums['p99_ms']:.1f} ms"
    if source == "none":
        return text + " (no stable traffic to compare: latency ratio and PSI not judged)"
    text += f", latency ratio {nums['latency_ratio']:.2f}, PSI {nums['psi'] or 0:.3f}"
    return text + (" (stable from an earlier window)" if source == "earlier window" else "")


def drift_gate(result: AnalysisResult, candidate: list[dict[str, Any]], profile_path: str | None,
               drift: dict[str, Any] | None) -> AnalysisResult:
    """``monitoring.on_drift`` on one judged window: a candidate whose scores drifted from its
    training reference profile fails the window (``rollback``) or holds the rollout at its step
    (``pause_rollout``: verdict "paused", until people promote, abort or roll back).

    Judged, like the stable comparison, on the PSI beyond the sampling noise of the window's size.
    The window keeps its verdict when there is no gate, too little traffic, or no profile.
    """
    if drift is None or result.verdict == "inconclusive" or not profile_path:
        return result
    return gate_on_training_psi(result, training_psi(_scores(candidate), profile_path), drift)


def gate_on_training_psi(result: AnalysisResult, got: tuple[float, float] | None,
                         drift: dict[str, Any] | None) -> AnalysisResult:
    """``drift_gate`` on a measured (PSI, its sampling noise) of the candidate's scores against
    its training profile; None (no profile, no scores) keeps the window's verdict."""
    if drift is None or result.verdict == "inconclusive" or got is None:
        return result
    value, noise = got
    result = replace(result, training_psi=value)
    limit, action = float(drift["psi_threshold"]), drift["action"]
    if value - noise <= limit:
        return result
    why = (f"score PSI against the candidate's training profile (beyond sampling noise) "
           f"{value - noise:.3f} > {limit:.3f} (monitoring.on_drift: {action})")
    if result.verdict == "fail":
        return replace(result, reason=f"{result.reason}; {why}")
    if action == "rollback":
        return replace(result, verdict="fail", reason=why)
    return replace(result, verdict="paused", reason=why + "; the rollout holds this step until "
                   "`loom rollout promote recipe=NAME`, `loom rollout abort recipe=NAME` or "
                   "`loom rollout rollback recipe=NAME`")


def training_psi(scores: Sequence[float], profile_path: str) -> tuple[float, float] | None:
    """PSI of ``scores`` in the bins of the profile's ``prediction`` histogram, and the PSI two
    samples of those sizes from one distribution show on average (see ``psi_noise``); None without
    a profile or scores."""
    from framework.backends.model_registry.profile import bins_of

    edges = (_profile(profile_path).get("prediction") or {}).get("edges") or []
    finite = np.asarray(scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]  # as the replicas: no bin for NaN
    if len(edges) < 2 or not finite.size:
        return None
    return training_psi_of_counts(
        np.bincount(bins_of(edges, finite)[0], minlength=len(edges) - 1).tolist(), profile_path)


def training_psi_of_counts(observed: Sequence[int], profile_path: str) -> tuple[float, float] | None:
    """``training_psi`` from scores already counted in the profile's ``prediction`` bins (as the
    replicas count them in ``ray_loom_score_bin_total``)."""
    from framework.backends.model_registry.profile import psi as profile_psi

    counts = (_profile(profile_path).get("prediction") or {}).get("counts") or []
    observed = list(observed)[:len(counts)] + [0] * max(0, len(counts) - len(observed))
    if not sum(counts) or not sum(observed):
        return None
    bins = max(1, sum(1 for r, o in zip(counts, observed) if r or o))
    noise = (bins - 1) * (1 / sum(counts) + 1 / sum(observed))
    return profile_psi(counts, observed), noise


@functools.lru_cache(maxsize=8)
def _profile(path: str) -> dict[str, Any]:
    from framework.backends.model_registry.profile import load_profile

    return load_profile(path) or {}  # unreadable: the gate judges nothing
