"""A stream consumer: a Ray actor that scores events with the served model's slots and split.

Each consumer reads batches of events from the source stream's consumer group, checks them
(``events.EventParser``), looks their features up online and predicts with a ``Predictor`` built
from the online app's own builder args and ``user_config`` (re-read every ``sync_s``, so a canary
takes its share of events and a promotion reaches the consumers within a second or so), and
writes one result per event id to the sink (``bus.Bus.deliver``). A bad event goes to the
dead-letter stream with its reason; the consumer never stops for one.

The loop runs in a thread the actor starts in ``__init__``, so an actor Ray restarts after a
crash resumes by itself: it first answers the events it had read and not acknowledged, and any
consumer claims events left unanswered by a consumer that does not come back.

Metrics (Ray's metrics port, ``ray_`` prefix), per model:

- ``ray_loom_stream_events_total{model,consumer,outcome}``  ok, degraded, dead_letter, duplicate
- ``ray_loom_stream_event_latency_ms_bucket{model}``         event time -> result written to the sink
- ``ray_loom_stream_lag{model}``                             events in the source not yet read
- ``ray_loom_stream_pending{model}``                         read, not yet answered
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

from framework.serving.metrics import LATENCY_BOUNDARIES_MS
from framework.streaming.bus import Bus, Streams, connect, dead_fields
from framework.streaming.events import BadEvent, Event, EventParser

logger = logging.getLogger("loom.streaming")
#: Events/s in ``stats()`` are counted over this window.
RATE_WINDOW_S = 10.0
#: A consumer whose store, model or bus fails waits this long before it tries again.
RETRY_S = 0.5


class ConsumerArgs(BaseModel):
    """What one consumer actor needs (the driver writes it; the actor validates it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_name: str
    model_id: str
    consumer: str
    url: str
    password: str | None = None
    streams: dict[str, str]
    start: str = "new"
    id_field: str = "event_id"
    time_field: str = "event_time"
    max_id_chars: int = 200
    read_count: int = 100
    block_ms: int = 200
    claim_idle_ms: int = 10_000
    sink_max_len: int = 1_000_000
    dedupe_ttl_s: int = 86_400
    sync_s: float = 1.0
    push_views: dict[str, dict[str, Any]] = {}
    """``push: true`` views: name -> ``{"keys", "fields", "timestamp_field"}`` (``feast.push``)."""


class StreamConsumer:
    """One consumer of a model's event stream (a detached Ray actor; see ``control``)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.a = ConsumerArgs.model_validate(args)
        self.counts = {"ok": 0, "degraded": 0, "dead_letter": 0, "duplicate": 0, "retried": 0,
                       "claimed": 0, "errors": 0}
        self.versions: dict[str, int] = {}
        self.last_error: str | None = None
        self.started_at = time.time()
        self._done: deque[tuple[float, int]] = deque()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.predictor: Any = None
        self.parser: EventParser | None = None
        self.pusher: Any = None
        self._args: dict[str, Any] | None = None
        self._user_config: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._main, name="loom-stream", daemon=True)
        self._thread.start()

    # -- calls from the driver ---------------------------------------------------------------

    def ready(self, wait_s: float = 60.0) -> dict[str, Any]:
        """Wait until the loop reads events (the model is loaded); its ``stats()``."""
        self._ready.wait(wait_s)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counts, events/s over the last ten seconds, versions that answered, the last error."""
        now = time.time()
        recent = sum(n for t, n in list(self._done) if t >= now - RATE_WINDOW_S)
        span = min(RATE_WINDOW_S, max(now - self.started_at, 1e-9))
        stable = self.predictor.slots.stable if self.predictor is not None else None
        return {"consumer": self.a.consumer, "ready": self._ready.is_set(), **self.counts,
                "events_per_s": round(recent / span, 1), "versions": dict(self.versions),
                "stable": stable.version if stable else None, "last_error": self.last_error,
                "push_online_only": list(getattr(self.pusher, "online_only", [])),
                "alive_s": round(now - self.started_at, 1)}

    def pid(self) -> int:
        """The actor's process id (for operators and the crash tests)."""
        return os.getpid()

    def stop(self, wait_s: float = 10.0) -> dict[str, Any]:
        """Finish the batch in hand and stop reading; the final ``stats()``."""
        self._stop.set()
        self._thread.join(wait_s)
        return self.stats()

    # -- the loop ------------------------------------------------------------------------------

    def _main(self) -> None:
        if not logging.getLogger().handlers:  # the actor's stderr is its log file
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            asyncio.run(self._run())
        except Exception:  # the loop itself failed: the actor says so in stats()
            logger.exception("stream consumer %s stopped", self.a.consumer)
            self.last_error = "the consumer loop stopped; see the actor's log"

    async def _run(self) -> None:
        a = self.a
        client = connect(a.url, a.password)
        bus = Bus(client, Streams.of(a.streams), a.consumer, max_len=a.sink_max_len,
                  dedupe_ttl_s=a.dedupe_ttl_s)
        self._metrics = _Metrics(a.model_id, a.consumer)
        backlog, last_claim, last_sync = True, 0.0, 0.0
        claim_every = max(a.claim_idle_ms / 4000, 0.5)
        try:
            while not self._stop.is_set():
                try:
                    now = time.monotonic()
                    if self.predictor is None or now - last_sync >= a.sync_s:
                        last_sync = now
                        await self._sync()
                        await self._report_lag(bus)
                        if self.predictor is None:
                            await asyncio.sleep(RETRY_S)
                            continue
                        if not self._ready.is_set():
                            await bus.ensure_group(a.start)
                            self._ready.set()
                    if backlog:
                        entries = await bus.read_own_pending(a.read_count)
                        backlog = len(entries) == a.read_count
                    elif now - last_claim >= claim_every:
                        last_claim = now
                        entries = await bus.claim_stale(a.claim_idle_ms, a.read_count)
                        self.counts["claimed"] += len(entries)
                    else:
                        entries = []
                    if not entries:
                        entries = await bus.read_new(a.read_count, a.block_ms)
                    if entries and await self._handle(bus, entries):
                        backlog = True  # some must be tried again: they are still ours, pending
                        await asyncio.sleep(RETRY_S)
                except Exception as exc:  # Redis down, a bug: say so, wait, go on
                    if "NOGROUP" in str(exc):  # the stream or group was deleted: make it again
                        self._ready.clear()
                    self.counts["errors"] += 1
                    self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                    logger.warning("stream consumer %s: %s", a.consumer, self.last_error)
                    backlog = True
                    await asyncio.sleep(RETRY_S)
        finally:
            await client.aclose()

    async def _sync(self) -> None:
        """Build or reconfigure the predictor from the online app's current Serve config."""
        config = await asyncio.to_thread(_app_config, self.a.app_name)
        if config is None:
            self.last_error = (f"the Serve application '{self.a.app_name}' is not deployed; "
                               "events wait until it is (`loom launch recipe=NAME`)")
            return
        args, user_config = config
        if self.predictor is None or self._args != args:
            predictor = _predictor(args)
            self.pusher = await asyncio.to_thread(_pusher, predictor.args, self.a.push_views)
            self.predictor, self._args, self._user_config = predictor, args, None
            self.parser = _parser(predictor.args, self.a)
        if user_config and user_config != self._user_config:
            self.predictor.reconfigure(user_config)
            self._user_config = user_config
            self.predictor.stats.start()

    async def _report_lag(self, bus: Bus) -> None:
        try:
            info = await bus.lag()
        except Exception:  # the group may not exist yet
            return
        self._metrics.lag(info)

    async def _handle(self, bus: Bus, entries: list[tuple[str, dict | None]]) -> bool:
        """Score and deliver one batch; True when some events must be tried again later."""
        events: list[Event] = []
        raw: dict[str, dict] = {}
        dead, drop = [], []
        for entry, fields in entries:
            if fields is None:  # trimmed from the stream before it was answered
                drop.append(entry)
                continue
            raw[entry] = fields
            try:
                events.append(self.parser.parse(entry, fields))
            except BadEvent as exc:
                dead.append((entry, dead_fields(entry, str(exc), fields)))
        if self.pusher is not None and events:
            refused = await asyncio.to_thread(self._push, events)
            for event in [e for e in events if e.entry_id in refused]:
                dead.append((event.entry_id, dead_fields(event.entry_id, refused[event.entry_id],
                                                         raw[event.entry_id])))
            events = [e for e in events if e.entry_id not in refused]
        answers = await self.predictor.predict_each([e.instance for e in events]) if events else []
        results, retried = [], 0
        now_ms = time.time() * 1000
        for event, ans in zip(events, answers):
            if isinstance(ans, Exception):
                if getattr(ans, "status", 500) >= 500:  # nothing answered (store and fallbacks down)
                    retried += 1
                    continue
                dead.append((event.entry_id, dead_fields(event.entry_id, ans.message, raw[event.entry_id])))
                continue
            latency = max(now_ms - event.time_ms, 0.0)
            results.append(_result(event, ans, latency, self.a.consumer))
        written = await bus.deliver([(r["entry_id"], r["event_id"], r) for r in results], dead, drop)
        write_ms = time.time() * 1000 - now_ms  # the metric counts to the result written
        self._count([r for r, w in zip(results, written) if w], len(results) - sum(written),
                    len(dead), retried, write_ms)
        return retried > 0

    def _push(self, events: list[Event]) -> dict[str, str]:
        """Write the values of events that carry a whole push view into the store, before they
        are scored (so the lookup sees them). Returns the events the store refused, with why.

        A batch the store refuses is pushed event by event: the events refused alone are bad
        (dead letters); when every one is refused the store is down, and the error retries the
        whole batch later.
        """
        from framework.errors import BackendError

        refused: dict[str, str] = {}
        for view, spec in self.a.push_views.items():
            keys, fields = spec["keys"], list(spec["fields"])
            carried = [(e, _push_row(e, keys, fields, spec["timestamp_field"])) for e in events]
            carried = [(e, row) for e, row in carried if row is not None]
            if not carried:
                continue
            try:
                self.pusher.push(view, [row for _, row in carried])
                continue
            except BackendError:
                pass
            alone = {}
            for event, row in carried:
                try:
                    self.pusher.push(view, [row])
                except BackendError as exc:
                    alone[event.entry_id] = str(exc)
            if len(alone) == len(carried):
                raise BackendError(f"the store refused every push to {view}: "
                                   f"{next(iter(alone.values()))}")
            refused.update(alone)
        return refused

    def _count(self, written: list[dict[str, Any]], duplicates: int, dead: int, retried: int,
               write_ms: float) -> None:
        degraded = sum(1 for r in written if r["degraded"])
        by_outcome = {"ok": len(written) - degraded, "degraded": degraded, "duplicate": duplicates,
                      "dead_letter": dead, "retried": retried}
        for outcome, n in by_outcome.items():
            self.counts[outcome] += n
        for r in written:
            version = r["model_version"] or "fallback"
            self.versions[version] = self.versions.get(version, 0) + 1
        now = time.time()
        self._done.append((now, len(written) + dead))
        while self._done and self._done[0][0] < now - RATE_WINDOW_S:
            self._done.popleft()
        self._metrics.batch(written, by_outcome, write_ms)


def _result(event: Event, ans: dict[str, Any], latency_ms: float, consumer: str) -> dict[str, Any]:
    return {"event_id": event.event_id, "prediction": ans["prediction"],
            "probability": ans["probability"], "model_version": ans["model_version"],
            "contract": ans.get("contract"), "degraded": ans["degraded"],
            "fallback": ans.get("fallback"), "latency_ms": round(latency_ms, 3),
            "consumer": consumer, "entry_id": event.entry_id}


def _app_config(app_name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The online app's builder args and ingress ``user_config``; None when it is not deployed."""
    from framework.backends.ray_serve import traffic

    config = traffic.app_configs().get(app_name)
    if config is None:
        return None
    return dict(config.get("args") or {}), dict(config["deployments"][0].get("user_config") or {})


def _predictor(args: dict[str, Any]) -> Any:
    import random

    from framework.serving.features import build_lookup
    from framework.serving.predictor import Predictor
    from framework.serving.scoring import predict_matrix
    from framework.serving.settings import parse_args
    from framework.serving.stats import StatsRecorder

    # Events are counted by the ray_loom_stream_* series; drift and the prediction log are the
    # online replicas' (their metrics and files would double up here).
    parsed = parse_args(args).model_copy(update={"drift": None, "prediction_log": None})
    lookup = build_lookup(parsed.features, list(parsed.entity_keys), parsed.feature_names)
    rng = random.Random()

    async def predict(slot: Any, rows: list[list[float]]) -> Any:
        return predict_matrix(slot, rows, rng)

    predictor = Predictor(parsed, lookup, predict, stats=StatsRecorder(
        parsed.app_name or parsed.model_id, enabled=parsed.stats))
    predictor.warm()
    return predictor


def _parser(args: Any, a: ConsumerArgs) -> EventParser:
    types = {n: args.feature_types.get(n, "float64") for n in args.feature_names}
    pushed = {f: t for spec in a.push_views.values() for f, t in spec["fields"].items()}
    return EventParser(dict(args.entity_keys), types, a.id_field, a.time_field, a.max_id_chars,
                       {f: t for f, t in pushed.items() if f not in types})


def _pusher(args: Any, push_views: dict[str, dict[str, Any]]) -> Any:
    """A ``Pusher`` for the recipe's push views, or None (none, or no Feast store to push to)."""
    if not push_views or args.features.get("type") != "feast":
        return None
    from framework.backends.feast.push import Pusher

    return Pusher.from_settings(args.features, push_views)


def _push_row(event: Event, keys: list[str], fields: list[str], timestamp_field: str) -> dict | None:
    """The view's row an event carries: every join key and every field, else None (partial
    values only override the stored ones for this prediction, like request features)."""
    entities, values = event.instance.entities, event.values
    if any(k not in entities for k in keys) or any(values.get(f) is None for f in fields):
        return None
    return {**{k: entities[k] for k in keys}, **{f: values[f] for f in fields},
            timestamp_field: datetime.fromtimestamp(event.time_ms / 1000, tz=timezone.utc)}


class _Metrics:
    """The consumer's Prometheus series (``ray.util.metrics``)."""

    def __init__(self, model_id: str, consumer: str) -> None:
        from ray.util import metrics

        tags = {"model": model_id}
        self._events = metrics.Counter("loom_stream_events", description="Stream events answered, "
                                       "by outcome.", tag_keys=("model", "consumer", "outcome"))
        self._events.set_default_tags({**tags, "consumer": consumer})
        self._latency = metrics.Histogram(
            "loom_stream_event_latency_ms", description="Event time to result written, in ms.",
            boundaries=LATENCY_BOUNDARIES_MS + [10_000, 60_000], tag_keys=("model",))
        self._lag = metrics.Gauge("loom_stream_lag", description="Source events not yet read by "
                                  "the consumer group.", tag_keys=("model",))
        self._pending = metrics.Gauge("loom_stream_pending", description="Events read and not yet "
                                      "answered.", tag_keys=("model",))
        for m in (self._latency, self._lag, self._pending):
            m.set_default_tags(dict(tags))

    def batch(self, written: list[dict[str, Any]], by_outcome: dict[str, int], write_ms: float) -> None:
        for outcome, n in by_outcome.items():
            if n and outcome != "retried":
                self._events.inc(n, tags={"outcome": outcome})
        for r in written:  # the result's own latency_ms stops at the answer, before the write
            self._latency.observe(r["latency_ms"] + write_ms)

    def lag(self, info: dict[str, Any]) -> None:
        if info.get("lag") is not None:
            self._lag.set(info["lag"])
        self._pending.set(info.get("pending", 0))
