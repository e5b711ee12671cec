"""``POST /predict/video`` (a video → streamed NDJSON, a line per frame) and the WebSocket ``/ws/predict``."""

from __future__ import annotations

import json
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgrec.api.deps import State
from imgrec.api.errors import ApiError
from imgrec.api.middleware import BODY_OVERHEAD_BYTES
from imgrec.api.routers.predict import MAX_TOP_K
from imgrec.api.schemas import errors
from imgrec.core.errors import ImageError, ImgrecError
from imgrec.core.images import decode_image
from imgrec.inference.service import OptionsError, decode_options
from imgrec.video.decode import UnsupportedVideoError, VideoError, open_video
from imgrec.video.process import process_video

NDJSON = "application/x-ndjson"
MAX_EVERY = 10_000
# WebSocket close code for a request the server will not serve (RFC 6455: policy violation).
POLICY_VIOLATION = 1008

router = APIRouter()

_VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}}},
    }
}


@router.post("/predict/video", openapi_extra=_VIDEO_BODY, response_class=StreamingResponse,
             responses={200: {"content": {NDJSON: {}}, "description": 'One JSON object per processed frame: '
                                                                      '{"frame", "time_s", ...task result...}'},
                        **errors(404, 413, 415, 422, 503)})
async def predict_video(
    request: Request,
    state: State,
    every: Annotated[int, Query(ge=1, le=MAX_EVERY, description="predict every Nth frame")] = 1,
    top_k: Annotated[int | None, Query(ge=1, le=MAX_TOP_K, description="labels per frame (default from settings)")] = None,
    model: Annotated[str | None, Query(max_length=200, description="name or name@version (default: the served model)")] = None,
    score_threshold: Annotated[float | None, Query(description="detectors: lowest score kept, in (0, 1]")] = None,
    classes: Annotated[list[str] | None, Query(description="detectors: class names to keep")] = None,
):
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       f"Expected a multipart/form-data body with a video in field 'file'; got '{content_type}'.")
    filename, data = await _read_video(request)
    predictor = await state.predictor_for(model)
    try:
        options = decode_options(predictor.card, top_k=top_k or state.settings.default_top_k,
                                 score_threshold=score_threshold, classes=classes)
    except OptionsError as exc:
        raise ApiError(422, "invalid_parameter", str(exc)) from None
    try:  # the header is checked before the answer starts: a bad file is a 415 or 422, not a broken stream
        video = await anyio.to_thread.run_sync(open_video, data, state.settings)
    except UnsupportedVideoError as exc:
        raise ApiError(415, "unsupported_format", str(exc)) from None
    except VideoError as exc:
        raise ApiError(422, "invalid_video", str(exc)) from None
    frames = process_video(predictor, video, options, every=every, prediction_log=state.prediction_log,
                           filename=filename, settings=state.settings)
    return StreamingResponse(_lines(frames, video, state.limiter), media_type=NDJSON)


async def _lines(frames, video, limiter):
    """Each frame's JSON line as it is ready; a stream that breaks part way ends with an error line."""
    try:
        while True:
            try:
                item = await anyio.to_thread.run_sync(next, frames, None, limiter=limiter)
            except VideoError as exc:
                yield json.dumps({"error": "invalid_video", "detail": str(exc)}) + "\n"
                return
            if item is None:
                return
            yield json.dumps(item.to_json()) + "\n"
    finally:
        frames.close()
        video.close()


async def _read_video(request: Request) -> tuple[str, bytes]:
    limit = request.app.state.imgrec.settings.video_max_bytes
    try:
        form = await request.form(max_files=1, max_fields=4, max_part_size=BODY_OVERHEAD_BYTES)
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        raise ApiError(422, "invalid_form", f"The multipart body could not be read: {exc.detail}") from None
    try:
        part = form.get("file")
        if part is None:
            raise ApiError(422, "no_file", "No file sent. Expected a video file in form field 'file'.")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "invalid_form", "Form field 'file' must hold a file, not text.")
        data = await part.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "payload_too_large", f"The video is over {limit / 1e6:.1f} MB. "
                                                     f"Expected at most {limit / 1e6:.1f} MB.")
        return part.filename or "video", data
    finally:
        await form.close()


@router.websocket("/ws/predict")
async def predict_stream(websocket: WebSocket, model: str | None = None, top_k: int | None = None,
                         score_threshold: float | None = None):
    """Each binary message is one encoded image (JPEG, PNG, ...); each answer is its result object, or
    ``{"frame", "error", "detail"}`` for a frame that cannot be used; the connection stays open."""
    state = websocket.app.state.imgrec
    await websocket.accept()
    try:
        predictor = await state.predictor_for(model)
        options = decode_options(predictor.card, top_k=top_k or state.settings.default_top_k,
                                 score_threshold=score_threshold)
    except (ApiError, ImgrecError) as exc:
        error = exc.error if isinstance(exc, ApiError) else "invalid_parameter"
        await websocket.send_json({"error": error, "detail": str(exc)})
        await websocket.close(POLICY_VIOLATION, reason=error)
        return
    task = predictor.task
    index = 0
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                await websocket.send_json({"frame": index, "error": "invalid_image",
                                           "detail": "Got a text message. Expected a binary message holding one "
                                                     "encoded image (JPEG, PNG, WebP, BMP, GIF or TIFF)."})
            else:
                await websocket.send_json(await anyio.to_thread.run_sync(_predict_frame, predictor, task, options,
                                                                         data, index, state.settings))
            index += 1
    except WebSocketDisconnect:
        return


def _predict_frame(predictor, task, options, data: bytes, index: int, settings) -> dict:
    try:
        image = decode_image(data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
    except ImageError as exc:
        return {"frame": index, "error": "invalid_image", "detail": str(exc)}
    result = predictor.predict([image], options)[0]
    return {"frame": index, "model": predictor.card.identity(), **task.to_json(result),
            "latency_ms": round(result.latency_ms, 3)}
