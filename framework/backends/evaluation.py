"""Test-split metrics per task (binary, multiclass, regression), computed with numpy only."""

from __future__ import annotations

from typing import Callable

import numpy as np

_EPS = 1e-15


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, log loss, accuracy, F1, precision and recall of positive-class probabilities.

    Args:
        y_true: 0/1 labels.
        prob: predicted probability of class 1, same length.
        threshold: probability at or above which a row counts as predicted positive.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1 - _EPS)
    pred = p >= threshold
    pos = y == 1
    tp = float(np.sum(pred & pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "auc": auc(y, p),
        "logloss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "accuracy": float(np.mean(pred == pos)),
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
    }


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) formula, ties averaged.

    Returns NaN when only one class is present (AUC is undefined then).
    """
    y = np.asarray(y_true) == 1
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    # Tied scores share their average rank, so AUC does not depend on row order.
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def multiclass_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy and macro F1 of an (n, k) class-probability matrix."""
    y = np.asarray(y_true).astype(np.int64)
    p = np.clip(np.asarray(prob, dtype=np.float64), _EPS, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    f1s = []
    for k in range(p.shape[1]):
        tp = np.sum((pred == k) & (y == k))
        denom = np.sum(pred == k) + np.sum(y == k)
        f1s.append(2 * tp / denom if denom else 0.0)
    return {
        "logloss": float(-np.mean(np.log(p[np.arange(len(y)), y]))),
        "accuracy": float(np.mean(pred == y)),
        "f1_macro": float(np.mean(f1s)),
    }


def regression_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² of predictions."""
    y = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(pred, dtype=np.float64) - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot else 0.0,
    }


_BY_TASK: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {
    "binary": binary_metrics,
    "multiclass": multiclass_metrics,
    "regression": regression_metrics,
}


def evaluate(task: str, y_true: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Every metric of ``task`` (see ``framework.spec.training.TASK_METRICS``).

    Args:
        task: "binary", "multiclass" or "regression".
        y_true: labels (class indices for classification).
        prediction: what ``Booster.predict`` returns for that task (probabilities or values).
    """
    return _BY_TASK[task](y_true, prediction)


#: Whether a higher value of each metric is better (gates and tuning use it to say "by how much").
HIGHER_IS_BETTER = {
    "auc": True, "accuracy": True, "f1": True, "precision": True, "recall": True, "f1_macro": True,
    "r2": True, "logloss": False, "rmse": False, "mae": False,
}
