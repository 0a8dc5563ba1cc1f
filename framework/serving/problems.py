"""The API's one error shape, and the handlers that turn every failure into it (never a traceback)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("loom.serving")

#: Error codes by HTTP status; the code is stable, the message is for people.
CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered to the client as ``{"error": {"code", "message", "details"}, "request_id"}``."""

    def __init__(
        self,
        status: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_body(status: int, message: str, request_id: str, details: list | None = None) -> dict:
    """The JSON body of every error response."""
    return {
        "error": {"code": CODES.get(status, "error"), "message": message, "details": details or []},
        "request_id": request_id,
    }


def _json_safe_loc(loc: Any) -> str:
    return ".".join(str(part) for part in loc if part != "body")


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"field", "message"}]``, without echoing input values back."""
    return [{"field": _json_safe_loc(e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in errors[:20]]


def install_handlers(app: Any, request_id_of: Any) -> None:
    """Route FastAPI/Starlette errors and unexpected exceptions into the one error shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(request: Any, status: int, message: str, details=None, headers=None):
        body = error_body(status, message, request_id_of(request), details)
        return JSONResponse(body, status_code=status, headers=headers or {})

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return respond(request, exc.status, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc: RequestValidationError):
        details = validation_details(list(exc.errors()))
        return respond(request, 422, "The request does not match the API schema.", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        status = exc.status_code if exc.status_code in CODES else 400
        message = {404: "No such route.", 405: "Method not allowed on this route."}.get(
            status, "Bad request.")
        return respond(request, status, message)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        # Log the cause in the replica log; the client sees no internals.
        logger.exception("unexpected error answering a request")
        return respond(request, 500, "The service failed to answer this request.")
