"""Reading a request body defensively: size limit, content type, strict JSON (no NaN/Infinity)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from pydantic import ValidationError

from framework.serving.problems import ApiError, validation_details
from framework.serving.schemas import PredictRequest

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCOPE_KEY = "loom.request_id"


def request_id_of(request: Any) -> str:
    """The request's id: a sane ``X-Request-ID`` header, else a new one, kept in the ASGI scope."""
    scope = request.scope  # a plain dict: no attribute-miss exception on the hot path
    rid = scope.get(_SCOPE_KEY)
    if rid is None:
        rid = _serve_request_id() or request.headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID_RE.match(rid) else uuid.uuid4().hex
        scope[_SCOPE_KEY] = rid
    return rid


def _serve_request_id() -> str:
    # The id Serve's proxy also returns in the x-request-id response header, so logs correlate.
    global _serve_context
    if _serve_context is None:
        try:
            from ray.serve.context import _get_serve_request_context as _serve_context
        except ImportError:  # no Ray here
            _serve_context = lambda: None  # noqa: E731
    try:
        return _serve_context().request_id or ""
    except Exception:  # outside a replica
        return ""


_serve_context: Any = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# One decoder for every request (``json.loads`` with a hook builds a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


#: How long a client may take to send its body when the caller names no deadline, in seconds.
BODY_READ_S = 5.0


async def read_body(request: Any, max_bytes: int, deadline_s: float = BODY_READ_S) -> bytes:
    """The raw JSON body; ``ApiError`` 413 when too large, 415 for another content type, 408
    when it has not fully arrived ``deadline_s`` seconds after the read began (a slow or stalled
    client must not hold one of the replica's in-flight slots)."""
    headers = request.headers
    ctype = headers.get("content-type", "")
    if ctype != "application/json" and ctype.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "Send the body as JSON with 'Content-Type: application/json'.")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"The body is larger than {max_bytes} bytes.")
    try:
        return await asyncio.wait_for(_receive(request, max_bytes, declared), deadline_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"The request body did not arrive within {deadline_s:g} s "
                            "(serving.timeouts.body_read_s); send the whole body at once.") from None


async def _receive(request: Any, max_bytes: int, declared: str | None) -> bytes:
    if declared is not None and declared.isdigit():
        return await request.body()  # HTTP/1.1 framing: no more than the declared length arrives
    chunks, size = [], 0  # chunked: count as it comes
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"The body is larger than {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes, max_bytes: int | None = None) -> Any:
    """``raw`` parsed strictly; ``ApiError`` 400 when not JSON (NaN and Infinity refused)."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise ApiError(413, f"The body is larger than {max_bytes} bytes.")
    try:
        text = raw.decode(json.detect_encoding(raw))  # strict: encoded surrogates are refused
        data = _DECODER.decode(text)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ApiError(400, "The body is not valid JSON (NaN and Infinity are not allowed).") from exc
    # A \ud800-style escape outside a pair decodes to a lone surrogate, which no answer or log
    # can encode: refuse it here, before it reaches a lookup, a cache key or an error message.
    if "\\u" in text and _has_lone_surrogate(data):
        raise ApiError(400, "The body holds a lone UTF-16 surrogate (\\ud800-\\udfff) in a "
                            "string; send valid Unicode text.")
    return data


def _has_lone_surrogate(node: Any) -> bool:
    if isinstance(node, str):
        return _SURROGATE.search(node) is not None
    if isinstance(node, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_lone_surrogate(v) for v in node)
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_json(request: Any, max_bytes: int, deadline_s: float = BODY_READ_S) -> Any:
    """The parsed JSON body (``read_body`` then ``decode_json``)."""
    return decode_json(await read_body(request, max_bytes, deadline_s))


def parse_predict(data: Any, max_instances: int, entity_keys: Any = ()) -> PredictRequest:
    """The body as a ``PredictRequest``; ``ApiError`` 422 naming every bad field.

    Join keys may come inside ``features`` (``{"features": {"customer_id": "42", ...}}``, as in the
    reference API example): they are moved to ``entities`` before validation.
    """
    if not isinstance(data, dict):
        raise ApiError(422, "The body must be a JSON object.")
    if entity_keys:
        data = _lift_entity_keys(data, entity_keys, "")
        if isinstance(data.get("instances"), list):
            data = {**data, "instances": [_lift_entity_keys(inst, entity_keys, f"instances[{i}].")
                                          for i, inst in enumerate(data["instances"])]}
    try:
        req = PredictRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "The request does not match the API schema.",
                       validation_details(exc.errors(include_input=False))) from exc
    if req.instances is not None and len(req.instances) > max_instances:
        raise ApiError(413, f"At most {max_instances} instances per request.")
    return req


def _lift_entity_keys(obj: Any, keys: Any, where: str) -> Any:
    """``obj`` with join keys found in its ``features`` moved to its ``entities``."""
    if not isinstance(obj, dict):
        return obj
    features = obj.get("features")
    if not isinstance(features, dict) or not any(k in features for k in keys):
        return obj
    entities = obj.get("entities")
    if entities is not None and not isinstance(entities, dict):
        return obj  # validation names the bad 'entities'
    entities = dict(entities or {})
    for key in keys:
        if key in features:
            value = features[key]
            if key in entities and entities[key] != value:
                raise ApiError(422, f"{where}features.{key} and {where}entities.{key} differ; send "
                                    "the join key once.",
                               [{"field": f"{where}features.{key}", "message": "conflicts"}])
            entities[key] = value
    rest = {k: v for k, v in features.items() if k not in keys}
    return {**obj, "features": rest, "entities": entities}
