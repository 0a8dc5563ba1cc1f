"""Per-request samples: recorded in replicas, shipped about once a second to a stats actor per model.

The actor is named ``loom-stats-<model_id>`` in namespace ``loom`` (detached, so it outlives the
driver). The rollout controller reads windows of samples with ``read_window``. Each sample is
``{"ts", "version", "role", "ok", "latency_ms", "score"}``. Recording never blocks or fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

NAMESPACE = "loom"
CAPACITY = 200_000
FLUSH_INTERVAL_S = 1.0
logger = logging.getLogger("loom.serving")


def actor_name(model_id: str) -> str:
    """The stats actor's name for a model."""
    return f"loom-stats-{model_id}"


class StatsStore:
    """A bounded ring buffer of samples ordered by arrival (the actor's state)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._samples: deque[dict[str, Any]] = deque(maxlen=capacity)

    def add(self, samples: list[dict[str, Any]]) -> int:
        """Append samples; the oldest fall off beyond capacity. Returns the count held."""
        self._samples.extend(samples)
        return len(self._samples)

    def window(self, start_ts: float, end_ts: float) -> list[dict[str, Any]]:
        """Samples with ``start_ts <= ts < end_ts``, sorted by ``ts``."""
        picked = [s for s in self._samples if start_ts <= s["ts"] < end_ts]
        picked.sort(key=lambda s: s["ts"])
        return picked

    def count(self) -> int:
        """Samples held."""
        return len(self._samples)


def _actor(model_id: str, create: bool) -> Any:
    import ray

    name = actor_name(model_id)
    if create:
        remote_cls = ray.remote(num_cpus=0, max_restarts=-1)(StatsStore)
        return remote_cls.options(name=name, namespace=NAMESPACE, lifetime="detached",
                                  get_if_exists=True).remote()
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def read_window(model_id: str, start_ts: float, end_ts: float) -> list[dict[str, Any]]:
    """Samples of ``model_id`` recorded in ``[start_ts, end_ts)``; [] when none were recorded.

    Works from any driver connected to the Ray cluster.
    """
    import ray

    actor = _actor(model_id, create=False)
    if actor is None:
        return []
    return ray.get(actor.window.remote(start_ts, end_ts))


def drop_stats(model_id: str) -> None:
    """Kill the model's stats actor (when the app is deleted)."""
    import ray

    actor = _actor(model_id, create=False)
    if actor is not None:
        ray.kill(actor)


class StatsRecorder:
    """Buffers samples in a replica and ships them in batches from a background task."""

    def __init__(self, model_id: str, enabled: bool = True, max_buffer: int = 50_000) -> None:
        self.model_id = model_id
        self.enabled = enabled
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._task: asyncio.Task | None = None
        self._actor: Any = None

    def record(self, version: str, role: str, ok: bool, latency_ms: float,
               score: float | None, stable_score: float | None = None) -> None:
        """Queue one sample; O(1), never raises into the request.

        ``stable_score``: for a shadow sample, the stable model's score for the same request.
        """
        if self.enabled:
            sample = {"ts": time.time(), "version": version, "role": role, "ok": ok,
                      "latency_ms": latency_ms, "score": score}
            if stable_score is not None:
                sample["stable_score"] = stable_score
            self._buffer.append(sample)

    def start(self) -> None:
        """Start the shipping loop on the running event loop (idempotent)."""
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        """Ship what is buffered; on failure the batch is dropped and logged, never retried forever."""
        if not self._buffer:
            return
        batch = [self._buffer.popleft() for _ in range(len(self._buffer))]
        try:
            if self._actor is None:
                self._actor = _actor(self.model_id, create=True)
            await self._actor.add.remote(batch)
        except Exception as exc:  # the stats path must never hurt serving
            self._actor = None
            logger.warning("dropped %d stats samples: %s", len(batch), type(exc).__name__)
