"""The per-round tuning metric: XGBoost's own where it has one, else Loom's test metric on validation."""

from __future__ import annotations

import numpy as np
import pytest

from framework.backends.evaluation import evaluate
from framework.backends.ray_tune.space import native_metric


def _booster_and_data():
    import xgboost

    rng = np.random.default_rng(0)
    x = rng.random((200, 3)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.random(200) > 0.6).astype(np.float32)
    dval = xgboost.DMatrix(x, label=y)
    evals: dict = {}
    booster = xgboost.train({"objective": "binary:logistic", "eval_metric": ["error"], "nthread": 1},
                            dval, 5, evals=[(dval, "validation")], evals_result=evals, verbose_eval=False)
    return booster, dval, y, evals


def test_metrics_xgboost_lacks_are_computed_from_predictions() -> None:
    from framework.backends.ray_tune._core import _ReportMetric

    booster, dval, y, _ = _booster_and_data()
    value = _ReportMetric("f1", "binary", dval, y)._value(booster, 2, {})
    pred = booster.predict(dval, iteration_range=(0, 3))
    assert value == pytest.approx(evaluate("binary", y, pred)["f1"])


def test_accuracy_comes_from_xgboost_error() -> None:
    from framework.backends.ray_tune._core import _ReportMetric

    booster, dval, y, evals = _booster_and_data()
    log = {"validation": {"error": evals["validation"]["error"]}}
    value = _ReportMetric("accuracy", "binary", dval, y)._value(booster, 4, log)
    assert value == pytest.approx(1 - evals["validation"]["error"][-1])


def test_native_metric_names_per_task() -> None:
    assert native_metric("logloss", "multiclass") == "mlogloss"
    assert native_metric("auc", "binary") == "auc"
    assert native_metric("r2", "regression") is None
