"""The Ray Serve application: one FastAPI ingress deployment that does the whole request.

``build_app(args)`` is the application builder named in Serve configs
(``import_path: framework.serving.app:build_app``); ``args`` are ``settings.AppArgs`` as JSON.
This module does not use ``from __future__ import annotations``: Serve ships the ingress class by
value, and FastAPI must see real ``Request`` annotations on the route methods.
"""

import os
import random
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from ray import serve

from framework.serving.auth import KeyRing
from framework.serving.body import parse_predict, read_json, request_id_of
from framework.serving.features import build_lookup
from framework.serving.metrics import make_metrics
from framework.serving.predictor import Predictor
from framework.serving.problems import ApiError, install_handlers
from framework.serving.schemas import BatchResponse, PredictRequest, PredictResponse
from framework.serving.scoring import batch_predict
from framework.serving.settings import AppArgs, deployment_options, parse_args
from framework.serving.stats import StatsRecorder

api = FastAPI(title="Loom prediction API", version="1", docs_url=None, redoc_url=None,
              openapi_url=None)
install_handlers(api, request_id_of)
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PredictRequest.model_json_schema()}}}}


def _body(model_id: str, answers: list[dict], single: bool, latency: float, rid: str) -> dict:
    if single:
        return {"model_id": model_id, **answers[0], "latency_ms": round(latency, 3), "request_id": rid}
    return {"model_id": model_id, "predictions": answers, "latency_ms": round(latency, 3),
            "request_id": rid}


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (tests that construct the class directly)
        return "local"


@serve.ingress(api)
class LoomPredictor:
    """One replica: auth, validation, online features, predict, cache, fallback, metrics, stats."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args: AppArgs = parse_args(args)
        serving = self.args.serving
        self.keys = KeyRing(self.args.api_keys, enabled=serving.auth.enabled)
        lookup = build_lookup(self.args.features, list(self.args.entity_keys), self.args.feature_names)
        self.stats = StatsRecorder(self.args.model_id, enabled=self.args.stats)
        self._rng = random.Random()
        predict_fn = self._predict_batched if serving.batching.enabled else self._predict_direct
        self.predictor = Predictor(self.args, lookup, predict_fn,
                                   make_metrics(self.args.model_id, True), self.stats)
        if serving.batching.enabled:
            self._batched.set_max_batch_size(serving.batching.max_batch_size)
            self._batched.set_batch_wait_timeout_s(serving.batching.batch_wait_timeout_ms / 1000)
        self._inflight = 0
        self.replica = {"pid": os.getpid(), "id": _replica_id(), "started_at": time.time()}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this in place when the deployment's ``user_config`` changes."""
        self.predictor.reconfigure(user_config)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def _batched(self, items: list[tuple[Any, list[list[float]]]]) -> list[Any]:
        return batch_predict(items, self._rng)

    async def _predict_batched(self, slot: Any, rows: list[list[float]]) -> Any:
        result = await self._batched((slot, rows))
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

    @api.post("/v1/predictions", response_model=PredictResponse | BatchResponse, openapi_extra=_BODY_DOC)
    async def predictions(self, request: Request) -> JSONResponse:
        """Predict for ``model_id`` given in the body."""
        return await self._handle(request, None)

    @api.post("/v1/models/{model_id}/predictions", response_model=PredictResponse | BatchResponse,
              openapi_extra=_BODY_DOC)
    async def model_predictions(self, model_id: str, request: Request) -> JSONResponse:
        """Predict for the model named in the path."""
        return await self._handle(request, model_id)

    @api.get("/v1/models")
    async def models(self, request: Request) -> dict[str, Any]:
        """This application's model: versions, traffic weights, circuits, replica identity."""
        self.keys.check(request.headers, self.args.model_id)
        return {"models": [{**self.predictor.describe(), "replica": self.replica}]}

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

    async def _handle(self, request: Request, path_model: str | None) -> JSONResponse:
        started = time.perf_counter()
        rid = request_id_of(request)
        self.stats.start()
        if self._inflight >= self.args.serving.max_ongoing_requests:
            self.predictor.metrics.request("none", "overloaded", 0.0)
            raise ApiError(503, "The model is overloaded; retry shortly.", headers={"Retry-After": "1"})
        self._inflight += 1
        version, outcome = "none", "client_error"
        try:
            holder = self.keys.authenticate(request.headers)
            req = parse_predict(await read_json(request, self.args.serving.max_body_bytes),
                                self.args.serving.max_instances)
            model_id = self._model_of(req, path_model)
            self.keys.authorize(holder, model_id)
            if model_id != self.args.model_id:
                raise ApiError(404, f"Unknown model '{model_id}'. This endpoint serves "
                                    f"'{self.args.model_id}'; GET /v1/models lists it.")
            answers = await self.predictor.predict(req.as_instances())
            version = answers[0]["model_version"] or "none"
            outcome = "degraded" if any(a["degraded"] for a in answers) else "ok"
        except ApiError as exc:
            outcome = "client_error" if exc.status < 500 else "error"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            self._inflight -= 1
            latency = (time.perf_counter() - started) * 1000
            self.predictor.metrics.request(version, outcome, latency)
        body = _body(self.args.model_id, answers, req.instances is None, latency, rid)
        return JSONResponse(body)

    def _model_of(self, req: PredictRequest, path_model: str | None) -> str:
        if path_model is not None:
            if req.model_id is not None and req.model_id != path_model:
                raise ApiError(422, f"model_id '{req.model_id}' in the body differs from "
                                    f"'{path_model}' in the path.")
            return path_model
        if req.model_id is None:
            raise ApiError(422, "model_id is required on /v1/predictions.",
                           [{"field": "model_id", "message": "required"}])
        return req.model_id


def build_app(args: dict[str, Any]) -> Any:
    """Serve application builder: the ingress deployment bound to ``args``, options from the recipe."""
    parsed = parse_args(args)
    return make_deployment(parsed).bind(parsed.model_dump(mode="json"))


def make_deployment(parsed: AppArgs) -> Any:
    """The ingress class as a Serve deployment with the recipe's options."""
    return serve.deployment(LoomPredictor).options(**deployment_options(parsed))
