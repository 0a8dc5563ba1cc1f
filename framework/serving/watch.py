"""What a replica keeps of its answers beyond request metrics: drift bins and the prediction log.

Both are off the request path's critical work: ``answered`` and ``logged`` add to in-memory
counts and buffers; threads flush them (``drift.FLUSH_S``, ``monitoring.log.flush_s``).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from framework.serving.schemas import Instance
from framework.serving.settings import AppArgs

logger = logging.getLogger("loom.serving")


class Watch:
    """The replica's drift monitor and prediction-log writer, each None when the recipe turns it off."""

    def __init__(self, args: AppArgs, metrics: Any, replica: str, lookup: Any = None) -> None:
        self.drift = None
        self.log = None
        self._metrics = metrics
        self._lookup = lookup
        self._warned: set[str] = set()
        if args.drift is not None:
            from framework.serving.drift import DriftMonitor

            fresh = self._freshness if hasattr(lookup, "take_ages") else None
            self.drift = DriftMonitor(args.feature_names, args.drift, metrics, on_flush=fresh)
        if args.prediction_log is not None:
            from framework.serving.predlog import PredictionLogWriter

            self.log = PredictionLogWriter(
                model_id=args.model_id, replica=replica, entity_keys=list(args.entity_keys),
                feature_names=list(args.feature_names), feature_types=dict(args.feature_types),
                **args.prediction_log)

    def _failed(self, message: str, *args: Any) -> None:
        # Once per replica and kind: a defect here would otherwise log on every request.
        if message not in self._warned:
            self._warned.add(message)
            logger.exception(message + " (further failures of this kind are not logged)", *args)

    def _freshness(self) -> None:
        """The ages of the online values the lookup served since the last flush, per view."""
        for view, (_, mean_s, max_s) in self._lookup.take_ages().items():
            self._metrics.feature_age(view, mean_s, max_s)

    def versions(self, slots: Any) -> None:
        """Bins for the versions ``slots`` serves (their profiles); the others are forgotten."""
        if self.drift is None:
            return
        live = [s for s in (slots.stable, slots.candidate, slots.previous) if s is not None]
        for slot in live:
            self.drift.load(slot.version, slot.profile_path,
                            slot.codec.names if slot.codec is not None else None)
        self.drift.keep({s.version for s in live})

    def answered(self, version: str, vectors: Sequence[Sequence[float]],
                 scores: Sequence[float | None]) -> None:
        """Rows a version's model answered, as it read them, and their scores."""
        if self.drift is not None:
            try:
                self.drift.observe(version, vectors, scores)
            except Exception:  # noqa: BLE001 - monitoring never fails a request
                self._failed("monitoring.drift: rows of version %s not binned", version)

    def logged(self, request_id: str, instances: Sequence[Instance], rows: Sequence[dict[str, Any]],
               answers: Sequence[dict[str, Any]], at: float) -> None:
        """One record per answered instance (the writer samples ``monitoring.log.sample_rate``)."""
        if self.log is None:
            return
        try:
            self._log(request_id, instances, rows, answers, at)
        except Exception:  # noqa: BLE001 - monitoring never fails a request
            self._failed("monitoring.log: request %s not logged", request_id)

    def _log(self, request_id: str, instances: Sequence[Instance], rows: Sequence[dict[str, Any]],
             answers: Sequence[dict[str, Any]], at: float) -> None:
        for inst, row, ans in zip(instances, rows, answers):
            prob = ans.get("probability")
            pred = ans.get("prediction")
            score = prob if prob is not None else (
                pred if isinstance(pred, (int, float)) and not isinstance(pred, bool) else None)
            self.log.record(request_id=request_id, version=ans.get("model_version"),
                            entities=inst.entities, features=row, prediction=pred, score=score,
                            degraded=bool(ans.get("degraded")), fallback=ans.get("fallback"), at=at,
                            probabilities=ans.get("probabilities"))

    def close(self) -> None:
        """Last flushes; stops the threads."""
        for part in (self.drift, self.log):
            if part is not None:
                part.close()
