"""The API's error answers: ``ApiError``, the body ``{"error", "detail", "request_id"}`` and the exception handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from imgrec.api.metrics import Metrics
from imgrec.core.errors import ImageError, ModelError, StoreError
from imgrec.inference.batching import Overloaded

log = logging.getLogger(__name__)

LIMIT_HINT = "The limit holds for all files of one request together: send large images in separate requests."
RETRY_AFTER_S = 1
# Not sent to anyone (the client is gone): the status request metrics record for a client that hung up
# before its request was read (nginx's convention).
CLIENT_CLOSED_REQUEST = 499
# Where ObservabilityMiddleware keeps the request id in the ASGI scope; every error body carries it.
REQUEST_ID_KEY = "imgrec.request_id"

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as ``{"error", "detail"}`` with this status."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` as soon as a streamed body passes the limit (FastAPI lets it through)."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is over the limit of {megabytes(limit)}. {LIMIT_HINT}")


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB ({size:,} bytes)"


def error_response(scope, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body for the request of ``scope``, with its request id."""
    body: dict[str, Any] = {"error": error, "detail": detail, "request_id": scope.get(REQUEST_ID_KEY)}
    return JSONResponse(body, status, headers=headers)


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Every error becomes an error body; ``metrics`` counts the requests refused as overloaded."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(request.scope, exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        error = ERROR_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 413:
            headers["Connection"] = "close"  # the rest of the body is never read
        return error_response(request.scope, exc.status_code, error, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(request.scope, 422, "invalid_parameter", problems)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        metrics.overloaded.inc()
        return error_response(request.scope, 503, "overloaded", f"Too busy, retry shortly: {exc}",
                              {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError):
        return error_response(request.scope, 422, "invalid_image", str(exc))

    @app.exception_handler(ModelError)
    async def model_error(request: Request, exc: ModelError):
        return error_response(request.scope, 422, "model_invalid", str(exc))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        return error_response(request.scope, 503, "store_unavailable", str(exc))

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect):
        # The client hung up mid-upload: nothing went wrong here, and there is no one to answer.
        metrics.client_disconnects.inc()
        log.info("Client hung up before its request to %s was read", request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error_response(request.scope, 500, "internal_error", f"Unexpected server error ({type(exc).__name__}).")
