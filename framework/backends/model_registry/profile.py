"""A reference profile of features and predictions (histograms as JSON) that drift checks compare against."""

from __future__ import annotations

from typing import Any

import numpy as np

PROFILE_FILE = "reference_profile.json"
_BINS = 10


def reference_profile(x: np.ndarray, feature_names: list[str], predictions: np.ndarray) -> dict[str, Any]:
    """Histogram of every feature column and of the predictions.

    Bin edges are the column's deciles (distinct values only), so a PSI over these bins is stable
    for skewed features. Each entry: ``{"edges": [...], "counts": [...], "mean", "std", "missing"}``
    where ``edges`` has ``len(counts) + 1`` values and the outer edges are the observed min and max.

    Args:
        x: (rows, features) matrix the model was evaluated on.
        feature_names: column names of ``x``.
        predictions: the model's output on ``x`` (probability of class 1, values, or (n, k) matrix).
    """
    pred = np.asarray(predictions, dtype=np.float64)
    pred = pred.max(axis=1) if pred.ndim == 2 else pred
    return {
        "format": 1,
        "rows": int(len(x)),
        "features": {name: histogram(x[:, i]) for i, name in enumerate(feature_names)},
        "prediction": histogram(pred),
    }


def histogram(values: np.ndarray) -> dict[str, Any]:
    """Decile-edged histogram of one column, ignoring NaNs (counted in ``missing``)."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {"edges": [], "counts": [], "mean": None, "std": None, "missing": int(v.size)}
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
