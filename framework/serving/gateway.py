"""The gateway application: ``POST /v1/predictions`` and ``GET /v1/models`` across every deployed model.

Mounted at ``<serving.route_prefix>/v1`` (one per cluster and prefix). Serve routes by the longest
prefix, so ``/v1/models/<id>/...`` of a deployed model goes straight to that model's app and never
passes here; what does arrive is the body-addressed route, the listing, and paths of models that do
not exist (answered 404). A prediction costs one DeploymentHandle hop to the model's app, which
does every check itself (auth, validation, limits): the gateway holds no keys.

Model apps are found through Serve's own declarative config (apps built by Loom's model builder
and mounted under this gateway's ``<prefix>/v1/models/``), looked up again at most every
``REFRESH_S``, so deploying or destroying a model needs no change here. This module does not use ``from __future__ import annotations`` (see ``app.py``).
"""

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError

from framework.serving.body import BODY_READ_S, decode_json, read_body, request_id_of
from framework.serving.listen import bind_to_node_ip
from framework.serving.problems import ApiError, install_handlers
from framework.serving.settings import PROXY_GRACE_S, models_under

#: The model apps' request deadline when the gateway's args name none (``serving.timeouts.request_s``).
REQUEST_S = 30.0

REFRESH_S = 2.0
#: Times a prediction is sent again when the model replica holding it died (its own deadline bounds
#: them all): Serve's router routes the retry to a live replica.
RETRIES = 2
#: Unknown ids look again no more often than this: a burst of them must not load the controller.
MIN_AGE_S = 0.25
#: Request headers a model app needs: the key, the body's type, the request id.
FORWARDED = ("authorization", "x-api-key", "content-type", "x-request-id")

api = FastAPI(title="Loom prediction API gateway", version="1", docs_url=None, redoc_url=None,
              openapi_url=None)
install_handlers(api, request_id_of)


def _unknown(model_id: str) -> ApiError:
    return ApiError(404, f"Unknown model '{model_id[:128]}'. GET /v1/models lists the models "
                         "your key may see.")


# Everything the class uses is defined above it: ``serve.ingress`` copies the class by value when
# it is decorated, with the module globals that exist then.
@serve.ingress(api)
class LoomGateway:
    """Forwards body-addressed predictions to the model's app and lists the models a key may see."""

    def __init__(self, args: dict[str, Any]) -> None:
        bind_to_node_ip()  # before Serve starts this replica's gRPC server
        self.max_body_bytes = int(args.get("max_body_bytes", 1_048_576))
        self.body_read_s = float(args.get("body_read_s", BODY_READ_S))
        # The model app answers within its serving.timeouts.request_s; waiting a little longer
        # here still answers in JSON before Serve's proxy cuts the request (PROXY_GRACE_S).
        self.forward_s = float(args.get("request_s", REQUEST_S)) + PROXY_GRACE_S / 2
        self.models_prefix = str(args.get("models_prefix", "/v1/models"))
        self._models: dict[str, Any] = {}
        self._seen_at = 0.0

    @api.get("/healthz", include_in_schema=False)
    async def healthz(self) -> dict[str, Any]:
        """Liveness, without a key."""
        return {"status": "ok", "models": len(await self._apps())}

    @api.post("/predictions")
    async def predictions(self, request: Request) -> JSONResponse:
        """Predict with the model named by ``model_id`` in the body."""
        rid = request_id_of(request)
        raw = await read_body(request, self.max_body_bytes, self.body_read_s)
        data = decode_json(raw)
        model_id = data.get("model_id") if isinstance(data, dict) else None
        if not isinstance(model_id, str) or not model_id:
            raise ApiError(422, "model_id is required on /v1/predictions; GET /v1/models lists "
                                "the models your key may see.",
                           [{"field": "model_id", "message": "required"}])
        app = model_id.partition("@")[0]  # churn@2 is churn's app
        handle = await self._handle_of(app)
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        deadline = time.monotonic() + self.forward_s
        for attempt in range(RETRIES + 1):
            try:
                status, body, extra = await asyncio.wait_for(
                    handle.forward.remote(raw, headers, rid), max(deadline - time.monotonic(), 0.05))
                break
            except TimeoutError as exc:
                raise ApiError(503, f"Model '{app}' did not answer within {self.forward_s:g} s; "
                                    "retry shortly.", headers={"Retry-After": "1"}) from exc
            except RayActorError as exc:
                # The replica died with the request on it (a crash, a lost node, kill -9): a
                # prediction is idempotent, so another replica answers it, within the deadline.
                if attempt < RETRIES and time.monotonic() < deadline:
                    continue
                raise ApiError(503, f"Model '{app}' is not answering right now; retry shortly.",
                               headers={"Retry-After": "1"}) from exc
            except Exception as exc:  # the app went away or has no replica right now
                if app not in await self._apps(max_age_s=0.0):
                    raise _unknown(app) from exc
                raise ApiError(503, f"Model '{app}' is not answering right now; retry shortly.",
                               headers={"Retry-After": "1"}) from exc
        return JSONResponse(body, status_code=status, headers=extra)

    @api.post("/models/{model_id}/predictions")
    async def unknown_model(self, model_id: str) -> None:
        """Reached only for a model with no app (a deployed one's prefix is longer)."""
        raise _unknown(model_id)

    @api.get("/models")
    async def models(self, request: Request) -> dict[str, Any]:
        """Every deployed model the caller's key may see, and nothing else."""
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        apps = await self._apps(max_age_s=0.0)  # a listing is rare: always the current apps
        answers = await asyncio.gather(*(h.describe_for.remote(headers) for h in apps.values()))
        seen = [model for status, model in answers if status == 200]
        if not seen and any(status == 401 for status, _ in answers):
            raise ApiError(401, "Missing or unknown API key: send 'Authorization: Bearer <key>' "
                                "or 'X-API-Key'.")
        return {"models": sorted(seen, key=lambda m: m.get("model_id", ""))}

    async def _handle_of(self, model_id: str) -> Any:
        apps = await self._apps()
        if model_id not in apps:
            apps = await self._apps(max_age_s=MIN_AGE_S)  # deployed since the last look?
        if model_id not in apps:
            raise _unknown(model_id)
        return apps[model_id]

    async def _apps(self, max_age_s: float = REFRESH_S) -> dict[str, Any]:
        """Model id → handle of every Loom model app under this gateway, at most ``max_age_s`` old."""
        if time.monotonic() - self._seen_at > max_age_s:
            from ray.serve.context import _get_global_client

            configs = await _get_global_client()._controller.get_app_configs.remote()
            found = models_under(((n, c.import_path, c.route_prefix) for n, c in configs.items()),
                                 self.models_prefix)
            self._models = {model: self._models.get(model) or serve.get_app_handle(app)
                            for model, app in sorted(found.items())}
            self._seen_at = time.monotonic()
        return self._models


def build_gateway(args: dict[str, Any]) -> Any:
    """Serve application builder for the gateway (``import_path: ...gateway:build_gateway``)."""
    return serve.deployment(LoomGateway).bind(args)
