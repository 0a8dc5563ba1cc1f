"""Score bins every version slot shares, so a rollout can compare versions from Prometheus alone.

Probabilities (binary and multiclass answers' scores) fall in ten fixed bins of 0.1, the bins the
replica-sample analysis uses for scores inside [0, 1]. A regression score has no natural range:
it is binned in the edges of the stable version's training profile (its ``prediction`` histogram),
so during a rollout the candidate's and the stable version's answers share them; without a profile
there are no bins, and the analysis says the PSI could not be judged.
"""

from __future__ import annotations

from typing import Any, Sequence

from framework.backends.model_registry.profile import bin_of, load_profile

#: Ten bins of 0.1 over [0, 1], the last one closed.
PROBABILITY_EDGES = tuple(round(i / 10, 1) for i in range(11))


def shared_edges(task: str, stable_profile_path: str | None) -> Sequence[float] | None:
    """The bin edges of a model's scores: fixed for probabilities, the stable version's training
    profile's for regression (None without one)."""
    if task in ("binary", "multiclass"):
        return PROBABILITY_EDGES
    profile = load_profile(stable_profile_path) or {}
    edges = (profile.get("prediction") or {}).get("edges") or []
    return tuple(float(e) for e in edges) if len(edges) >= 2 else None


def count_bins(edges: Sequence[float] | None, scores: Sequence[Any]) -> dict[int, int]:
    """Answers per bin (finite scores only; a value outside the edges counts in the end bin)."""
    if not edges:
        return {}
    out: dict[int, int] = {}
    for score in scores:
        if score is None or score != score or score in (float("inf"), float("-inf")):
            continue
        b, _ = bin_of(edges, float(score))
        out[b] = out.get(b, 0) + 1
    return out
