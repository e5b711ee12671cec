"""The one path from uploads to logged results (decode, predict, log) and the one result JSON shape,
shared by the app, the API and the CLI."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from imgrec.core.errors import ImageError, ImgrecError, UnsupportedFormatError
from imgrec.core.images import DecodedImage, decode_image, read_image_file
from imgrec.core.settings import Settings
from imgrec.inference.predictor import Predictor
from imgrec.registry.card import ModelCard
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.registry import task_for

log = logging.getLogger(__name__)

UNSUPPORTED_FORMAT, INVALID_IMAGE = "unsupported_format", "invalid_image"
# The HTTP status an upload's own problem maps to (the API answers it; the CLI prints it in --json).
ERROR_STATUS = {UNSUPPORTED_FORMAT: 415, INVALID_IMAGE: 422}
MAX_PENDING_WRITES = 16
REPLAY_INTERVAL_S = 1.0


class OptionsError(ImgrecError):
    """A caller's decoding options do not fit the model (the API answers 422, the CLI exits 2)."""


def decode_options(card: ModelCard, *, top_k: int, score_threshold: float | None = None,
                   iou_threshold: float | None = None, max_detections: int | None = None,
                   classes: list[str] | None = None) -> DecodeOptions:
    """The options of a request, checked by the model's task; ``classes`` items may be comma-separated lists."""
    names = None if classes is None else tuple(n.strip() for item in classes for n in item.split(",") if n.strip())
    options = DecodeOptions(top_k=top_k, score_threshold=score_threshold, iou_threshold=iou_threshold,
                            max_detections=max_detections, classes=names)
    problem = task_for(card).check_options(options, card)
    if problem:
        raise OptionsError(problem)
    return options


@dataclass(frozen=True)
class Upload:
    filename: str  # shown to people only; never used to name anything on disk
    data: bytes


@dataclass
class Outcome:
    """One upload after the service path: its decoded image and task result, or why it could not be used."""

    upload: Upload
    card: ModelCard
    image: DecodedImage | None = None
    result: Any = None  # the task's result object (e.g. ``imgrec.tasks.classification.Classification``)
    error: str | None = None
    error_code: str | None = None  # UNSUPPORTED_FORMAT or INVALID_IMAGE
    prediction_id: int | None = None
    log_warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def status(self) -> int:
        return 200 if self.ok else ERROR_STATUS[self.error_code]

    def to_json(self) -> dict[str, Any]:
        """The result object of the API and of ``imgrec predict --json`` (documented in the README)."""
        if not self.ok:
            return {"filename": self.upload.filename, "error": self.error_code, "detail": self.error,
                    "status": self.status}
        body = {
            "filename": self.upload.filename,
            "model": self.card.identity(),
            **task_for(self.card).to_json(self.result),
            "latency_ms": round(self.result.latency_ms, 3),
            "prediction_id": self.prediction_id,
        }
        if self.log_warning:
            body["log_warning"] = self.log_warning
        return body


class PredictionLog:
    """The prediction log of a face, or carrying on without it: opened on first use and tried again
    after a failure (the database may come up after us); ``error`` says why it is missing.

    ``open_on_use=False`` (the API) never opens it on the request path: the server opens it at start
    and in its health checks, so an outage does not make every request wait for a connect timeout.
    """

    def __init__(self, settings: Settings, *, serving: bool, open_on_use: bool = True):
        self.settings = settings
        self.serving = serving  # a long-running face also prunes expired kept uploads on open
        self.open_on_use = open_on_use
        self.error: str | None = None
        self._store = None
        self._lock = threading.Lock()
        # Log writes run in threads of their own, at most this many at once (a hung database holds them).
        self._writers = threading.BoundedSemaphore(MAX_PENDING_WRITES)
        self._spool = None
        self._replayer: threading.Thread | None = None
        self._closed = False

    @property
    def opened(self):
        """The store if it is open, else None; never tries to open it."""
        return self._store

    def store(self):
        """The open ``imgrec.predlog.store.Store``, opened now if needed, or None (then ``error`` says why)."""
        if self._store is not None:
            return self._store
        from imgrec.predlog.store import open_store, open_store_for_serving  # SQLAlchemy loads only when logging

        with self._lock:  # an open that outlives an abandoned wait still lands here
            if self._store is None:
                try:
                    self._store = (open_store_for_serving if self.serving else open_store)(self.settings)
                    self.error = None
                except ImgrecError as exc:
                    self.error = str(exc)
                    log.error("%s", exc)
        return self._store

    @property
    def spool(self):
        """The local spool that takes what the database refuses (``imgrec.predlog.spool``)."""
        if self._spool is None:
            from imgrec.predlog.spool import Spool

            with self._lock:
                if self._spool is None:
                    self._spool = Spool(self.settings.data_dir / "spool", self.settings.log_spool_max_bytes)
        return self._spool

    def write(self, store, record) -> tuple[int | None, str | None]:
        """``(prediction_id, None)``, or ``(None, warning)``: never raises, and never waits longer than
        ``settings.log_timeout_s`` whatever the database does. A record the database refuses, or does
        not take in time, goes to the spool (replayed when the database is back; idempotent by key)."""
        from imgrec.predlog.store import RecordInvalid

        timeout = self.settings.log_timeout_s
        deadline = time.monotonic() + timeout
        if store is None:
            return None, self._spool_record(record, f"the prediction log is unavailable ({self.error or 'not opened yet'})")
        if not self._writers.acquire(timeout=timeout):
            return None, self._spool_record(record, f"{MAX_PENDING_WRITES} earlier writes are still waiting for "
                                                    f"the database at {store.location}")
        done, outcome, handed_over = threading.Event(), {}, threading.Lock()

        def run():
            try:
                outcome["result"] = store.log_prediction(record), None
            except RecordInvalid as exc:
                log.warning("%s", exc)
                outcome["result"] = None, str(exc)
            except Exception as exc:  # whatever the database did, the record goes to the spool
                log.warning("%s", exc, exc_info=not isinstance(exc, ImgrecError))
                with handed_over:  # once the request has gone on without us, the record is spooled already
                    if "late" not in outcome:
                        why = str(exc).removeprefix("Prediction not logged: ").rstrip(".")
                        outcome["result"] = None, self._spool_record(record, why)
            finally:
                self._writers.release()
                done.set()
            if "result" in outcome and outcome["result"][0] is not None:
                self.replay_soon()

        threading.Thread(target=run, name="imgrec-log-write", daemon=True).start()
        if done.wait(max(0.0, deadline - time.monotonic())):
            return outcome["result"]
        with handed_over:
            if "result" in outcome:
                return outcome["result"]
            outcome["late"] = True
        return None, self._spool_record(record, f"the database at {store.location} did not answer within {timeout:g} s")

    def _spool_record(self, record, why: str) -> str:
        if self.spool.put(record):
            self.replay_soon()
            return (f"Prediction not logged yet: {why}; it is kept in the local spool and written to the database "
                    "when it is back.")
        return f"Prediction not logged: {why}, and the local spool is full or unwritable (dropped)."

    def replay_soon(self) -> None:
        """Start the background replay of the spool if it holds anything (one thread per face)."""
        if self._spool is None and not (self.settings.data_dir / "spool").is_dir():
            return
        if not self.spool.pending():
            return
        with self._lock:
            if self._replayer is not None and self._replayer.is_alive():
                return
            self._replayer = threading.Thread(target=self._replay_loop, name="imgrec-log-replay", daemon=True)
            self._replayer.start()

    def _replay_loop(self) -> None:
        while not self._closed and self.spool.pending():
            store = self.store() if (self.open_on_use or self.serving) else self._store
            if store is not None:
                try:
                    self.spool.replay(store)
                except Exception:  # the replay tries again; the records stay on disk
                    log.exception("Replaying the log spool failed")
            if self.spool.pending():
                time.sleep(REPLAY_INTERVAL_S)

    def replay_now(self, deadline_s: float) -> int:
        """Replay what the spool holds, for at most ``deadline_s`` (the CLI, before it exits)."""
        store = self._store
        if store is None or not (self.settings.data_dir / "spool").is_dir():
            return 0
        return self.spool.replay(store, deadline=time.monotonic() + deadline_s)

    def close(self) -> None:
        self._closed = True
        if self._store is not None:
            self._store.close()


def predict_uploads(predictor: Predictor, uploads: list[Upload | Outcome], options: DecodeOptions,
                    settings: Settings) -> list[Outcome]:
    """Decode every upload (a bad one gets its own error) and predict the good ones in one batch. An
    ``Outcome`` in the list (a file that could not even be read) passes through in its place."""
    outcomes = []
    for upload in uploads:
        if isinstance(upload, Outcome):
            outcomes.append(upload)
            continue
        try:
            image = decode_image(upload.data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels)
            outcomes.append(Outcome(upload, predictor.card, image=image))
        except ImageError as exc:
            outcomes.append(_refused(upload, predictor.card, exc))
    good = [outcome for outcome in outcomes if outcome.image is not None]
    for outcome, result in zip(good, predictor.predict([outcome.image for outcome in good], options), strict=True):
        outcome.result = result
    return outcomes


def read_files(paths, card: ModelCard, settings: Settings) -> list[Upload | Outcome]:
    """Each path as an ``Upload``, or as the refused ``Outcome`` of a file that cannot be read (missing,
    not a file, over the size limit), for ``predict_uploads``."""
    read = []
    for path in paths:
        try:
            read.append(Upload(str(path), read_image_file(path, settings.max_upload_bytes)))
        except ImageError as exc:
            read.append(_refused(Upload(str(path), b""), card, exc))
    return read


def _refused(upload: Upload, card: ModelCard, exc: ImageError) -> Outcome:
    code = UNSUPPORTED_FORMAT if isinstance(exc, UnsupportedFormatError) else INVALID_IMAGE
    return Outcome(upload, card, error=str(exc), error_code=code)


def log_outcomes(prediction_log: PredictionLog | None, outcomes: list[Outcome], *, source: str, settings: Settings,
                 session_id: str | None = None, user_agent: str | None = None,
                 metadata: dict | None = None) -> None:
    """Write each result to the log; a failed write leaves a warning on the outcome, never an exception."""
    # SQLAlchemy loads only once something is logged.
    from imgrec.predlog.store import PredictionRecord, keeps_thumbnail, review_thumbnail, utc_now

    if prediction_log is None:
        return
    wanted = any(outcome.ok for outcome in outcomes)
    store = prediction_log.store() if wanted and prediction_log.open_on_use else prediction_log.opened
    for outcome in outcomes:
        if not outcome.ok:
            continue
        task = task_for(outcome.card)
        top_k = task.log_labels(outcome.result)
        record = PredictionRecord(
            sha256=outcome.image.sha256,
            byte_size=outcome.image.byte_size,
            width=outcome.image.width,
            height=outcome.image.height,
            format=outcome.image.format,
            model_name=outcome.card.name,
            model_version=outcome.card.version,
            top_k=top_k,
            detections=task.log_boxes(outcome.result),
            label_set=task.log_label_set(outcome.result),
            latency_ms=outcome.result.latency_ms,
            source=source,
            session_id=session_id,
            user_agent=user_agent,
            metadata=metadata,
            image_bytes=outcome.upload.data if settings.keep_uploads else None,
            filename=outcome.upload.filename,
            # Only unsure predictions keep one (the review queue's), so only they pay for making it.
            thumbnail=review_thumbnail(outcome.image.pixels) if keeps_thumbnail(
                top_k, settings.uncertain_threshold) else None,
            created_at=utc_now(),  # the prediction's time, also when the record is written later from the spool
            key=uuid.uuid4().hex,
        )
        outcome.prediction_id, outcome.log_warning = prediction_log.write(store, record)


def serve_uploads(predictor: Predictor, uploads: list[Upload | Outcome], options: DecodeOptions, settings: Settings,
                  prediction_log: PredictionLog | None, *, source: str, **log_details) -> list[Outcome]:
    """Decode, predict and log: what every face does with uploads."""
    outcomes = predict_uploads(predictor, uploads, options, settings)
    log_outcomes(prediction_log, outcomes, source=source, settings=settings, **log_details)
    return outcomes
