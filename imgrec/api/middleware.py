"""The API's ASGI middleware: request ids and request metrics, and the request body limit."""

from __future__ import annotations

import re
import time
import uuid

from imgrec.api.errors import LIMIT_HINT, REQUEST_ID_KEY, BodyTooLarge, error_response, megabytes
from imgrec.api.metrics import Metrics

# Multipart framing and small form fields on top of the files themselves.
BODY_OVERHEAD_BYTES = 64 * 1024
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ObservabilityMiddleware:
    """Request id (``X-Request-ID`` in and out), request counts and latency by route template."""

    def __init__(self, app, metrics: Metrics, known_paths: set[str]):
        self.app, self.metrics, self.known_paths = app, metrics, known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                path = scope["path"] if scope["path"] in self.known_paths else "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status["code"])).inc()
            self.metrics.request_latency.labels(path).observe(time.perf_counter() - started)


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: at once from Content-Length, else while they stream in."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.limit
            except ValueError:
                return await _send_error(scope, send, 400, "bad_request", "Content-Length is not a number.")
            if too_large:
                detail = (f"The request body is {megabytes(int(declared))}; the limit is {megabytes(self.limit)}. "
                          f"{LIMIT_HINT}")
                return await _send_error(scope, send, 413, "payload_too_large", detail, close=True)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # only if nothing in the app turned it into a response
            if started:
                raise
            await _send_error(scope, send, 413, "payload_too_large", exc.detail, close=True)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_error(scope, send, status: int, error: str, detail: str, close: bool = False) -> None:
    headers = {"Connection": "close"} if close else None
    await error_response(scope, status, error, detail, headers)(scope, _no_body, send)


async def _no_body():
    return {"type": "http.request", "body": b"", "more_body": False}
