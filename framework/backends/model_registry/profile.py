"""A reference profile of features and predictions (histograms as JSON) that drift checks compare against."""

from __future__ import annotations

from typing import Any

import numpy as np

PROFILE_FILE = "reference_profile.json"
_BINS = 10


def reference_profile(x: np.ndarray, feature_names: list[str], predictions: np.ndarray,
                      categories: dict[str, int] | None = None) -> dict[str, Any]:
    """Histogram of every feature column and of the predictions.

    Bin edges are the column's deciles (distinct values only), so a PSI over these bins is stable
    for skewed features. Each entry: ``{"edges": [...], "counts": [...], "mean", "std", "missing"}``
    where ``edges`` has ``len(counts) + 1`` values and the outer edges are the observed min and max.
    A categorical feature has one bin per category code instead (deciles of a few codes would merge
    them into one bin, and no shift between categories would show).

    Args:
        x: (rows, features) matrix the model was evaluated on.
        feature_names: column names of ``x``.
        predictions: the model's output on ``x`` (probability of class 1, values, or (n, k) matrix).
        categories: categorical feature -> its number of categories (codes 0..n-1 in ``x``).
    """
    pred = np.asarray(predictions, dtype=np.float64)
    pred = pred.max(axis=1) if pred.ndim == 2 else pred
    categories = categories or {}
    return {
        "format": 2,
        "rows": int(len(x)),
        "features": {name: histogram(x[:, i], categories.get(name))
                     for i, name in enumerate(feature_names)},
        "prediction": histogram(pred),
    }


def histogram(values: np.ndarray, codes: int | None = None) -> dict[str, Any]:
    """Decile-edged histogram of one column, ignoring NaNs (counted in ``missing``); with ``codes``,
    one bin per category code ``0..codes-1`` (edges at the half-integers)."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0 and not codes:
        return {"edges": [], "counts": [], "mean": None, "std": None, "missing": int(v.size)}
    if codes:
        edges = np.arange(codes + 1, dtype=np.float64) - 0.5
        counts, _ = np.histogram(finite, bins=edges)
        return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
                "mean": float(finite.mean()) if finite.size else None,
                "std": float(finite.std()) if finite.size else None,
                "missing": int(v.size - finite.size), "categorical": True}
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, _BINS + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(finite, bins=edges)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "missing": int(v.size - finite.size),
    }


#: Floor of a bin's share in PSI: an empty bin would make ln(0).
PSI_EPS = 1e-4


def bin_of(edges: list[float], value: float) -> tuple[int, bool]:
    """The bin of ``value`` in a profile's ``edges`` and whether it lies outside them.

    Bins are ``[edges[i], edges[i+1])``, the last one closed, as ``np.histogram`` counts them; a value
    below the first edge counts in the first bin and one above the last in the last bin (and both
    are out of range). Pure Python: the replicas call it per feature per row.
    """
    import bisect

    last = len(edges) - 2
    i = bisect.bisect_right(edges, value) - 1
    if i < 0:
        return 0, True
    if i > last:
        return last, value > edges[-1]
    return i, False


def psi(reference: list[int] | list[float], observed: list[int] | list[float]) -> float | None:
    """Population stability index of ``observed`` bin counts against the ``reference`` counts.

    ``sum((o - r) * ln(o / r))`` over the bins' shares, each floored at ``PSI_EPS``. None when either
    side has no rows. 0.1 reads as some change, 0.2 as a significant shift.
    """
    import math

    r_total, o_total = float(sum(reference)), float(sum(observed))
    if r_total <= 0 or o_total <= 0 or len(reference) != len(observed):
        return None
    total = 0.0
    for r, o in zip(reference, observed):
        rs, os_ = max(r / r_total, PSI_EPS), max(o / o_total, PSI_EPS)
        total += (os_ - rs) * math.log(os_ / rs)
    return total


def bins_of(edges: list[float], values: Any) -> tuple[np.ndarray, np.ndarray]:
    """``bin_of`` over an array of finite values: (bin per value, outside-the-edges mask)."""
    v = np.asarray(values, dtype=np.float64)
    last = len(edges) - 2
    i = np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="right") - 1
    below, above = i < 0, i > last
    outside = below | (above & (v > edges[-1]))
    return np.clip(i, 0, last), outside


def load_profile(path: str | None) -> dict[str, Any] | None:
    """A reference profile file (``reference_profile.json`` beside a booster); None when there is
    no path or the file cannot be read as JSON."""
    import json

    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
