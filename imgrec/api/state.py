"""What the endpoints share: ``ApiState`` (settings, served and extra models, store, batcher, health checks)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import anyio

from imgrec.api.errors import RETRY_AFTER_S, ApiError
from imgrec.api.metrics import Metrics, SpoolCollector
from imgrec.core.errors import ModelError, SettingsError
from imgrec.core.refs import ModelRef, ModelRefError
from imgrec.core.settings import Settings
from imgrec.inference.batching import BatchedPredictor, Batcher
from imgrec.inference.predictor import Predictor
from imgrec.inference.service import PredictionLog, serve_uploads
from imgrec.registry import catalog
from imgrec.tasks.base import DecodeOptions

log = logging.getLogger(__name__)

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
        self.extra: OrderedDict[tuple[str, str], Any] = OrderedDict()  # resident ?model= models, LRU first
        self.loading: dict[tuple[str, str], asyncio.Task] = {}  # one load per model, shared by its requests
        self.allowed = _allow_list(settings.api_models)
        self.prediction_log = PredictionLog(settings, serving=True, open_on_use=False)
        self.metrics.registry.register(SpoolCollector(lambda: self.prediction_log.spool.stats()))
        self.batcher: Batcher | None = None
        self.inflight = 0
        # Each waiting request holds one worker thread; enough of them to fill several batches.
        self.limiter = anyio.CapacityLimiter(max(8, min(settings.batch_queue_size, 64)))
        self.reload_lock = asyncio.Lock()
        self.load_lock = asyncio.Lock()  # one ?model= load at a time: loads are CPU-heavy
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
        self.prediction_log.replay_soon()  # what an earlier run left in the spool

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
        """The served model, or the one ``?model=name[@version]`` names.

        Only models of ``IMGREC_API_MODELS`` (when set) are served. A model not yet resident is loaded
        once, in the background, whoever asks; a request waits ``api_model_load_wait_s`` for it, then
        gets 503 ``model_loading`` (the load goes on). At most ``api_resident_models`` stay loaded.
        """
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
        if not self.is_allowed(resolved):
            raise ApiError(404, "model_not_found", f"Model {ref} is not served by this API.")
        predictor = self.extra.get(resolved)
        if predictor is not None:
            self.extra.move_to_end(resolved)
            return predictor
        task = self.loading.get(resolved)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load_extra(resolved))
            task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: no warning
            self.loading[resolved] = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.api_model_load_wait_s)
        except TimeoutError:
            raise ApiError(503, "model_loading", f"Model {resolved[0]}@{resolved[1]} is being loaded; retry shortly.",
                           {"Retry-After": str(RETRY_AFTER_S)}) from None

    def is_allowed(self, resolved: tuple[str, str]) -> bool:
        return self.allowed is None or resolved[0] in self.allowed or "@".join(resolved) in self.allowed

    async def _load_extra(self, resolved: tuple[str, str]):
        try:
            async with self.load_lock:
                if resolved in self.extra:
                    return self.extra[resolved]
                started = time.perf_counter()
                predictor = await self._load(resolved)
                self.extra[resolved] = predictor
                self.metrics.model_loads.labels("@".join(resolved)).inc()
                while len(self.extra) > max(0, self.settings.api_resident_models):
                    evicted, _ = self.extra.popitem(last=False)
                    log.info("Unloaded %s@%s (least recently used)", *evicted)
                log.info("Loaded %s@%s for ?model= in %.2f s", *resolved, time.perf_counter() - started)
                return predictor
        finally:
            self.loading.pop(resolved, None)

    def models_check(self) -> dict[str, Any]:
        return {
            "resident": ["@".join(key) for key in self.extra],
            "loading": ["@".join(key) for key in self.loading],
            "resident_limit": self.settings.api_resident_models,
            "allowed": sorted(self.allowed) if self.allowed is not None else "all",
        }

    async def ensure_store(self):
        """The store, opened now if it could not be before (say the database came up after us)."""
        if self.prediction_log.opened is not None:
            return self.prediction_log.opened
        return await anyio.to_thread.run_sync(self.prediction_log.store, abandon_on_cancel=True)

    @property
    def store_error(self) -> str | None:
        return self.prediction_log.error

    async def database_check(self) -> dict[str, Any]:
        """Can the prediction log be written? Answers within ``HEALTH_TIMEOUT_S`` whatever the database does."""
        with anyio.move_on_after(HEALTH_TIMEOUT_S):
            store = await self.ensure_store()
            if store is None:
                return {"ok": False, "error": self.store_error}

            try:  # a write, rolled back: a database that answers reads but refuses writes is not ready
                await anyio.to_thread.run_sync(store.check_writable, abandon_on_cancel=True)
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


def _allow_list(text: str) -> set[str] | None:
    """``IMGREC_API_MODELS`` as a set of ``name`` and ``name@version`` entries; None allows every model."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return None
    try:
        return {str(ModelRef.parse(entry)) for entry in entries}
    except ModelRefError as exc:
        raise SettingsError(f"IMGREC_API_MODELS: {exc}") from None
