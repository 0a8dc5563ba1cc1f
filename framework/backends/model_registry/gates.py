"""Quality gates: check the test metrics against the recipe's thresholds and say what failed by how much."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

from framework.errors import GateError

if TYPE_CHECKING:
    from framework.spec.training import Gate


def check_gates(gates: Iterable["Gate"], metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One result per gate: ``{"metric", "value", "min", "max", "passed", "shortfall"}``.

    ``shortfall`` is how far the value misses its bound (0 when it passes). A metric the model did
    not produce, or a NaN, fails with ``value: None``.
    """
    results = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is not None and math.isnan(value):
            value = None
        shortfall = None if value is None else _shortfall(gate, value)
        results.append({
            "metric": gate.metric, "value": value, "min": gate.min, "max": gate.max,
            "passed": shortfall == 0, "shortfall": shortfall,
        })
    return results


def _shortfall(gate: "Gate", value: float) -> float:
    below = gate.min - value if gate.min is not None and value < gate.min else 0.0
    above = value - gate.max if gate.max is not None and value > gate.max else 0.0
    return max(below, above)


def raise_if_failed(results: list[dict[str, Any]], model_id: str) -> None:
    """Raise GateError listing every failed gate with its value, bound and shortfall."""
    failed = [r for r in results if not r["passed"]]
    if not failed:
        return
    lines = [_describe(r) for r in failed]
    raise GateError(
        f"Model '{model_id}' missed {len(failed)} quality gate(s) (training.gates); nothing was "
        "registered, the champion is unchanged:\n" + "\n".join(f"  - {line}" for line in lines)
        + "\n  Improve the model or data, or relax the gate in the recipe."
    )


def _describe(result: dict[str, Any]) -> str:
    metric, value = result["metric"], result["value"]
    if value is None:
        return f"{metric}: not measured on the test split (check the metric name and the task)"
    if result["min"] is not None and value < result["min"]:
        return f"{metric} = {value:.4f}, below min {result['min']} by {result['shortfall']:.4f}"
    return f"{metric} = {value:.4f}, above max {result['max']} by {result['shortfall']:.4f}"
