"""Test metrics computed with numpy match hand-worked values for each task."""

from __future__ import annotations

import math

import numpy as np
import pytest

from framework.backends.evaluation import HIGHER_IS_BETTER, auc, evaluate
from framework.spec.training import TASK_METRICS


def test_auc_counts_correctly_ordered_pairs_with_ties_as_half() -> None:
    y = np.array([0, 0, 1, 1])
    assert auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0


def test_auc_is_nan_with_one_class() -> None:
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.9])))


def test_binary_metrics_at_threshold() -> None:
    m = evaluate("binary", np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.4, 0.1]))
    assert m["accuracy"] == 0.5
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    expected_logloss = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert m["logloss"] == pytest.approx(expected_logloss)


def test_multiclass_metrics() -> None:
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]])
    m = evaluate("multiclass", np.array([0, 1, 2, 1]), prob)
    assert m["accuracy"] == 0.75
    # class 0: tp1 pred2 true1 → 2/3; class 1: tp1 pred1 true2 → 2/3; class 2: 1
    assert m["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["logloss"] == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.6, 0.4])))


def test_regression_metrics() -> None:
    m = evaluate("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["r2"] == pytest.approx(1 - 4 / 2)


@pytest.mark.parametrize("task", sorted(TASK_METRICS))
def test_every_task_metric_is_computed_and_has_a_direction(task: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3 if task == "multiclass" else 2, 50)
    pred = rng.dirichlet([1, 1, 1], 50) if task == "multiclass" else rng.random(50)
    assert set(evaluate(task, y, pred)) == set(TASK_METRICS[task])
    assert set(TASK_METRICS[task]) <= set(HIGHER_IS_BETTER)
