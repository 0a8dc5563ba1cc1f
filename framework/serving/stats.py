"""Per-request samples: recorded in replicas, shipped about once a second to a stats actor per model.

The actor is named ``loom-stats-<model_id>`` in namespace ``loom`` (detached, so it outlives the
driver). The rollout controller reads windows of samples with ``read_window``. Recording never
blocks or fails a request.

A sample is one request, whatever its batch size, so error rates and latencies count requests:
``{"ts", "version", "role", "ok", "latency_ms", "instances", "score"}``. ``instances`` is the
request's instance count; ``score`` is the answer's score for a one-instance request, else None,
and a successful batch carries every instance's score in ``scores`` (``sample_scores`` reads
either). A shadow sample also carries the stable answers' ``stable_score`` / ``stable_scores``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable, Sequence

NAMESPACE = "loom"
CAPACITY = 200_000
FLUSH_INTERVAL_S = 1.0
logger = logging.getLogger("loom.serving")


def sample_scores(sample: dict[str, Any], key: str = "score") -> list[float | None]:
    """The scores of a sample's instances (``key="stable_score"``: the stable ones it is paired with).

    One score for a one-instance request (None when it failed), every instance's for a batch.
    """
    many = sample.get(key + "s")
    if many is not None:
        return list(many)
    return [sample.get(key)]


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
        from framework.backends.ray_runtime import ON_HEAD

        remote_cls = ray.remote(num_cpus=0, max_restarts=-1)(StatsStore)
        return remote_cls.options(name=name, namespace=NAMESPACE, lifetime="detached",
                                  get_if_exists=True, resources=dict(ON_HEAD)).remote()
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
    """Buffers samples in a replica and ships them in batches from a background task.

    ``clock``: the time stamp of each sample (tests pass a fake clock's ``now``).
    """

    def __init__(self, model_id: str, enabled: bool = True, max_buffer: int = 50_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.model_id = model_id
        self.enabled = enabled
        self.clock = clock
        self._buffer: deque[dict[str, Any]] = deque(maxlen=max_buffer)
        self._task: asyncio.Task | None = None
        self._actor: Any = None

    def record(self, version: str, role: str, ok: bool, latency_ms: float,
               scores: Sequence[float] = (), stable_scores: Sequence[float | None] | None = None,
               instances: int = 1) -> None:
        """Queue one request's sample; never raises into the request.

        Args:
            version, role: the version that answered and its role (stable, candidate, shadow).
            ok: whether the model answered; a failed request is one failure, whatever its size.
            latency_ms: the request's latency.
            scores: the answers' scores, one per instance (empty when the request failed).
            stable_scores: for a shadow sample, the stable model's scores for the same instances
                (None when the stable model did not answer).
            instances: how many instances the request held.
        """
        if not self.enabled:
            return
        sample: dict[str, Any] = {"ts": self.clock(), "version": version, "role": role, "ok": ok,
                                  "latency_ms": latency_ms, "instances": instances, "score": None}
        if instances == 1 and len(scores) == 1:
            sample["score"] = scores[0]
            if stable_scores and stable_scores[0] is not None:
                sample["stable_score"] = stable_scores[0]
        elif scores:
            sample["scores"] = list(scores)
            if stable_scores is not None:
                sample["stable_scores"] = list(stable_scores)
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
