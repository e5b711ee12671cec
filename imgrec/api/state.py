"""What the endpoints share: ``ApiState`` (settings, served and extra models, store, batcher, health checks)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import anyio

from imgrec.api.errors import RETRY_AFTER_S, ApiError
from imgrec.api.metrics import Metrics
from imgrec.core.errors import ModelError
from imgrec.core.refs import ModelRef, ModelRefError
from imgrec.core.settings import Settings
from imgrec.inference.batching import BatchedPredictor, Batcher
from imgrec.inference.predictor import Predictor
from imgrec.inference.service import PredictionLog, serve_uploads
from imgrec.registry import catalog
from imgrec.tasks.base import DecodeOptions

log = logging.getLogger(__name__)

MAX_EXTRA_MODELS = 2  # models other than the served one kept loaded for ?model=
HEALTH_TIMEOUT_S = 5
STARTUP_STORE_TIMEOUT_S = 30


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
        self.prediction_log = PredictionLog(settings, serving=True, open_on_use=False)
        self.batcher: Batcher | None = None
        self.inflight = 0
        # Each waiting request holds one worker thread; enough of them to fill several batches.
        self.limiter = anyio.CapacityLimiter(max(8, min(settings.batch_queue_size, 64)))
        self.reload_lock = asyncio.Lock()
        self.extra_lock = asyncio.Lock()
        self.started = time.time()
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth if self.batcher else 0)
        self.metrics.model_ready.set_function(lambda: 0 if self.served is None else 1)

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
            self.batcher = Batcher(s.batch_max_size, s.batch_max_wait_ms, s.batch_queue_size,
                                   run_observer=self.metrics.observe_run)
            self.batcher.start()

    async def shutdown(self) -> None:
        if self.batcher is not None:
            await anyio.to_thread.run_sync(self.batcher.stop)
        self.prediction_log.close()

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
        try:
            return await anyio.to_thread.run_sync(lambda: catalog.resolve(name, version, self.settings))
        except ModelError as exc:
            raise ApiError(404, "model_not_found", str(exc)) from None

    async def _load(self, resolved: tuple[str, str]):
        try:
            return await anyio.to_thread.run_sync(lambda: Predictor.load(*resolved, self.settings))
        except ModelError as exc:
            raise ApiError(422, "model_invalid", str(exc)) from None
        except Exception as exc:
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
        try:
            ref = ModelRef.parse(model)
        except ModelRefError:
            raise ApiError(422, "invalid_parameter", f"model={model!r} is not valid. Expected name or name@version.") from None
        resolved = await self._resolve(ref.name, ref.version)
        if served is not None and (served.card.name, served.card.version) == resolved:
            return served
        async with self.extra_lock:
            if resolved not in self.extra:
                self.extra[resolved] = await self._load(resolved)
                while len(self.extra) > MAX_EXTRA_MODELS:
                    self.extra.popitem(last=False)
            self.extra.move_to_end(resolved)
            return self.extra[resolved]

    async def ensure_store(self):
        """The store, opened now if it could not be before (say the database came up after us)."""
        if self.prediction_log.opened is not None:
            return self.prediction_log.opened
        return await anyio.to_thread.run_sync(self.prediction_log.store, abandon_on_cancel=True)

    @property
    def store_error(self) -> str | None:
        return self.prediction_log.error

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
            **served.card.identity(),
            "backend": served.backend_name,
            "warmed": True,  # Predictor warms up in its constructor; it is only swapped in after
            "loaded_at": self.loaded_at,
        }

    def serve(self, predictor, uploads, options: DecodeOptions, user_agent: str | None, metadata: dict | None):
        """Runs in a worker thread: the shared decode -> predict -> log path, inference through the batcher."""
        proxy = BatchedPredictor(predictor, self.batcher,
                                 on_batch=lambda images, seconds: self.metrics.observe_run(predictor, images, seconds))
        return serve_uploads(proxy, uploads, options, self.settings, self.prediction_log, source="api",
                             user_agent=user_agent, metadata=metadata)
