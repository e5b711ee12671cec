"""``POST /predict``: the multipart form and its metadata, the decoding options, and the result objects."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgrec.api.deps import RequestId, State
from imgrec.api.errors import ApiError
from imgrec.api.middleware import BODY_OVERHEAD_BYTES
from imgrec.api.schemas import FileError, PredictionResult, errors
from imgrec.api.state import ApiState
from imgrec.inference.batching import Overloaded
from imgrec.inference.service import OptionsError, Outcome, Upload, decode_options
from imgrec.tasks.registry import task_for

MAX_FILES = 32
MAX_TOP_K = 100
MAX_METADATA_BYTES = 4096
MAX_USER_AGENT = 512
NOTHING_FOUND = "(none)"  # the /metrics label of a result without labels (a detector that found nothing)

router = APIRouter()

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1,
                                  "maxItems": MAX_FILES},
                        "metadata": {"type": "string", "description": "JSON object, at most 4 KiB"},
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


_PREDICT_RESPONSES = {
    200: {"model": PredictionResult | list[PredictionResult | FileError],
          "description": "One file: its result object. Several files: a list, one result or file error per file"},
    **errors(404, 408, 413, 415, 422, 503, s503="The queue is full (overloaded), or no model is loaded or it is loading"),
}


@router.post("/predict", openapi_extra=_PREDICT_BODY, responses=_PREDICT_RESPONSES)
async def predict(
    request: Request,
    state: State,
    rid: RequestId,
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="labels per image (default from settings)")] = None,
    model: Annotated[str | None, Query(max_length=200, description="name or name@version (default: the served model)")] = None,
    score_threshold: Annotated[float | None, Query(description="detectors: lowest score kept, in (0, 1] "
                                                               "(default: the model card's)")] = None,
    iou_threshold: Annotated[float | None, Query(description="detectors: IoU above which NMS drops a box of the "
                                                             "same class, in (0, 1] (default: the card's)")] = None,
    max_detections: Annotated[int | None, Query(description="detectors: most boxes per image, 1 to 1000 "
                                                            "(default: the card's)")] = None,
    classes: Annotated[list[str] | None, Query(description="detectors: class names to keep (repeat the parameter "
                                                           "or separate by commas; default: all)")] = None,
):
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       f"Expected a multipart/form-data body with image files in field 'files'; got '{content_type}'.")
    # The body is read first, within a time limit: a slow sender holds no place in the queue and not for long.
    timeout = state.settings.body_timeout_s
    try:
        with anyio.fail_after(timeout):
            uploads, metadata = await _read_body(request)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"The request body was not received within {timeout:g} s.",
                       {"Connection": "close"}) from None
    if state.inflight >= state.settings.batch_queue_size:
        raise Overloaded(f"{state.inflight} requests are already waiting.")
    state.inflight += 1
    try:
        wanted = dict(top_k=top_k or state.settings.default_top_k, score_threshold=score_threshold,
                      iou_threshold=iou_threshold, max_detections=max_detections, classes=classes)
        return await _predict(request, uploads, metadata, wanted, model, state, rid)
    finally:
        state.inflight -= 1


async def _read_body(request: Request) -> tuple[list[Upload], dict | None]:
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
    return uploads, metadata


async def _predict(request: Request, uploads: list[Upload], metadata: dict | None, wanted: dict, model: str | None,
                   state: ApiState, rid: str | None):
    predictor = await state.predictor_for(model)
    try:
        options = decode_options(predictor.card, **wanted)
    except OptionsError as exc:
        raise ApiError(422, "invalid_parameter", str(exc)) from None
    user_agent = (request.headers.get("user-agent") or "")[:MAX_USER_AGENT] or None
    outcomes = await anyio.to_thread.run_sync(
        lambda: state.serve(predictor, uploads, options, user_agent, metadata),
        limiter=state.limiter,
    )
    results = [_result(outcome, rid, state) for outcome in outcomes]
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
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ApiError(422, "invalid_metadata", f"metadata is not valid JSON ({exc}). Expected a JSON object.") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", f"metadata is a JSON {type(value).__name__}; expected a JSON object.")
    problem = _unstorable_text(value)
    if problem:
        raise ApiError(422, "invalid_metadata", f"metadata cannot be stored: {problem}.")
    return value


def _refuse_constant(name: str):
    """``json.loads`` accepts NaN and Infinity, which are not JSON: no database column would take them."""
    raise ValueError(f"{name} is not a JSON number")


def _unstorable_text(value, depth: int = 0) -> str | None:
    """Why a parsed metadata value cannot be stored, or None: PostgreSQL's JSONB refuses NUL characters,
    and a lone surrogate (an escaped half of a UTF-16 pair) has no UTF-8 form for either backend."""
    if depth > 32:
        return "it is nested more than 32 levels deep"
    if isinstance(value, str):
        if "\x00" in value:
            return "a string holds a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape)"
        return None
    if isinstance(value, dict):
        items = [item for pair in value.items() for item in pair]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = _unstorable_text(item, depth + 1)
        if problem:
            return problem
    return None


def _result(outcome: Outcome, rid: str | None, state: ApiState) -> dict[str, Any]:
    if outcome.ok:
        labels = task_for(outcome.card).log_labels(outcome.result)
        state.metrics.predictions.labels(labels[0][0] if labels else NOTHING_FOUND).inc()
        if outcome.log_warning:
            state.metrics.log_failures.inc()
    return {**outcome.to_json(), "request_id": rid}
