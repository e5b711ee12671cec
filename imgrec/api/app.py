"""The REST face of imgrec: FastAPI around ``imgrec.inference.service`` (decode, predict, log) and ``imgrec.predlog.stats``.

``create_app(settings)`` builds an app; its lifespan loads the active model (warmed up) and opens the
prediction log. Importing this module loads neither TensorFlow nor the database layer.

One module per concern: ``routers/`` (one router per resource), ``deps`` (what the routers depend on),
``state`` (models, store, batcher), ``errors`` (error bodies and handlers), ``middleware`` (request ids,
request metrics, body limit) and ``metrics`` (Prometheus).

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

import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imgrec.api.errors import install_error_handlers
from imgrec.api.middleware import BODY_OVERHEAD_BYTES, BodyLimitMiddleware, ObservabilityMiddleware
from imgrec.api.routers import health, metrics, model, predict, stats, video
from imgrec.api.state import ApiState
from imgrec.core.errors import SettingsError
from imgrec.core.settings import Settings, get_settings

ROUTERS = (predict.router, health.router, metrics.router, model.router, stats.router, video.router)
# The exit status uvicorn's and gunicorn's supervisors take for "failed to boot": they stop instead of restarting.
STARTUP_FAILURE = 3


def create_app(settings: Settings | None = None, *, batching: bool | None = None) -> FastAPI:
    """A new API app. ``batching=None`` means on unless ``settings.batch_max_size`` is 1.

    Without ``settings`` (a server calling the factory) they come from the environment, and a bad
    ``IMGREC_*`` value ends the process with one line on stderr naming it, not a traceback.
    """
    settings = settings or _settings_from_environment()
    if batching is None:
        batching = settings.batch_max_size > 1
    try:
        state = ApiState(settings, batching)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None

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
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app, state.metrics)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes + BODY_OVERHEAD_BYTES)
    known_paths = {route.path for router in ROUTERS for route in router.routes}
    app.add_middleware(ObservabilityMiddleware, metrics=state.metrics, known_paths=known_paths)
    return app


def _settings_from_environment() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_FAILURE) from None
