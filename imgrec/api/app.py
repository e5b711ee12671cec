"""The REST face of imgrec: FastAPI around ``imgrec.inference.service`` (decode, predict, log) and ``imgrec.predlog.stats``.

``create_app(settings)`` builds an app; its lifespan loads the active model (warmed up) and opens the
prediction log. Importing this module loads neither TensorFlow nor the database layer.

Endpoints and status codes (every error body is ``{"error": code, "detail": text, "request_id": id}``):

- ``POST /predict`` multipart, files in field ``files`` (or ``file``), optional form field ``metadata``
  (a JSON object, at most 4 KiB) and query ``top_k`` (1-100) and ``model`` (``name`` or ``name@version``).
  One file: 200 with one result object; several files: 200 with a list of results, one per file in
  order, where a file that cannot be used is an error object ``{"filename", "error", "detail", "status"}``
  instead of failing the others. One file that cannot be used: 415 (not an image format we accept) or
  422 (corrupt, empty or too many pixels). 413 when the request body is over the limit (checked from
  Content-Length and while the body streams in), 415 when the body is not multipart/form-data, 422 for
  a bad parameter, metadata or form, 404 for an unknown model or version, 422 for a model that exists
  but does not load, 503 (with Retry-After) when the prediction queue is full or no model is loaded.
- ``GET /health/live`` 200 while the process serves; ``GET /health/ready`` 200 once the model is loaded
  and warmed and the database answers, else 503; ``GET /health`` the same status with details.
- ``GET /metrics`` Prometheus text (a registry of its own per app).
- ``POST /model/reload`` (``Authorization: Bearer <IMGREC_ADMIN_TOKEN>``, optional JSON body
  ``{"name", "version"}``): 200 after the new model is loaded, warmed and swapped in; 403 when no admin
  token is configured, 401 for a missing or wrong token, 404 unknown model, 422 corrupt model (the
  old model keeps serving), 422 bad body.
- ``GET /stats`` the same aggregates as ``python -m imgrec stats --json``; 503 if the log is unreachable.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgrec.inference.batching import Batcher, BatchedPredictor, Overloaded
from imgrec.core.settings import Settings, get_settings
from imgrec.core.errors import ImageError, ModelError, StoreError

log = logging.getLogger(__name__)

MAX_FILES = 32
MAX_TOP_K = 100
MAX_METADATA_BYTES = 4096
# Multipart framing and small form fields on top of the files themselves.
BODY_OVERHEAD_BYTES = 64 * 1024
LIMIT_HINT = "The limit holds for all files of one request together: send large images in separate requests."
MAX_USER_AGENT = 512
MAX_EXTRA_MODELS = 2  # models other than the served one kept loaded for ?model=
RETRY_AFTER_S = 1
HEALTH_TIMEOUT_S = 5
STARTUP_STORE_TIMEOUT_S = 30
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
REQUEST_ID_KEY = "imgrec.request_id"

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
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
        super().__init__(413, f"The request body is over the limit of {_megabytes(limit)}. {LIMIT_HINT}")


def _megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB ({size:,} bytes)"


# -- metrics -----------------------------------------------------------------------------------


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imgrec_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "imgrec_http_request_duration_seconds", "Time from request to response, by route.", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r,
        )
        self.inference_latency = Histogram(
            "imgrec_inference_duration_seconds", "Time of one inference call (one whole batch).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r,
        )
        self.batch_size = Histogram(
            "imgrec_batch_size", "Images per inference call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.predictions = Counter("imgrec_predictions", "Predictions by top-1 label.", ["label"], registry=r)
        self.overloaded = Counter(
            "imgrec_overloaded_requests", "Requests refused with 503 because the queue was full.", registry=r
        )
        self.model_load = Gauge(
            "imgrec_model_load_seconds", "Seconds the served model took to load and warm up.", registry=r
        )
        self.model_info = Info("imgrec_model", "The model being served.", registry=r)
        self.reloads = Counter("imgrec_model_reloads", "Model reloads by outcome.", ["outcome"], registry=r)
        self.queue_depth = Gauge("imgrec_batch_queue_depth", "Requests waiting for a batch.", registry=r)

    def observe_batch(self, images: int, seconds: float) -> None:
        self.batch_size.observe(images)
        self.inference_latency.observe(seconds)

    def model_loaded(self, card, seconds: float) -> None:
        self.model_load.set(seconds)
        self.model_info.info({"name": card.name, "version": card.version})


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
                detail = (f"The request body is {_megabytes(int(declared))}; the limit is {_megabytes(self.limit)}. "
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
    response = JSONResponse(_error_body(error, detail, scope.get(REQUEST_ID_KEY)), status, headers=headers)
    await response(scope, _no_body, send)


async def _no_body():
    return {"type": "http.request", "body": b"", "more_body": False}


def _error_body(error: str, detail: str, request_id: str | None) -> dict[str, Any]:
    return {"error": error, "detail": detail, "request_id": request_id}


# -- state -------------------------------------------------------------------------------------


class ApiState:
    """What the endpoints share: settings, the served model, the store, the batcher and the metrics."""

    def __init__(self, settings: Settings, batching: bool):
        self.settings = settings
        self.batching = batching
        self.metrics = Metrics()
        self.served = None  # the Predictor answering requests without ?model=; swapped atomically
        self.load_error: str | None = None
        self.loaded_at: float | None = None
        self.extra: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self.store = None
        self.store_error: str | None = None
        self.batcher: Batcher | None = None
        self.inflight = 0
        # Each waiting request holds one worker thread; enough of them to fill several batches.
        self.limiter = anyio.CapacityLimiter(max(8, min(settings.batch_queue_size, 64)))
        self.reload_lock = asyncio.Lock()
        self.extra_lock = asyncio.Lock()
        self._store_open_lock = threading.Lock()
        self.started = time.time()
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth if self.batcher else 0)

    async def startup(self) -> None:
        try:
            await self.load_served()
        except ApiError as exc:
            self.load_error = exc.detail
            log.error("No model is being served: %s", exc.detail)
        with anyio.move_on_after(STARTUP_STORE_TIMEOUT_S):
            await self.ensure_store()  # if the database is down, serve anyway; /health/ready says so
        if self.batching:
            s = self.settings
            self.batcher = Batcher(s.batch_max_size, s.batch_max_wait_ms, s.batch_queue_size, self.metrics.observe_batch)
            self.batcher.start()

    async def shutdown(self) -> None:
        if self.batcher is not None:
            await anyio.to_thread.run_sync(self.batcher.stop)
        if self.store is not None:
            self.store.close()

    async def load_served(self, name: str | None = None, version: str | None = None) -> tuple[Any, float]:
        """Load, warm and swap in a model; on any failure the current one keeps serving."""
        resolved = await self._resolve(name, version)
        started = time.perf_counter()
        predictor = await self._load(resolved)
        seconds = time.perf_counter() - started
        previous, self.served = self.served, predictor  # one assignment: requests see old or new, never neither
        self.load_error, self.loaded_at = None, time.time()
        self.extra.pop(resolved, None)
        self.metrics.model_loaded(predictor.card, seconds)
        log.info("Serving %s (loaded in %.2f s)", predictor.card.ref, seconds)
        return previous, seconds

    async def _resolve(self, name: str | None, version: str | None) -> tuple[str, str]:
        from imgrec.registry import catalog

        try:
            return await anyio.to_thread.run_sync(lambda: catalog.resolve(name, version, self.settings))
        except ModelError as exc:
            raise ApiError(404, "model_not_found", str(exc)) from None

    async def _load(self, resolved: tuple[str, str]):
        from imgrec.inference.predictor import Predictor

        try:
            return await anyio.to_thread.run_sync(lambda: Predictor.load(*resolved, self.settings))
        except ModelError as exc:
            raise ApiError(422, "model_invalid", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a broken model file can fail anywhere inside Keras
            log.exception("Loading model %s@%s failed", *resolved)
            raise ApiError(422, "model_invalid", f"Model {resolved[0]}@{resolved[1]} could not be loaded: {exc}") from None

    async def predictor_for(self, model: str | None):
        """The served model, or the one ``?model=name[@version]`` names (loaded once, then kept)."""
        served = self.served
        if not model:
            if served is None:
                raise ApiError(503, "model_unavailable", f"No model is loaded: {self.load_error}",
                               {"Retry-After": str(RETRY_AFTER_S)})
            return served
        name, at, version = model.partition("@")
        if not NAME_PATTERN.fullmatch(name) or (at and not NAME_PATTERN.fullmatch(version)):
            raise ApiError(422, "invalid_parameter", f"model={model!r} is not valid. Expected name or name@version.")
        resolved = await self._resolve(name, version or None)
        if served is not None and (served.card.name, served.card.version) == resolved:
            return served
        async with self.extra_lock:
            if resolved not in self.extra:
                self.extra[resolved] = await self._load(resolved)
                while len(self.extra) > MAX_EXTRA_MODELS:
                    self.extra.popitem(last=False)
            self.extra.move_to_end(resolved)
            return self.extra[resolved]

    def _open_store_blocking(self):
        # Assigns under a thread lock, so an open that outlives an abandoned wait still lands.
        from imgrec.predlog.store import open_store_for_serving

        with self._store_open_lock:
            if self.store is None:
                try:
                    self.store = open_store_for_serving(self.settings)
                    self.store_error = None
                except StoreError as exc:
                    self.store_error = str(exc)
                    log.error("%s", exc)
        return self.store

    async def ensure_store(self):
        """The store, opened now if it could not be before (say the database came up after us)."""
        if self.store is not None:
            return self.store
        return await anyio.to_thread.run_sync(self._open_store_blocking, abandon_on_cancel=True)

    async def database_check(self) -> dict[str, Any]:
        """Can the prediction log be reached? Answers within ``HEALTH_TIMEOUT_S`` whatever the database does."""
        with anyio.move_on_after(HEALTH_TIMEOUT_S):
            store = await self.ensure_store()
            if store is None:
                return {"ok": False, "error": self.store_error}

            def ping():
                with store.engine.connect() as connection:
                    connection.exec_driver_sql("SELECT 1")

            try:
                await anyio.to_thread.run_sync(ping, abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
                return {"ok": False, "backend": store.backend, "error": store.explain(exc)}
            return {"ok": True, "backend": store.backend}
        return {"ok": False, "error": f"The database did not answer within {HEALTH_TIMEOUT_S} s."}

    def model_check(self) -> dict[str, Any]:
        served = self.served
        if served is None:
            return {"ok": False, "error": self.load_error or "still loading"}
        return {
            "ok": True,
            "name": served.card.name,
            "version": served.card.version,
            "backend": served.backend_name,
            "warmed": True,  # Predictor warms up in its constructor; it is only swapped in after
            "loaded_at": self.loaded_at,
        }

    def classify_and_log(self, predictor, uploads, top_k: int, user_agent: str | None, metadata: dict | None):
        """Runs in a worker thread: the shared decode -> predict -> log path, inference through the batcher."""
        from imgrec.inference.service import classify, log_classified

        proxy = BatchedPredictor(predictor, self.batcher, on_batch=self.metrics.observe_batch)
        items = classify(proxy, uploads, top_k, self.settings)
        for item in items:
            if not item.ok:
                continue
            if self.store is None:
                item.log_warning = f"Prediction not logged: the prediction log is unavailable ({self.store_error})."
                continue
            log_classified(
                self.store, item, source="api", session_id=None, settings=self.settings,
                user_agent=user_agent, metadata=metadata,
            )
        return items


def get_state(request: Request) -> ApiState:
    return request.app.state.imgrec


def request_id(request: Request) -> str | None:
    return request.scope.get(REQUEST_ID_KEY)


# -- endpoints ---------------------------------------------------------------------------------

router = APIRouter()

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "metadata": {"type": "string", "description": "JSON object, at most 4 KiB"},
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


@router.post("/predict", openapi_extra=_PREDICT_BODY)
async def predict(
    request: Request,
    top_k: int | None = Query(None, ge=1, le=MAX_TOP_K, description="labels per image (default from settings)"),
    model: str | None = Query(None, max_length=200, description="name or name@version (default: the served model)"),
    state: ApiState = Depends(get_state),
):
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       f"Expected a multipart/form-data body with image files in field 'files'; got '{content_type}'.")
    if state.inflight >= state.settings.batch_queue_size:
        raise Overloaded(f"{state.inflight} requests are already waiting.")
    state.inflight += 1
    try:
        return await _predict(request, top_k or state.settings.default_top_k, model, state)
    finally:
        state.inflight -= 1


async def _predict(request: Request, top_k: int, model: str | None, state: ApiState):
    from imgrec.inference.service import Upload

    try:
        form = await request.form(max_files=MAX_FILES, max_fields=8, max_part_size=BODY_OVERHEAD_BYTES)
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        raise ApiError(422, "invalid_form", f"The multipart body could not be read: {exc.detail}") from None
    try:
        parts = form.getlist("files") + form.getlist("file")
        if not parts:
            raise ApiError(422, "no_files", "No files sent. Expected one or more image files in form field 'files'.")
        if not all(isinstance(part, UploadFile) for part in parts):
            raise ApiError(422, "invalid_form", "Form field 'files' must hold files, not text.")
        uploads = [Upload(part.filename or f"file{index + 1}", await part.read()) for index, part in enumerate(parts)]
        metadata = _parse_metadata(form.get("metadata"))
    finally:
        await form.close()
    predictor = await state.predictor_for(model)
    user_agent = (request.headers.get("user-agent") or "")[:MAX_USER_AGENT] or None
    items = await anyio.to_thread.run_sync(
        lambda: state.classify_and_log(predictor, uploads, top_k, user_agent, metadata), limiter=state.limiter
    )
    rid = request_id(request)
    results = [_result(item, rid, state) for item in items]
    if len(results) == 1 and "error" in results[0]:
        failed = results[0]
        raise ApiError(failed["status"], failed["error"], failed["detail"])
    return results[0] if len(results) == 1 else results


def _parse_metadata(raw) -> dict | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ApiError(422, "invalid_metadata", "Form field 'metadata' must be text (a JSON object), not a file.")
    if len(raw.encode()) > MAX_METADATA_BYTES:
        raise ApiError(422, "invalid_metadata", f"metadata is {len(raw.encode())} bytes; at most {MAX_METADATA_BYTES} allowed.")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_metadata", f"metadata is not valid JSON ({exc}). Expected a JSON object.") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", f"metadata is a JSON {type(value).__name__}; expected a JSON object.")
    return value


def _result(item, rid: str | None, state: ApiState) -> dict[str, Any]:
    if not item.ok:
        status = 415 if item.error_code == "unsupported_format" else 422
        return {"filename": item.upload.filename, "error": item.error_code, "detail": item.error, "status": status,
                "request_id": rid}
    predictions = item.result.predictions
    state.metrics.predictions.labels(predictions[0].label).inc()
    body = {
        "predictions": [{"label": p.label, "score": round(float(p.score), 6)} for p in predictions],
        "model": {"name": item.model_name, "version": item.model_version},
        "latency_ms": round(item.result.latency_ms, 3),
        "request_id": rid,
        "filename": item.upload.filename,
        "prediction_id": item.prediction_id,
    }
    if item.log_warning:
        body["log_warning"] = item.log_warning
    return body


@router.get("/health/live")
async def health_live():
    return {"status": "alive"}


@router.get("/health/ready")
async def health_ready(state: ApiState = Depends(get_state)):
    model, database = state.model_check(), await state.database_check()
    ready = model["ok"] and database["ok"]
    body = {"status": "ready" if ready else "not ready", "model": model["ok"], "database": database["ok"]}
    return JSONResponse(body, 200 if ready else 503)


@router.get("/health")
async def health(state: ApiState = Depends(get_state)):
    model, database = state.model_check(), await state.database_check()
    ready = model["ok"] and database["ok"]
    s = state.settings
    body = {
        "status": "ready" if ready else "not ready",
        "model": model,
        "database": database,
        "batching": {
            "enabled": state.batcher is not None,
            "max_size": s.batch_max_size,
            "max_wait_ms": s.batch_max_wait_ms,
            "queue_size": s.batch_queue_size,
            "waiting": state.batcher.depth if state.batcher else 0,
            "in_flight": state.inflight,
        },
        "uptime_s": round(time.time() - state.started, 1),
    }
    return JSONResponse(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(state: ApiState = Depends(get_state)):
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def require_admin(request: Request, state: ApiState = Depends(get_state)) -> None:
    expected = state.settings.admin_token
    if not expected:
        raise ApiError(403, "admin_disabled",
                       "Admin endpoints are disabled: no admin token is configured. Set IMGREC_ADMIN_TOKEN to enable them.")
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "unauthorized", "Missing admin token. Expected the header 'Authorization: Bearer <token>'.",
                       challenge)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "Wrong admin token.", challenge)


@router.post("/model/reload", dependencies=[Depends(require_admin)])
async def reload_model(request: Request, state: ApiState = Depends(get_state)):
    name, version = _reload_target(await request.body())
    async with state.reload_lock:
        try:
            previous, seconds = await state.load_served(name, version)
        except ApiError:
            state.metrics.reloads.labels("failed").inc()
            raise
    state.metrics.reloads.labels("ok").inc()
    card = state.served.card
    return {
        "status": "reloaded",
        "model": {"name": card.name, "version": card.version},
        "previous": {"name": previous.card.name, "version": previous.card.version} if previous else None,
        "load_seconds": round(seconds, 3),
        "request_id": request_id(request),
    }


def _reload_target(body: bytes) -> tuple[str | None, str | None]:
    if not body.strip():
        return None, None
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ApiError(422, "invalid_body", f"The body is not valid JSON ({exc}). Expected {{\"name\", \"version\"}}.") from None
    if not isinstance(value, dict) or set(value) - {"name", "version"}:
        raise ApiError(422, "invalid_body", 'Expected a JSON object with optional keys "name" and "version".')
    name, version = value.get("name"), value.get("version")
    for key, text in (("name", name), ("version", version)):
        if text is not None and not (isinstance(text, str) and NAME_PATTERN.fullmatch(text)):
            raise ApiError(422, "invalid_body", f"{key}={text!r} is not a valid model {key}.")
    if version is not None and name is None:
        raise ApiError(422, "invalid_body", "A version needs a name.")
    return name, version


@router.get("/stats")
async def stats(state: ApiState = Depends(get_state)):
    store = await state.ensure_store()
    if store is None:
        raise ApiError(503, "store_unavailable", f"The prediction log is unavailable: {state.store_error}")
    from imgrec.predlog import stats as aggregates  # pandas and scipy load on first use, not at import

    threshold = state.settings.uncertain_threshold
    return await anyio.to_thread.run_sync(lambda: aggregates.report(store, uncertain_threshold=threshold))


# -- errors ------------------------------------------------------------------------------------


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(_error_body(exc.error, exc.detail, request_id(request)), exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        error = ERROR_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 413:
            headers["Connection"] = "close"  # the rest of the body is never read
        return JSONResponse(_error_body(error, str(exc.detail), request_id(request)), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or error['loc'][0]}: {error['msg']}"
            for error in exc.errors()
        )
        return JSONResponse(_error_body("invalid_parameter", problems, request_id(request)), 422)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded):
        get_state(request).metrics.overloaded.inc()
        return JSONResponse(_error_body("overloaded", f"Too busy, retry shortly: {exc}", request_id(request)), 503,
                            headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError):
        return JSONResponse(_error_body("invalid_image", str(exc), request_id(request)), 422)

    @app.exception_handler(ModelError)
    async def model_error(request: Request, exc: ModelError):
        return JSONResponse(_error_body("model_invalid", str(exc), request_id(request)), 422)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        return JSONResponse(_error_body("store_unavailable", str(exc), request_id(request)), 503)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            _error_body("internal_error", f"Unexpected server error ({type(exc).__name__}).", request_id(request)), 500
        )


# -- factory -----------------------------------------------------------------------------------


def create_app(settings: Settings | None = None, *, batching: bool | None = None) -> FastAPI:
    """A new API app. ``batching=None`` means on unless ``settings.batch_max_size`` is 1."""
    settings = settings or get_settings()
    if batching is None:
        batching = settings.batch_max_size > 1
    state = ApiState(settings, batching)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()

    app = FastAPI(
        title="imgrec API",
        summary="Image classification with the models of an imgrec workbench.",
        version="1",
        lifespan=lifespan,
    )
    app.state.imgrec = state
    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes + BODY_OVERHEAD_BYTES)
    known_paths = {route.path for route in router.routes}
    app.add_middleware(ObservabilityMiddleware, metrics=state.metrics, known_paths=known_paths)
    return app
