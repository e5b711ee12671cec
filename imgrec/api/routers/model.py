"""``POST /model/reload`` (admin): load, warm and swap in the served model."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request

from imgrec.api.deps import RequestId, State, require_admin
from imgrec.api.errors import ApiError
from imgrec.api.schemas import RELOAD_BODY, ReloadResult, errors
from imgrec.core.refs import NAME_PATTERN

router = APIRouter()


@router.post("/model/reload", dependencies=[Depends(require_admin)], openapi_extra=RELOAD_BODY,
             responses={200: {"model": ReloadResult, "description": "The new model is loaded, warmed and served"},
                        **errors(401, 403, 404, 413, 422)})
async def reload_model(request: Request, state: State, rid: RequestId):
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
        "model": card.identity(),
        "previous": previous.card.identity() if previous else None,
        "load_seconds": round(seconds, 3),
        "request_id": rid,
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
