"""Turning a booster's raw output into answers: prediction, probability, label and score."""

from __future__ import annotations

import random
from typing import Any

from framework.serving.slots import ModelFault, Slot


def predict_matrix(slot: Slot, rows: list[list[float]], rng: random.Random) -> Any:
    """Unbatched predict of one request's rows; raises ``ModelFault`` for an injected or real error."""
    (result,) = batch_predict([(slot, rows)], rng)
    if isinstance(result, ModelFault):
        raise result
    return result


class Labeler:
    """Maps raw outputs to ``prediction``/``probability``/``score`` by task and label mapping."""

    def __init__(self, task: str, labels: Any | None) -> None:
        self.task = task
        self.labels = labels

    def answer(self, raw: Any) -> dict[str, Any]:
        """One row's answer."""
        if self.task == "binary":
            p = float(raw)
            return {"prediction": self._binary_label(p), "probability": p, "score": p}
        if self.task == "multiclass":
            probs = [float(x) for x in raw]
            best = max(range(len(probs)), key=probs.__getitem__)
            return {"prediction": best, "probability": probs[best], "score": probs[best],
                    "probabilities": probs}
        value = float(raw)
        return {"prediction": value, "probability": None, "score": value}

    def _binary_label(self, p: float) -> Any:
        if self.labels is None:
            return int(p >= 0.5)
        return self.labels.positive if p >= self.labels.threshold else self.labels.negative


def batch_wait_s(inflight: int, queued: int, wait_s: float) -> float | None:
    """Adaptive batching: how long a request that reaches the model waits for a batch to fill.

    ``inflight``: requests in the replica, this one included; ``queued``: those already in the
    batch queue (or being answered by it). Company is worth waiting for only while it is on its
    way (requests not yet at the model). None: nothing is queued and nobody comes, so the request
    skips the batch queue and is answered at once.
    """
    coming = inflight - 1 - queued
    if coming <= 0:
        return None if queued == 0 else 0.0
    return wait_s


def batch_predict(items: list[tuple[Slot, list[list[float]]]], rng: random.Random) -> list[Any]:
    """Predict many requests' rows with one ``inplace_predict`` per model version.

    Returns one entry per item: its raw outputs, or a ``ModelFault`` for that item alone (an
    injected fault fails only the requests it picks, as a real flaky model would).
    """
    out: list[Any] = [None] * len(items)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (slot, _) in enumerate(items):
        if slot.error_rate > 0 and rng.random() < slot.error_rate:
            out[i] = ModelFault(f"injected fault in model version {slot.version}")
        else:
            groups.setdefault((slot.version, id(slot.booster)), []).append(i)
    for members in groups.values():
        rows = [row for i in members for row in items[i][1]]
        slot = items[members[0]][0]
        try:
            raw = _raw_predict(slot, rows)
        except ModelFault as fault:
            for i in members:
                out[i] = fault
            continue
        start = 0
        for i in members:
            n = len(items[i][1])
            out[i] = raw[start:start + n]
            start += n
    return out


def _raw_predict(slot: Slot, rows: list[list[float]]) -> Any:
    import numpy as np

    try:
        return slot.booster.inplace_predict(np.asarray(rows, dtype=np.float32))
    except Exception as exc:  # any XGBoost failure is a model failure for the fallback chain
        raise ModelFault(f"model version {slot.version} failed: {type(exc).__name__}") from exc
