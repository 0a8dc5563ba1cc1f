"""The Ray Serve application of one model: one FastAPI ingress deployment that does the whole request.

``build_app(args)`` is the application builder named in Serve configs
(``import_path: framework.serving.app:build_app``); ``args`` are ``settings.AppArgs`` as JSON.
The app is mounted at ``<serving.route_prefix>/v1/models/<model_id>`` (Serve strips the prefix), so
``POST /v1/models/<model_id>/predictions`` reaches this replica with no other hop; the gateway
(``framework.serving.gateway``) answers ``POST /v1/predictions`` and ``GET /v1/models`` for every
model and calls ``forward`` and ``describe_for`` here.
This module does not use ``from __future__ import annotations``: Serve ships the ingress class by
value, and FastAPI must see real ``Request`` annotations on the route methods.
"""

import asyncio
import functools
import os
import random
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from ray import serve

from framework.serving.auth import KeyRing
from framework.serving.body import decode_json, parse_predict, read_json, request_id_of
from framework.serving.features import build_lookup
from framework.serving.listen import bind_to_node_ip
from framework.serving.metrics import make_metrics
from framework.serving.predictor import Predictor
from framework.serving.problems import ApiError, error_body, install_handlers
from framework.serving.schemas import BatchResponse, PredictRequest, PredictResponse
from framework.serving.scoring import batch_predict, batch_wait_s
from framework.serving.settings import AppArgs, deployment_options, parse_args
from framework.serving.stats import StatsRecorder

api = FastAPI(title="Loom prediction API", version="1", docs_url=None, redoc_url=None,
              openapi_url=None)
install_handlers(api, request_id_of)
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictRequest.model_json_schema()}}}}


def _body(model_id: str, answers: list[dict], single: bool, latency: float, rid: str,
          pin: str | None = None) -> dict:
    head = {"model_id": model_id} if pin is None else {"model_id": model_id, "pinned": pin}
    if single:
        return {**head, **answers[0], "latency_ms": round(latency, 3), "request_id": rid}
    return {**head, "predictions": answers, "latency_ms": round(latency, 3), "request_id": rid}


async def _decoded(raw: bytes, max_bytes: int) -> Any:
    return decode_json(raw, max_bytes)


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (tests that construct the class directly)
        return "local"


@serve.ingress(api)
class LoomPredictor:
    """One replica: auth, validation, online features, predict, cache, fallback, metrics, stats."""

    def __init__(self, args: dict[str, Any]) -> None:
        bind_to_node_ip()  # before Serve starts this replica's gRPC server
        self.args: AppArgs = parse_args(args)
        serving = self.args.serving
        self.keys = KeyRing(self.args.api_keys, enabled=serving.auth.enabled)
        lookup = build_lookup(self.args.features, list(self.args.entity_keys), self.args.feature_names)
        self.stats = StatsRecorder(self.args.app_name or self.args.model_id, enabled=self.args.stats)
        self._rng = random.Random()
        predict_fn = self._predict_batched if serving.batching.enabled else self._predict_direct
        replica_id = _replica_id()
        self.predictor = Predictor(self.args, lookup, predict_fn,
                                   make_metrics(self.args.model_id, self.args.metrics), self.stats,
                                   replica=replica_id)
        self.predictor.warm()  # before Serve counts this replica ready
        if serving.batching.enabled:
            self._batched.set_max_batch_size(serving.batching.max_batch_size)
            self._batched.set_batch_wait_timeout_s(serving.batching.batch_wait_timeout_ms / 1000)
        self._inflight = 0
        self._queued = 0  # requests waiting in (or being answered by) the batch queue
        self.replica = {"pid": os.getpid(), "id": replica_id, "started_at": time.time()}

    def __del__(self) -> None:
        # Serve calls this when it stops the replica: the last drift counts and log records out.
        predictor = getattr(self, "predictor", None)  # None when __init__ failed early
        if predictor is not None:
            predictor.watch.close()
            predictor.metrics.close()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this in place when the deployment's ``user_config`` changes."""
        self.predictor.reconfigure(user_config)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, items: list[tuple[Any, list[list[float]]]]) -> list[Any]:
        return batch_predict(items, self._rng)

    async def _predict_batched(self, slot: Any, rows: list[list[float]]) -> Any:
        batching = self.args.serving.batching
        if batching.adaptive:
            wait_s = batch_wait_s(self._inflight, self._queued, batching.batch_wait_timeout_ms / 1000)
            if wait_s is None:
                return await self._predict_direct(slot, rows)
            self._batched.set_batch_wait_timeout_s(wait_s)
        self._queued += 1
        try:
            result = await self._batched((slot, rows))
        finally:
            self._queued -= 1
        if isinstance(result, Exception):
            raise result
        return result

    async def _predict_direct(self, slot: Any, rows: list[list[float]]) -> Any:
        (result,) = batch_predict([(slot, rows)], self._rng)
        if isinstance(result, Exception):
            raise result
        return result

    # -- routes ------------------------------------------------------------------------------------

    @api.get("/healthz", include_in_schema=False)
    async def healthz(self) -> dict[str, Any]:
        """Liveness, without a key."""
        stable = self.predictor.slots.stable
        return {"status": "ok", "model_id": self.args.model_id,
                "model_version": stable.version if stable else None}

    @api.post("/predictions", response_model=PredictResponse | BatchResponse,
              openapi_extra=_BODY_DOC)
    async def predictions(self, request: Request) -> JSONResponse:
        """Predict with this model (``POST /v1/models/{model_id}/predictions``)."""
        serving = self.args.serving
        read = functools.partial(read_json, request, serving.max_body_bytes,
                                 serving.timeouts.body_read_s)
        body = await self._handle(request.headers, read, request_id_of(request))
        return JSONResponse(body)

    @api.get("/")
    async def model(self, request: Request) -> dict[str, Any]:
        """This model: versions, traffic weights, circuits, replica identity."""
        self.keys.check(request.headers, self.args.model_id)
        return self._describe()

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self, request: Request) -> dict[str, Any]:
        """The OpenAPI document (needs a key, like every route but /healthz)."""
        self.keys.check(request.headers, None)
        return api.openapi()

    @api.get("/docs", include_in_schema=False)
    async def docs(self, request: Request) -> Any:
        """Swagger UI (needs a key; the page fetches /openapi.json, which needs one too)."""
        self.keys.check(request.headers, None)
        return get_swagger_ui_html(openapi_url="openapi.json", title="Loom prediction API")

    # -- calls from the gateway (DeploymentHandle, not HTTP) -----------------------------------

    async def forward(self, raw: bytes, headers: dict[str, str],
                      rid: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``POST /v1/predictions`` for this model, as the gateway received it: (status, body, headers).

        The same checks as the per-model route run here (auth, validation, limits), so the gateway
        never needs the model's keys.
        """
        max_bytes = self.args.serving.max_body_bytes
        try:
            # Helpers this class uses are defined above it: ``serve.ingress`` copies the class
            # by value when it is decorated, with the module globals that exist then.
            body = await self._handle(headers, functools.partial(_decoded, raw, max_bytes), rid)
        except ApiError as exc:
            return exc.status, error_body(exc.status, exc.message, rid, exc.details), exc.headers
        except Exception:  # logged here; the client sees the one error shape, never internals
            import logging

            logging.getLogger("loom.serving").exception("unexpected error answering a request")
            return 500, error_body(500, "The service failed to answer this request.", rid), {}
        return 200, body, {}

    async def describe_for(self, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
        """This model's description if the caller's key may see it: (200, model) or (401/403, None)."""
        try:
            self.keys.check(headers, self.args.model_id)
        except ApiError as exc:
            return exc.status, None
        return 200, self._describe()

    def _describe(self) -> dict[str, Any]:
        return {**self.predictor.describe(), "replica": self.replica}

    async def _handle(self, headers: Any, read: Any, rid: str) -> dict[str, Any]:
        started = time.perf_counter()
        self.stats.start()
        if self._inflight >= self.args.serving.max_ongoing_requests:
            self.predictor.metrics.request("none", "overloaded", 0.0)
            raise ApiError(503, "The model is overloaded; retry shortly.", headers={"Retry-After": "1"})
        self._inflight += 1
        version, outcome = "none", "client_error"
        limit_s = self.args.serving.timeouts.request_s
        try:
            holder = self.keys.authenticate(headers)
            async with asyncio.timeout(limit_s):  # body read, lookup, model and fallbacks together
                req = parse_predict(await read(), self.args.serving.max_instances,
                                    self.args.entity_keys)
                pin = self._pin_of(req)
                self.keys.authorize(holder, self.args.model_id)
                answers = await self.predictor.predict(req.as_instances(), pin, rid)
            version = answers[0]["model_version"] or "none"
            outcome = "degraded" if any(a["degraded"] for a in answers) else "ok"
        except ApiError as exc:
            outcome = "client_error" if exc.status < 500 else "error"
            raise
        except TimeoutError:
            outcome = "error"
            raise ApiError(503, f"The model did not answer within {limit_s:g} s "
                                "(serving.timeouts.request_s); retry shortly.",
                           headers={"Retry-After": "1"}) from None
        except Exception:
            outcome = "error"
            raise
        finally:
            self._inflight -= 1
            latency = (time.perf_counter() - started) * 1000
            self.predictor.metrics.request(version, outcome, latency)
        return _body(self.args.model_id, answers, req.instances is None, latency, rid, pin)

    def _pin_of(self, req: PredictRequest) -> str | None:
        """The version or alias after '@' in the body's model_id (which must name this model)."""
        if req.model_id is None:
            return None
        model_id, at, pin = req.model_id.partition("@")
        if model_id != self.args.model_id:
            raise ApiError(422, f"model_id '{model_id}' in the body differs from "
                                f"'{self.args.model_id}' in the path.")
        if at and not pin:
            raise ApiError(422, "model_id: name a version or alias after '@' (churn@2, "
                                "churn@champion).")
        return pin or None


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder: the ingress deployment bound to ``args``, options from the recipe."""
    parsed = parse_args(args)
    return make_deployment(parsed).bind(parsed.model_dump(mode="json"))


def make_deployment(parsed: AppArgs) -> Any:
    """The ingress class as a Serve deployment with the recipe's options."""
    return serve.deployment(LoomPredictor).options(**deployment_options(parsed))
