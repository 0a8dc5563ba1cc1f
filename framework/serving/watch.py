"""What a replica keeps of its answers beyond request metrics: drift bins and the prediction log.

Both are off the request path's critical work: ``answered`` and ``logged`` add to in-memory
counts and buffers; threads flush them (``drift.FLUSH_S``, ``monitoring.log.flush_s``).
"""

from __future__ import annotations

from typing import Any, Sequence

from framework.serving.schemas import Instance
from framework.serving.settings import AppArgs


class Watch:
    """The replica's drift monitor and prediction-log writer, each None when the recipe turns it off."""

    def __init__(self, args: AppArgs, metrics: Any, replica: str) -> None:
        self.drift = None
        self.log = None
        if args.drift is not None:
            from framework.serving.drift import DriftMonitor

            self.drift = DriftMonitor(args.feature_names, args.drift, metrics)
        if args.prediction_log is not None:
            from framework.serving.predlog import PredictionLogWriter

            self.log = PredictionLogWriter(
                model_id=args.model_id, replica=replica, entity_keys=list(args.entity_keys),
                feature_names=list(args.feature_names), **args.prediction_log)

    def versions(self, slots: Any) -> None:
        """Bins for the versions ``slots`` serves (their profiles); the others are forgotten."""
        if self.drift is None:
            return
        live = [s for s in (slots.stable, slots.candidate, slots.previous) if s is not None]
        for slot in live:
            self.drift.load(slot.version, slot.profile_path)
        self.drift.keep({s.version for s in live})

    def answered(self, version: str, vectors: Sequence[Sequence[float]],
                 scores: Sequence[float | None]) -> None:
        """Rows a version's model answered, as it read them, and their scores."""
        if self.drift is not None:
            self.drift.observe(version, vectors, scores)

    def logged(self, request_id: str, instances: Sequence[Instance], rows: Sequence[dict[str, Any]],
               answers: Sequence[dict[str, Any]], at: float) -> None:
        """One record per answered instance (the writer samples ``monitoring.log.sample_rate``)."""
        if self.log is None:
            return
        for inst, row, ans in zip(instances, rows, answers):
            prob = ans.get("probability")
            pred = ans.get("prediction")
            score = prob if prob is not None else (
                pred if isinstance(pred, (int, float)) and not isinstance(pred, bool) else None)
            self.log.record(request_id=request_id, version=ans.get("model_version"),
                            entities=inst.entities, features=row, prediction=pred, score=score,
                            degraded=bool(ans.get("degraded")), fallback=ans.get("fallback"), at=at)

    def close(self) -> None:
        """Last flushes; stops the threads."""
        for part in (self.drift, self.log):
            if part is not None:
                part.close()
