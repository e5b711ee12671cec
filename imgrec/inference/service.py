"""Decode, predict and log uploads: the one path shared by the app, the API and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from imgrec.core.settings import Settings
from imgrec.core.errors import ImageError, UnsupportedFormatError
from imgrec.core.images import DecodedImage, decode_image
from imgrec.inference.predictor import PredictionResult, Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    filename: str  # shown to people only; never used to name anything on disk
    data: bytes


@dataclass
class Classified:
    upload: Upload
    image: DecodedImage | None = None
    result: PredictionResult | None = None
    error: str | None = None
    error_code: str | None = None  # "unsupported_format" or "invalid_image", for the API's status codes
    prediction_id: int | None = None
    log_warning: str | None = None
    model_name: str = ""
    model_version: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None


def classify(predictor: Predictor, uploads: Sequence[Upload], top_k: int, settings: Settings) -> list[Classified]:
    """Decode every upload (a bad one gets its own error) and predict the good ones in one batch."""
    items = []
    for upload in uploads:
        try:
            image = decode_image(upload.data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
            items.append(Classified(upload, image=image))
        except ImageError as exc:
            code = "unsupported_format" if isinstance(exc, UnsupportedFormatError) else "invalid_image"
            items.append(Classified(upload, error=str(exc), error_code=code))
    good = [item for item in items if item.image is not None]
    for item, result in zip(good, predictor.predict_detailed([item.image for item in good], top_k)):
        item.result = result
    for item in items:
        item.model_name, item.model_version = predictor.card.name, predictor.card.version
    return items


def log_classified(
    store,
    item: Classified,
    *,
    source: str,
    session_id: str | None,
    settings: Settings,
    user_agent: str | None = None,
    metadata: dict | None = None,
) -> None:
    """Write one prediction to the log; a failed write leaves a warning on the item, never an exception."""
    from imgrec.predlog.store import PredictionRecord

    if not item.ok:
        return
    record = PredictionRecord(
        sha256=item.image.sha256,
        byte_size=item.image.byte_size,
        width=item.image.width,
        height=item.image.height,
        format=item.image.format,
        model_name=item.model_name,
        model_version=item.model_version,
        top_k=[(p.label, p.score) for p in item.result.predictions],
        latency_ms=item.result.latency_ms,
        source=source,
        session_id=session_id,
        user_agent=user_agent,
        metadata=metadata,
        image_bytes=item.upload.data if settings.keep_uploads else None,
    )
    item.prediction_id, item.log_warning = store.log_prediction_safely(record)
