"""The whole request in one place: cache, online features, version slots, predict, fallback chain.

``Predictor`` knows nothing of HTTP or Ray Serve: the Serve ingress wraps it, and the benchmark
runs it in-process as the floor. ``predict_fn`` is the (possibly batched) model call.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from framework.serving.cache import AnswerCache, cache_key
from framework.serving.circuit import STATE_VALUE, CircuitBreaker
from framework.serving.fallback import compile_rules, first_match
from framework.serving.encoding import VersionCodec, check_features
from framework.serving.each import EventScoring
from framework.serving.entities import EntityChecker
from framework.serving.features import (EntityKeyError, FeatureLookup, merge_row, missing_features,
                                        require_complete)
from framework.serving.metrics import NullMetrics
from framework.serving.problems import ApiError
from framework.serving.schemas import Instance
from framework.serving.score_bins import count_bins, shared_edges
from framework.serving.settings import AppArgs
from framework.serving.slots import ModelFault, Slot, SlotTable, fetch_version, load_booster
from framework.serving.stats import StatsRecorder
from framework.serving.watch import Watch

PredictFn = Callable[[Slot, list[list[float]]], Awaitable[Any]]
FEATURE_STORE = "feature_store"
#: Threads per replica for blocking feature lookups (a stalled store blocks at most these).
LOOKUP_THREADS = 4
#: Longest a replica waits at start for its first feature lookup (``Predictor.warm``).
WARM_S = 10.0

#: The role of a slot a request pinned (``model_id@version``): no split, no shadow, no samples.
PINNED = "pinned"


class Predictor(EventScoring):
    """Answers instances for one model; holds slots, cache, breakers, fallbacks and a feature lookup."""

    def __init__(self, args: AppArgs, lookup: FeatureLookup, predict_fn: PredictFn,
                 metrics: Any = None, stats: StatsRecorder | None = None, seed: int | None = None,
                 replica: str = ""):
        s = args.serving
        self.args = args
        self.names = list(args.feature_names)
        self.lookup = lookup
        self.predict_fn = predict_fn
        self.metrics = metrics or NullMetrics()
        self.stats = stats or StatsRecorder(args.model_id, enabled=False)
        self.rng = random.Random(seed)
        self.types = dict(args.feature_types)
        self.cache = (AnswerCache(s.cache.max_entries, s.cache.ttl_s, max_bytes=s.cache.max_bytes)
                      if s.cache.enabled else None)
        self.slots = SlotTable(defaults=(self.names, args.task, s.labels), model_store=args.model_store)
        # Fallback models have no contract: they read the app's features, task and labels.
        self._app_codec = VersionCodec(None, self.names, args.task, s.labels)
        self.entities = EntityChecker(dict(args.entity_keys), s.max_entity_key_chars)
        self._lookup_s = s.timeouts.feature_lookup_ms / 1000
        self._model_s = s.timeouts.model_ms / 1000
        self._lookup_pool: ThreadPoolExecutor | None = None
        self.breakers: dict[str, CircuitBreaker] = {}
        self._reported: dict[str, str] = {}
        self.chain = [level.type for level in s.fallback]
        rules = [lvl for lvl in s.fallback if lvl.type == "rules"]
        self.rules = compile_rules(rules[0].rules) if rules else []
        default = [lvl for lvl in s.fallback if lvl.type == "default"]
        self.default = default[0] if default else None
        self.fallback_models = [
            (m.version, load_booster(fetch_version(args.model_store, m.model_uri)[0]
                                     if args.model_store and m.model_uri else m.model_path))
            for m in args.fallback_models]
        self.watch = Watch(args, self.metrics, replica or f"pid{os.getpid()}", lookup)  # drift, log
        self._score_edges = shared_edges(args.task, None)  # regression: set with the stable slot

    # -- configuration ---------------------------------------------------------------------------

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Swap in new slots atomically; answers of versions no longer live leave the cache."""
        table = copy.copy(self.slots)
        table._boosters = dict(self.slots._boosters)
        live = table.apply(user_config)
        self.slots = table
        self._score_edges = shared_edges(self.args.task, table.stable.profile_path
                                         if table.stable is not None else None)
        self.watch.versions(table)
        if self.cache is not None:
            self.cache.keep_versions(live)

    def warm(self) -> bool:
        """One lookup of a key no one has, so the first request does not pay the store's cold start
        (Feast's first read: ~150 ms idle, past ``feature_lookup_ms`` when busy); False: it failed."""
        if getattr(self.lookup, "blocking", True):
            row = {k: "__loom_warm__" if t == "string" else 0 for k, t in self.args.entity_keys.items()}
            try:
                self._pool().submit(self.lookup.get, [row]).result(timeout=WARM_S)
            except Exception:  # noqa: BLE001 - a store down at start is the breaker's business later
                return False
        return True

    def breaker(self, dependency: str) -> CircuitBreaker:
        """The circuit breaker of one dependency, made on first use."""
        if dependency not in self.breakers:
            cb = self.args.serving.circuit_breaker
            self.breakers[dependency] = CircuitBreaker(cb.failure_threshold, cb.reset_timeout_s)
        return self.breakers[dependency]

    def _report(self, dependency: str) -> None:
        # Set the gauge only when the state changes: this runs on every request.
        state = self.breakers[dependency].state
        if self._reported.get(dependency) != state:
            self._reported[dependency] = state
            self.metrics.circuit(dependency, STATE_VALUE[state])

    # -- the request -------------------------------------------------------------------------------

    async def predict(self, instances: list[Instance], pin: str | None = None,
                      request_id: str = "") -> list[dict[str, Any]]:
        """Answers for ``instances`` (one per instance, in order); ``ApiError`` for bad input.

        ``pin``: a version or alias (``model_id@2``, ``model_id@champion``) that answers instead of
        the traffic split, for replay and debugging; its answers are not rollout samples.

        Raises:
            ApiError: 422 for unknown or missing features, 404 for a pin that is not loaded, 503
                when no level of the chain answers.
        """
        started = time.perf_counter()
        many = len(instances) > 1
        for i, inst in enumerate(instances):
            check_features(inst.features, self.names, self.types)
            self.entities.check(inst.entities, f"instances[{i}]." if many else "")
        table = self.slots
        if table.stable is None:
            raise ApiError(503, "No model version is loaded yet; retry shortly.",
                           headers={"Retry-After": "1"})
        if pin is None:
            role, slot = table.pick(self.rng)
        else:
            role, pinned = PINNED, table.pinned(pin)
            if pinned is None:
                raise ApiError(404, f"Version '{pin[:64]}' of '{self.args.model_id}' is not loaded; "
                                    f"loaded: {table.loaded()}. Pin a version or stable, "
                                    "champion, candidate, previous.")
            slot = pinned
        answers: list[dict[str, Any] | None] = [None] * len(instances)
        todo = self._from_cache(instances, slot.version, answers)
        if todo:
            rows, complete = await self._rows([instances[i] for i in todo])
            await self._answer(todo, rows, complete, role, slot, table, instances, answers, started)
            self.watch.logged(request_id, [instances[i] for i in todo], rows,
                              [answers[i] for i in todo], time.time())  # type: ignore[misc]
        return answers  # type: ignore[return-value]

    def _from_cache(self, instances: list[Instance], version: str, answers: list) -> list[int]:
        if self.cache is None:
            return list(range(len(instances)))
        todo = []
        for i, inst in enumerate(instances):
            hit = self.cache.get(cache_key(version, inst.entities, inst.features))
            if hit is None:
                todo.append(i)
            else:
                answers[i] = {**hit, "cached": True}
                self.metrics.cache_hit()
        return todo

    async def _rows(self, instances: list[Instance]) -> tuple[list[dict[str, Any]], bool]:
        """Feature rows for instances; ``complete`` is False when the feature store failed."""
        looked, complete = await self._looked(instances)
        rows = [merge_row(looked[i], inst.features, self.names) for i, inst in enumerate(instances)]
        if complete and self.args.serving.missing_features == "reject":
            require_complete(rows, instances, looked, self.names)
        return rows, complete

    async def _looked(self, instances: list[Instance]) -> tuple[list[dict[str, Any]], bool]:
        """The store's row per instance ({} without entities), and whether the store answered."""
        wanted = [i for i, inst in enumerate(instances) if inst.entities]
        looked: list[dict[str, Any]] = [{} for _ in instances]
        complete = True
        if wanted:
            found = await self._lookup([self._typed(instances[i].entities) for i in wanted])
            if found is None:
                complete = False
            else:
                for i, row in zip(wanted, found):
                    looked[i] = row
        return looked, complete

    def _typed(self, entities: dict[str, Any]) -> dict[str, Any]:
        return {k: str(v) if self.args.entity_keys[k] == "string" else v for k, v in entities.items()}

    async def _lookup(self, entity_rows: list[dict]) -> list[dict[str, Any]] | None:
        """The store's rows; None when it failed or took longer than ``feature_lookup_ms`` (the
        breaker counts both), ``ApiError`` 422 for keys it refuses (the breaker counts nothing)."""
        cb = self.breaker(FEATURE_STORE)
        if not cb.allow():
            return None
        t0 = time.perf_counter()
        try:
            if getattr(self.lookup, "blocking", True):
                call = asyncio.get_running_loop().run_in_executor(
                    self._pool(), self.lookup.get, entity_rows)
                found = await asyncio.wait_for(call, self._lookup_s)
            else:  # in memory: nothing to wait for
                found = self.lookup.get(entity_rows)
        except EntityKeyError as exc:  # the client's keys: not the store's failure
            cb.release()
            raise ApiError(422, f"The online store cannot look these entity keys up: "
                                f"{str(exc)[:200]}") from exc
        except Exception:  # a feature-store failure or timeout degrades to the fallback chain
            cb.failure()
            self._report(FEATURE_STORE)
            return None
        cb.success()
        self._report(FEATURE_STORE)
        self.metrics.lookup((time.perf_counter() - t0) * 1000)
        return found

    def _pool(self) -> ThreadPoolExecutor:
        # Blocking lookups (Feast) run here, never on the event loop: a stalled store then costs
        # these threads and a timeout per request, not the whole replica.
        if self._lookup_pool is None:
            self._lookup_pool = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="loom-lookup")
        return self._lookup_pool

    async def _answer(self, todo, rows, complete, role, slot, table, instances, answers, started):
        if complete:  # _rows refused rows with missing features, or the model takes them
            full, partial = list(range(len(rows))), []
        else:
            full = [j for j, row in enumerate(rows) if not missing_features(row, self.names)]
            partial = [j for j in range(len(rows)) if j not in set(full)]
        if full:
            frows = [rows[j] for j in full]
            record = table.record_samples and role != PINNED
            primary = await self._primary(role, slot, frows, started, record)
            scores = None
            if primary is not None:
                result, scores = primary
            else:
                result = await self._fallback(role, table, frows)
            for j, ans in zip(full, result):
                missing = missing_features(rows[j], self.names) if complete else []
                if missing:  # missing_features: model
                    ans = {**ans, "missing_features": missing}
                answers[todo[j]] = ans
                if not ans["degraded"] and self.cache is not None:
                    inst = instances[todo[j]]
                    self.cache.put(cache_key(slot.version, inst.entities, inst.features), ans)
            if role == "stable" and table.wants_shadow(role, self.rng):
                asyncio.get_running_loop().create_task(self._shadow(table.candidate, frows, scores))
        for j in partial:
            answers[todo[j]] = self._rule_or_default(rows[j])

    async def _primary(self, role: str, slot: Slot, rows, started,
                       record: bool) -> tuple[list[dict], list[float]] | None:
        """The slot's answers and their scores; None when the model failed.

        ``record``: keep a sample per answer for the rollout controller (``record_samples`` in
        ``user_config``, set only while a rollout runs: nobody reads them otherwise).
        """
        called = await self._call_model(slot, rows)
        latency = (time.perf_counter() - started) * 1000
        if called is None:
            self._count(slot.version, role, False, latency)
            if record:
                self.stats.record(slot.version, role, False, latency, instances=len(rows))
            return None
        raw, vectors = called
        out = [self._model_answer(r, slot) for r in raw]
        scores = [ans.pop("_score") for ans in out]
        self.watch.answered(slot.version, vectors, scores)
        self._count(slot.version, role, True, latency, scores)
        if record:  # one sample per request: a batch is one request of len(rows) instances
            self.stats.record(slot.version, role, True, latency, scores, instances=len(rows))
        return out, scores

    def _count(self, version: str, role: str, ok: bool, latency: float, scores: Any = ()) -> None:
        """One request of a version slot in ``ray_loom_slot_*`` (a pinned one is nobody's share)."""
        if role != PINNED:
            self.metrics.slot_answer(version, role, ok, latency, count_bins(self._score_edges, scores))

    def _vectors(self, slot: Slot, rows: list[dict[str, Any]]) -> list[list[float]]:
        """The rows as ``slot``'s version reads them (its feature order and category codes)."""
        codec = slot.codec or self._app_codec
        return [codec.vector(row, self.metrics.unseen_category) for row in rows]

    async def _call_model(self, slot: Slot, rows: list[dict[str, Any]]) -> tuple[Any, list] | None:
        """The model's raw outputs and the vectors it read; None when it failed or timed out."""
        dependency = f"model:{slot.version}"
        cb = self.breaker(dependency)
        if not cb.allow():
            return None
        vectors = self._vectors(slot, rows)
        try:
            async with asyncio.timeout(self._model_s):  # the batch queue and the call itself
                if slot.extra_latency_ms:
                    await asyncio.sleep(slot.extra_latency_ms / 1000)
                raw = await self.predict_fn(slot, vectors)
        except (ModelFault, TimeoutError):
            cb.failure()
            self._report(dependency)
            return None
        cb.success()
        self._report(dependency)
        return raw, vectors

    def _model_answer(self, raw: Any, slot: Slot, level: str | None = None) -> dict[str, Any]:
        """An answer in ``slot``'s version's own contract (its task, labels and contract major)."""
        codec = slot.codec or self._app_codec
        ans = codec.labeler.answer(raw)
        out = {"prediction": ans["prediction"], "probability": ans["probability"],
               "model_version": slot.version, "contract": codec.major, "degraded": level is not None,
               "fallback": level, "cached": False, "_score": ans["score"]}
        if "probabilities" in ans:  # multiclass: every class's, by class index
            out["probabilities"] = ans["probabilities"]
        return out

    async def _shadow(self, candidate: Slot | None, rows: list[dict[str, Any]],
                      stable_scores: list[float] | None) -> None:
        """The candidate answers the same rows off the request path; each sample keeps the
        stable score it is compared with (None when the stable model did not answer)."""
        if candidate is None:
            return
        t0 = time.perf_counter()
        called = await self._call_model(candidate, rows)
        latency = (time.perf_counter() - t0) * 1000
        if called is None:
            self._count(candidate.version, "shadow", False, latency)
            self.stats.record(candidate.version, "shadow", False, latency, instances=len(rows))
            return
        labeler = (candidate.codec or self._app_codec).labeler
        scores = [labeler.answer(r)["score"] for r in called[0]]
        self.watch.answered(candidate.version, called[1], scores)  # the candidate's drift, unseen
        self._count(candidate.version, "shadow", True, latency, scores)
        self.stats.record(candidate.version, "shadow", True, latency, scores, stable_scores,
                          instances=len(rows))

    async def _fallback(self, role, table, rows) -> list[dict[str, Any]]:
        for level in self.chain:
            if level == "previous_version":
                other = table.stable if role == "candidate" else table.previous
                out = await self._model_level(other, rows, level)
            elif level == "model":
                out = await self._fallback_models(rows)
            else:
                out = [self._level_answer(level, row) for row in rows]
                out = None if any(a is None for a in out) else out
            if out is not None:
                for _ in out:
                    self.metrics.fallback(level)
                return out
        raise ApiError(503, "The model is unavailable and no fallback answered; retry shortly.",
                       headers={"Retry-After": str(int(self.args.serving.circuit_breaker.reset_timeout_s))})

    async def _model_level(self, slot: Slot | None, rows, level: str) -> list[dict] | None:
        if slot is None:
            return None
        called = await self._call_model(slot, rows)
        if called is None:
            return None
        return [_strip(self._model_answer(r, slot, level)) for r in called[0]]

    async def _fallback_models(self, rows) -> list[dict] | None:
        for version, booster in self.fallback_models:
            slot = Slot(version, "", "", booster)
            out = await self._model_level(slot, rows, "model")
            if out is not None:
                return out
        return None

    def _level_answer(self, level: str, row: dict[str, Any]) -> dict[str, Any] | None:
        if level == "rules":
            rule = first_match(self.rules, row)
            if rule is None:
                return None
            return _fixed(rule.prediction, rule.probability, "rules")
        if level == "default" and self.default is not None:
            return _fixed(self.default.prediction, self.default.probability, "default")
        return None

    def _rule_or_default(self, row: dict[str, Any]) -> dict[str, Any]:
        for level in ("rules", "default"):
            if level in self.chain:
                ans = self._level_answer(level, row)
                if ans is not None:
                    self.metrics.fallback(level)
                    return ans
        raise ApiError(503, "The feature store is unavailable and no fallback answered; retry "
                            "shortly, or send every feature in 'features'.", headers={"Retry-After": "1"})

    def describe(self) -> dict[str, Any]:
        """Model, slots, weights and circuits for ``GET /v1/models``."""
        return {"model_id": self.args.model_id, "task": self.args.task, "features": self.names,
                "entity_keys": list(self.args.entity_keys), **self.slots.describe(),
                "circuits": {d: cb.snapshot() for d, cb in sorted(self.breakers.items())}}


def _strip(ans: dict[str, Any]) -> dict[str, Any]:
    ans.pop("_score", None)
    return ans


def _fixed(prediction: Any, probability: float | None, level: str) -> dict[str, Any]:
    return {"prediction": prediction, "probability": probability, "model_version": None,
            "contract": None, "degraded": True, "fallback": level, "cached": False}
