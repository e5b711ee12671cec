"""``GET /health/live``, ``/health/ready`` and ``/health``: liveness, readiness and their details."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imgrec.api.deps import State
from imgrec.api.schemas import Health, Liveness, Readiness

router = APIRouter()


@router.get("/health/live", responses={200: {"model": Liveness, "description": "The process serves"}})
async def health_live():
    return {"status": "alive"}


@router.get("/health/ready", responses={200: {"model": Readiness, "description": "Ready"},
                                          503: {"model": Readiness, "description": "Not ready: no model or no database"}})
async def health_ready(state: State):
    model, database = state.model_check(), await state.database_check()
    ready = model["ok"] and database["ok"]
    body = {"status": "ready" if ready else "not ready", "model": model["ok"], "database": database["ok"]}
    return JSONResponse(body, 200 if ready else 503)


@router.get("/health", responses={200: {"model": Health, "description": "Ready, with details"},
                                    503: {"model": Health, "description": "Not ready, with details"}})
async def health(state: State):
    model, database = state.model_check(), await state.database_check()
    ready = model["ok"] and database["ok"]
    s = state.settings
    body = {
        "status": "ready" if ready else "not ready",
        "model": model,
        "database": database,
        "spool": state.prediction_log.spool.stats(),
        "batching": {
            "enabled": state.batcher is not None,
            "max_size": s.batch_max_size,
            "max_wait_ms": s.batch_max_wait_ms,
            "queue_size": s.batch_queue_size,
            "waiting": state.batcher.depth if state.batcher else 0,
            "in_flight": state.inflight,
        },
        "models": state.models_check(),
        "uptime_s": round(time.time() - state.started, 1),
    }
    return JSONResponse(body, 200 if ready else 503)
