"""Gate checks say which metric failed, by how much, and fail on metrics that were not measured."""

from __future__ import annotations

import pytest

from framework.backends.model_registry.gates import check_gates, raise_if_failed
from framework.errors import GateError
from framework.spec.training import Gate


def test_passing_gates_have_zero_shortfall() -> None:
    results = check_gates([Gate(metric="auc", min=0.7), Gate(metric="logloss", max=0.6)],
                          {"auc": 0.8, "logloss": 0.5})
    assert [r["passed"] for r in results] == [True, True]
    assert [r["shortfall"] for r in results] == [0.0, 0.0]
    raise_if_failed(results, "churn")


@pytest.mark.parametrize("gate, metrics, fragment", [
    (Gate(metric="auc", min=0.99), {"auc": 0.81}, "auc = 0.8100, below min 0.99 by 0.1800"),
    (Gate(metric="rmse", max=1.0), {"rmse": 1.25}, "rmse = 1.2500, above max 1.0 by 0.2500"),
    (Gate(metric="r2", min=0.1, max=0.9), {"r2": 0.95}, "above max 0.9 by 0.0500"),
    (Gate(metric="f1_macro", min=0.5), {"auc": 0.9}, "f1_macro: not measured"),
    (Gate(metric="auc", min=0.5), {"auc": float("nan")}, "auc: not measured"),
], ids=["below-min", "above-max", "range", "missing", "nan"])
def test_failed_gate_message(gate: Gate, metrics: dict, fragment: str) -> None:
    results = check_gates([gate], metrics)
    assert results[0]["passed"] is False
    with pytest.raises(GateError) as err:
        raise_if_failed(results, "churn")
    text = str(err.value)
    assert fragment in text
    assert "Model 'churn' missed 1 quality gate(s) (training.gates)" in text
    assert "champion is unchanged" in text
