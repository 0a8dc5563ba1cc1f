"""Accuracy metrics of answers against labels, per task; numpy only (no scikit-learn at serving time)."""

from __future__ import annotations

from typing import Any

#: A probability is clipped to [EPS, 1 - EPS] before its log is taken.
EPS = 1e-15


def auc(y: Any, score: Any) -> float | None:
    """Area under the ROC curve (the Mann-Whitney U statistic; ties count half); None when only one
    class is present."""
    import numpy as np
    import pandas as pd

    y, s = np.asarray(y, dtype=np.float64), np.asarray(score, dtype=np.float64)
    pos, n = int((y == 1).sum()), int(y.size)
    if pos == 0 or pos == n:
        return None
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))


def logloss(y: Any, p: Any) -> float | None:
    """Mean binary cross-entropy of probabilities ``p`` of class 1."""
    import numpy as np

    y, p = np.asarray(y, dtype=np.float64), np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    if y.size == 0:
        return None
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def binary(y: Any, predicted: Any, score: Any) -> dict[str, Any]:
    """AUC and log loss of the scores (rows with one), accuracy and positive rate of the answers."""
    import numpy as np

    y, yhat, s = (np.asarray(a, dtype=np.float64) for a in (y, predicted, score))
    scored, answered = np.isfinite(s), np.isfinite(yhat)
    return {
        "rows": int(y.size),
        "auc": auc(y[scored], s[scored]),
        "logloss": logloss(y[scored], s[scored]) if scored.any() else None,
        "accuracy": float((yhat[answered] == y[answered]).mean()) if answered.any() else None,
        "positive_rate": float(yhat[answered].mean()) if answered.any() else None,
        "label_rate": float(y.mean()) if y.size else None,
    }


def multiclass(y: Any, predicted: Any, probabilities: Any = None) -> dict[str, Any]:
    """Accuracy of the answers; with the logged class probabilities (a model's answers, not a
    fallback's), log loss and AUC averaged over the classes one against the rest (each class that
    has rows of it and rows not of it)."""
    import numpy as np

    y, yhat = np.asarray(y, dtype=object), np.asarray(predicted, dtype=object)
    answered = np.array([v is not None for v in yhat], dtype=bool)
    hits = [a == b for a, b in zip(y[answered], yhat[answered])]
    out = {"rows": int(y.size), "accuracy": float(np.mean(hits)) if hits else None,
           "auc": None, "logloss": None}
    if probabilities is None:
        return out
    probs, truth = _class_probabilities(y, probabilities)
    if truth.size:
        picked = np.clip(probs[np.arange(truth.size), truth], EPS, 1 - EPS)
        out["logloss"] = float(-np.log(picked).mean())
        aucs = [auc(truth == c, probs[:, c]) for c in range(probs.shape[1])]
        aucs = [a for a in aucs if a is not None]
        out["auc"] = float(np.mean(aucs)) if aucs else None
    return out


def _class_probabilities(y: Any, probabilities: Any) -> tuple[Any, Any]:
    """(rows x classes probabilities, class index) of the rows with both, of one class count."""
    import numpy as np

    rows, truth = [], []
    for label, probs in zip(y, probabilities):
        if probs is None or label is None or not str(label).lstrip("-").isdigit():
            continue
        probs = list(probs)
        k = int(label)
        if 0 <= k < len(probs):
            rows.append(probs)
            truth.append(k)
    if not rows:
        return np.zeros((0, 0)), np.zeros(0, dtype=int)
    width = max(len(r) for r in rows)
    keep = [i for i, r in enumerate(rows) if len(r) == width]  # one contract's classes
    return (np.asarray([rows[i] for i in keep], dtype=np.float64),
            np.asarray([truth[i] for i in keep], dtype=int))


def regression(y: Any, predicted: Any) -> dict[str, Any]:
    """RMSE and MAE of the answers, with both means (a bias shows as their difference)."""
    import numpy as np

    y, yhat = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    ok = np.isfinite(yhat) & np.isfinite(y)
    err = yhat[ok] - y[ok]
    return {"rows": int(y.size),
            "rmse": float(np.sqrt((err ** 2).mean())) if err.size else None,
            "mae": float(np.abs(err).mean()) if err.size else None,
            "mean_prediction": float(yhat[ok].mean()) if err.size else None,
            "mean_label": float(y[ok].mean()) if err.size else None}


def task_metrics(task: str, frame: Any) -> dict[str, Any]:
    """The task's metrics over a joined frame (columns ``y``, ``yhat``, ``score``)."""
    if task == "binary":
        return binary(frame["y"], frame["yhat"], frame["score"])
    if task == "multiclass":
        return multiclass(frame["y"], frame["yhat"],
                          frame["probabilities"] if "probabilities" in frame else None)
    return regression(frame["y"], frame["yhat"])
