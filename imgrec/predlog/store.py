"""The prediction log: uploads, predictions and feedback in SQLite (default) or PostgreSQL.

Opening a ``Store`` migrates the database to the newest schema (Alembic, under
``imgrec/migrations``). Writes are short transactions; on SQLite they start with
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of
failing with "database is locked". Read-side aggregation lives in ``imgrec.predlog.stats``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from imgrec.core.errors import StoreError
from imgrec.core.files import write_atomically
from imgrec.core.settings import Settings
from imgrec.core.storage import Storage, StorageError, storage_for
from imgrec.predlog.sources import SOURCES

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30
MIGRATIONS_LOCATION = "imgrec.predlog:migrations"
# Any constant works: concurrent openers of one PostgreSQL database take turns migrating.
MIGRATION_LOCK_KEY = 0x696D67726563
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
# Display format (``DecodedImage.format``) -> file ending of a kept upload.
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
KEPT_UPLOAD_PATTERN = re.compile(r"([0-9a-f]{64})\.[a-z]+")
TEMP_UPLOAD_SUFFIX = ".part"
UPLOADS_PREFIX = "uploads"  # kept uploads under the storage URL, when there is one
PG_CONNECT_ARGS = {
    "connect_timeout": 5,
    "options": "-c statement_timeout=10000 -c lock_timeout=5000 -c idle_in_transaction_session_timeout=30000",
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10000,
}
KEY_PATTERN = re.compile(r"[0-9a-f]{32}")
# Review-queue thumbnails: longest side in pixels, and JPEG quality (a few kB each).
REVIEW_THUMBNAIL_PX = 96
REVIEW_THUMBNAIL_QUALITY = 80
MAX_LENGTHS = {"model_name": 128, "model_version": 64, "session_id": 64, "format": 16}

metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
    }
)
JSON_TYPE = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

uploads_table = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("byte_size", sa.Integer, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    # Relative to the uploads dir, so the data dir can move; NULL when not kept (or pruned).
    sa.Column("stored_path", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # A small JPEG of an uncertain image for the review queue (see REVIEW_THUMBNAIL_PX); NULL past retention.
    sa.Column("thumbnail", sa.LargeBinary, nullable=True),
)

predictions_table = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id"), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("top_k", JSON_TYPE, nullable=False),
    sa.Column("top1_label", sa.Text, nullable=False),
    sa.Column("top1_score", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),  # UTC, naive
    # created_at's UTC day, stored so per-day aggregates walk an index instead of sorting every row.
    sa.Column("created_day", sa.Date, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.Text, nullable=True),
    sa.Column("metadata", JSON_TYPE, nullable=True),
    # Set by the faces (a UUID per prediction): writing the same record twice leaves one row.
    sa.Column("request_key", sa.String(32), nullable=True),
    sa.Column("filename", sa.Text, nullable=True),  # as the user's file was called (shown, never used as a path)
    sa.CheckConstraint(f"source IN ({', '.join(repr(source) for source in SOURCES)})", name="source"),
    # The trailing columns make these indexes covering for the analytics in imgrec.predlog.stats, so the
    # common aggregates read only the index (no lookup per row): see bench/analytics.py.
    sa.Index("ix_predictions_created_at", "created_at"),
    sa.Index("ix_predictions_model", "model_name", "model_version", "created_at", "top1_score", "latency_ms"),
    sa.Index("ix_predictions_top1_label", "top1_label", "top1_score"),
    sa.Index("ix_predictions_source", "source"),
    sa.Index("ix_predictions_upload_id", "upload_id"),
    sa.Index("ix_predictions_day", "created_day", "model_name", "model_version", "latency_ms"),
    sa.Index("ix_predictions_top1_score", "top1_score"),
    sa.Index("ix_predictions_latency_ms", "latency_ms"),
    sa.Index("uq_predictions_request_key", "request_key", unique=True),
)

# One row per box of a detector's prediction; ``rank`` 0 is its best (its ``top1_label``).
detections_table = sa.Table(
    "detections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.id"), nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("x1", sa.Float, nullable=False),
    sa.Column("y1", sa.Float, nullable=False),
    sa.Column("x2", sa.Float, nullable=False),
    sa.Column("y2", sa.Float, nullable=False),
    sa.Index("ix_detections_prediction_id", "prediction_id", "rank"),
    sa.Index("ix_detections_label", "label", "score"),
    sa.Index("ix_detections_score", "score"),
)
# One row per label a multi-label prediction found (its score reached its class's threshold).
prediction_labels_table = sa.Table(
    "prediction_labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.id"), nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Index("ix_prediction_labels_prediction_id", "prediction_id"),
    sa.Index("ix_prediction_labels_label", "label", "score"),
)
# The headline of a detector's prediction that found nothing (its top1_score is 0).
NO_DETECTIONS_LABEL = "(nothing detected)"

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("prediction_id", sa.Integer, sa.ForeignKey("predictions.id"), nullable=False),
    sa.Column("corrected_label", sa.Text, nullable=True),
    # A multi-label prediction's corrected set (migration 0010); None for other tasks' feedback.
    sa.Column("corrected_labels", JSON_TYPE, nullable=True),
    sa.Column("wrong", sa.Boolean, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_feedback_prediction_id", "prediction_id"),
)

# A mirror of each training run's status.json (the file stays the truth; see imgrec.training.runs), so runs
# can be queried beside the predictions their models made.
training_runs_table = sa.Table(
    "training_runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("dataset", sa.Text, nullable=True),
    sa.Column("backbone", sa.Text, nullable=True),
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Column("total_epochs", sa.Integer, nullable=True),
    sa.Column("model_ref", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
RUN_STATUS_COLUMNS = ("name", "state", "dataset", "backbone", "epoch", "total_epochs", "model_ref", "message", "error")


@dataclass
class PredictionRecord:
    """One prediction as the faces see it; ``log_prediction`` splits it into upload + prediction rows."""

    sha256: str
    byte_size: int
    width: int
    height: int
    format: str
    model_name: str
    model_version: str
    top_k: Sequence[tuple[str, float]]
    latency_ms: float
    source: str
    session_id: str | None
    user_agent: str | None = None
    metadata: dict[str, Any] | None = None
    image_bytes: bytes | None = field(default=None, repr=False)
    # Defaults to now; set it only to import or seed history.
    created_at: datetime | None = None
    # Idempotency key (32 hex digits): a second write of the same key returns the first row's id.
    key: str | None = None
    # A detector's boxes, best first: (label, score, x1, y1, x2, y2) in the image's pixels; None for other tasks.
    detections: Sequence[tuple[str, float, float, float, float, float]] | None = None
    # A multi-label prediction's labels found: (label, score, threshold); None for other tasks.
    label_set: Sequence[tuple[str, float, float]] | None = None
    filename: str | None = None  # the upload's name as the user had it
    # A small JPEG (``review_thumbnail``) for the review queue: kept only when the prediction is uncertain.
    thumbnail: bytes | None = field(default=None, repr=False)


def utc_now() -> datetime:
    """Now in UTC, naive: every timestamp in the log is naive UTC, on both backends."""
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc_or_none(text: str | None) -> datetime | None:
    try:
        return as_utc_naive(datetime.fromisoformat(text)) if text else None
    except (TypeError, ValueError):
        return None


def as_utc_naive(moment: datetime | date) -> datetime:
    """A filter bound as naive UTC; a bare date means its midnight."""
    if not isinstance(moment, datetime):
        return datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def alembic_config():
    """The Alembic configuration of the log, built in code: no alembic.ini needed.

    A new one per use: ``attributes`` carries the caller's connection, so stores opened at the same
    time in several threads must not share it.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


class Store:
    """The prediction log behind one database URL. Safe to share between threads."""

    def __init__(self, url: str | URL, *, uploads_dir: Path | None = None, keep_uploads: bool = False,
                 uploads_storage: Storage | None = None, review_below: float = 0.5):
        self.url = make_url(url)
        self.backend = self.url.get_backend_name()
        if self.backend not in ("sqlite", "postgresql"):
            raise StoreError(
                f"Unsupported database URL '{self.url.render_as_string(hide_password=True)}'. "
                "Expected sqlite:///path/to/file.db or postgresql+psycopg://user@host/database."
            )
        if keep_uploads and uploads_dir is None:
            raise StoreError("keep_uploads needs an uploads directory.")
        self.uploads_dir = uploads_dir
        self.keep_uploads = keep_uploads
        # With a storage (IMGREC_STORAGE_URL), kept images live under its uploads/ instead of uploads_dir.
        self.uploads_storage = uploads_storage
        self.review_below = review_below  # a top-1 score below this keeps a thumbnail for the review queue
        self.location = self._describe_location()
        try:
            self.engine = self._create_engine()
        except ModuleNotFoundError as exc:  # e.g. postgresql+psycopg2://; we ship psycopg 3
            raise StoreError(
                f"Cannot open the prediction log: the database driver '{exc.name}' is not installed. "
                "Expected sqlite:///path/to/file.db or postgresql+psycopg://user@host/database."
            ) from exc
        # Connections from this engine start write transactions (BEGIN IMMEDIATE on SQLite).
        self._write_engine = self.engine.execution_options(imgrec_write=True)
        try:
            self._upgrade_to_head()
        except (SQLAlchemyError, OSError) as exc:
            self.engine.dispose()
            raise StoreError(f"Cannot open the prediction log: {self.explain(exc)}.") from exc
        except StoreError:
            self.engine.dispose()
            raise

    # -- setup -------------------------------------------------------------------------

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite store (None for PostgreSQL or in-memory)."""
        if self.backend != "sqlite" or self.url.database in (None, "", ":memory:"):
            return None
        database = self.url.database
        if database.startswith("file:"):  # SQLite URI filename, e.g. file:/x/imgrec.db?mode=ro
            database = database.removeprefix("file:").split("?", 1)[0]
        return Path(database)

    def _describe_location(self) -> str:
        if self.backend == "sqlite":
            return str(self.sqlite_path or ":memory:")
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self) -> sa.Engine:
        if self.backend == "postgresql":
            # A server that never answers must not stall start-up, a page or /stats.
            # A server that stops answering mid-query must not hold a connection for ever: the server ends
            # statements, lock waits and forgotten transactions, TCP keepalives and tcp_user_timeout notice a
            # silent peer (they do not apply to Unix sockets: the log's deadline covers those, see
            # imgrec.inference.service.PredictionLog.write).
            # What the URL sets itself wins; its own server options come first.
            connect_args = {key: value for key, value in PG_CONNECT_ARGS.items() if key not in self.url.query}
            if "options" in self.url.query:
                connect_args["options"] = f"{self.url.query['options']} {PG_CONNECT_ARGS['options']}"
            return sa.create_engine(self.url, pool_pre_ping=True, pool_timeout=10, connect_args=connect_args)
        path = self.sqlite_path
        read_only = self.url.query.get("mode") == "ro" or self.url.query.get("immutable") == "1"
        if path is not None and not read_only:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"Cannot open the prediction log: cannot create the folder {path.parent} ({exc.strerror})."
                ) from exc
        engine = sa.create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        sa.event.listen(engine, "connect", _configure_sqlite_connection)
        sa.event.listen(engine, "begin", _begin_sqlite_transaction)
        sa.event.listen(engine, "handle_error", _stale_connection)
        return engine

    def _upgrade_to_head(self) -> None:
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.util import CommandError

        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
        if current == (head_revision(),):
            return  # the common case: a read, no write lock (also works on a read-only file)
        config = alembic_config()
        try:
            with self._sqlite_migration_lock(), self._write_engine.begin() as connection:
                if self.backend == "postgresql":
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except CommandError as exc:
            raise StoreError(
                f"Cannot open the prediction log at {self.location}: its schema revision "
                f"{', '.join(current)} is unknown to this imgrec (newest known: {head_revision()}); "
                "was it written by a newer version?"
            ) from exc
        finally:
            config.attributes.pop("connection", None)
        log.info("Prediction log at %s migrated from %s to %s", self.location, current, head_revision())

    @contextlib.contextmanager
    def _sqlite_migration_lock(self):
        """One process migrates a SQLite file at a time; concurrent upgrades can deadlock on SQLite's locks."""
        path = self.sqlite_path if self.backend == "sqlite" else None
        if path is None:
            yield
            return
        import fcntl

        # flock on the folder, not the database: closing any descriptor of the database file would drop
        # SQLite's own POSIX locks held by this process, and a lock file would litter data/.
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------

    def log_prediction(self, record: PredictionRecord) -> int:
        """Write one prediction (and its upload, once per image); returns the prediction id."""
        _validate(record)
        created_at = as_utc_naive(record.created_at) if record.created_at else utc_now()
        stored_path = self._kept_path(record) if self.keep_uploads and record.image_bytes else None
        thumbnail = record.thumbnail if keeps_thumbnail(record.top_k, self.review_below) else None
        new_file = None
        for attempt in (1, 2):
            try:
                # The rows first, the file last inside the transaction: a database that refuses the rows
                # (read-only, full) leaves no file behind, and a failed file write rolls the rows back.
                with self._write_engine.begin() as connection:
                    upload_id = self._upload_id(connection, record, stored_path, created_at, thumbnail)
                    prediction_id = self._insert_prediction(connection, record, upload_id, created_at)
                    if stored_path is not None:
                        new_file = self._keep_upload(record, stored_path)
                return prediction_id
            except (SQLAlchemyError, OSError) as exc:
                if new_file is not None:  # written, then the commit failed: no row points at it
                    new_file.unlink(missing_ok=True)
                    new_file = None
                # A stale connection (see _stale_connection) was dropped with its pool: once more, on a new one.
                if attempt == 1 and getattr(exc, "connection_invalidated", False):
                    continue
                raise StoreError(f"Prediction not logged: {self.explain(exc)}.") from exc
        raise AssertionError("unreachable")

    def log_prediction_safely(self, record: PredictionRecord) -> tuple[int | None, str | None]:
        """``(prediction_id, None)``, or ``(None, warning)`` when logging failed: never raises.

        The user's prediction matters more than its log entry, so a full disk, a read-only file or an
        unreachable server becomes a warning to show next to the result (and a log line with details).
        """
        try:
            return self.log_prediction(record), None
        except StoreError as exc:
            log.warning("%s", exc, exc_info=exc.__cause__)
            return None, str(exc)
        except Exception as exc:  # the safety net: an unexpected bug must not cost the user the result
            log.exception("Unexpected failure while logging a prediction")
            return None, f"Prediction not logged: unexpected error ({type(exc).__name__}: {exc})."

    def add_feedback(
        self, prediction_id: int, corrected_label: str | None = None, wrong: bool = True, note: str = "",
        corrected_labels: Sequence[str] | None = None,
    ) -> int:
        """Record a person's verdict on a prediction; returns the feedback id. ``corrected_labels`` is the
        whole label set a multi-label prediction should have had (an empty sequence: none of them)."""
        if corrected_labels is not None and (isinstance(corrected_labels, str)
                                             or not all(isinstance(label, str) for label in corrected_labels)):
            raise StoreError(f"Feedback not saved: corrected_labels must be a list of label names, "
                             f"got {corrected_labels!r}.")
        try:
            with self._write_engine.begin() as connection:
                exists = connection.scalar(
                    sa.select(predictions_table.c.id).where(predictions_table.c.id == prediction_id)
                )
                if exists is None:
                    raise StoreError(f"Feedback not saved: there is no prediction with id {prediction_id}.")
                result = connection.execute(
                    feedback_table.insert().values(
                        prediction_id=prediction_id,
                        corrected_label=corrected_label or None,
                        corrected_labels=None if corrected_labels is None else sorted(set(corrected_labels)),
                        wrong=bool(wrong),
                        note=note or "",
                        created_at=utc_now(),
                    )
                )
                return result.inserted_primary_key[0]
        except SQLAlchemyError as exc:
            raise StoreError(f"Feedback not saved: {self.explain(exc)}.") from exc

    def prune_uploads(self, older_than_days: float) -> int:
        """Delete kept images not uploaded for ``older_than_days`` and forget their paths; returns how many.

        Age is the file's modification time, which a repeat upload of the same image refreshes.
        """
        if self.uploads_dir is None:
            raise StoreError("Cannot prune uploads: this store has no uploads directory.")
        cutoff = time.time() - older_than_days * 86400
        if self.uploads_storage is not None:
            deleted_hashes = self._prune_stored_uploads(cutoff)
        elif not self.uploads_dir.is_dir():
            return 0
        else:
            deleted_hashes = self._prune_local_uploads(cutoff)
        try:
            with self._write_engine.begin() as connection:
                for start in range(0, len(deleted_hashes), 500):  # stays under every backend's bind limit
                    connection.execute(
                        uploads_table.update()
                        .where(uploads_table.c.sha256.in_(deleted_hashes[start : start + 500]))
                        .values(stored_path=None)
                    )
        except SQLAlchemyError as exc:
            raise StoreError(f"Deleted {len(deleted_hashes)} old uploads but {self.explain(exc)}.") from exc
        log.info("Pruned %d kept uploads older than %s days", len(deleted_hashes), older_than_days)
        return len(deleted_hashes)

    def _prune_local_uploads(self, cutoff: float) -> list[str]:
        deleted_hashes = []
        for path in self.uploads_dir.glob("??/*"):
            kept = KEPT_UPLOAD_PATTERN.fullmatch(path.name)
            # Leftovers of an interrupted write are deleted too, but never files we did not write.
            if not (kept or path.name.endswith(TEMP_UPLOAD_SUFFIX)) or not path.is_file():
                continue
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            if kept:
                deleted_hashes.append(kept.group(1))
        return deleted_hashes

    def _prune_stored_uploads(self, cutoff: float) -> list[str]:
        """The bucket's kept uploads older than ``cutoff`` (a bucket write never leaves a temp object)."""
        storage, deleted_hashes = self.uploads_storage, []
        for shard in storage.list_names(UPLOADS_PREFIX):
            for name in storage.list_names(f"{UPLOADS_PREFIX}/{shard}"):
                kept = KEPT_UPLOAD_PATTERN.fullmatch(name)
                key = f"{UPLOADS_PREFIX}/{shard}/{name}"
                if kept and storage.modified(key) < cutoff:
                    storage.delete(key)
                    deleted_hashes.append(kept.group(1))
        return deleted_hashes

    def read_upload(self, stored_path: str) -> bytes:
        """The bytes of a kept upload, from the ``stored_path`` column, wherever it is kept."""
        if self.uploads_storage is not None:
            try:
                return self.uploads_storage.read_bytes(f"{UPLOADS_PREFIX}/{stored_path}")
            except StorageError as exc:
                raise StoreError(str(exc)) from None
        try:
            return self.upload_file(stored_path).read_bytes()
        except OSError as exc:
            raise StoreError(f"Could not read the kept upload '{stored_path}': {exc.strerror or exc}.") from None

    def prune_thumbnails(self, older_than_days: float) -> int:
        """Forget review thumbnails of images first seen more than ``older_than_days`` ago; returns how many."""
        cutoff = utc_now() - timedelta(days=older_than_days)
        try:
            with self._write_engine.begin() as connection:
                return connection.execute(
                    uploads_table.update()
                    .where(uploads_table.c.thumbnail.is_not(None), uploads_table.c.created_at < cutoff)
                    .values(thumbnail=None)
                ).rowcount
        except SQLAlchemyError as exc:
            raise StoreError(f"Old review thumbnails were not deleted: {self.explain(exc)}.") from exc

    def thumbnail(self, sha256: str) -> bytes | None:
        """The review thumbnail (JPEG bytes) of the image with this hash, if one is kept."""
        try:
            with self.engine.connect() as connection:
                return connection.scalar(sa.select(uploads_table.c.thumbnail).where(uploads_table.c.sha256 == sha256))
        except SQLAlchemyError as exc:
            raise StoreError(f"Cannot read the thumbnail: {self.explain(exc)}.") from exc

    def upload_file(self, stored_path: str) -> Path:
        """The file of a kept upload, from the ``stored_path`` column."""
        if self.uploads_dir is None:
            raise StoreError("This store has no uploads directory.")
        return self.uploads_dir / stored_path

    # -- reads -------------------------------------------------------------------------

    def get_prediction(self, prediction_id: int) -> dict[str, Any] | None:
        """One prediction with its upload and every feedback row, as plain JSON-friendly values."""
        p, u, f = predictions_table, uploads_table, feedback_table
        try:
            with self.engine.connect() as connection:
                row = connection.execute(
                    sa.select(
                        *p.c,
                        u.c.sha256,
                        u.c.byte_size,
                        u.c.width,
                        u.c.height,
                        u.c.format,
                        u.c.stored_path,
                    )
                    .join_from(p, u, p.c.upload_id == u.c.id)
                    .where(p.c.id == prediction_id)
                ).one_or_none()
                if row is None:
                    return None
                feedback_rows = connection.execute(
                    sa.select(f.c.id, f.c.corrected_label, f.c.corrected_labels, f.c.wrong, f.c.note, f.c.created_at)
                    .where(f.c.prediction_id == prediction_id)
                    .order_by(f.c.id)
                ).all()
                labels = prediction_labels_table
                label_rows = connection.execute(
                    sa.select(labels.c.label, labels.c.score, labels.c.threshold)
                    .where(labels.c.prediction_id == prediction_id)
                    .order_by(labels.c.score.desc(), labels.c.id)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"Cannot read prediction {prediction_id}: {self.explain(exc)}.") from exc
        result = dict(row._mapping)
        result["created_at"] = result["created_at"].isoformat()
        result["label_set"] = [dict(item._mapping) for item in label_rows]
        result["feedback"] = [
            dict(feedback._mapping, created_at=feedback.created_at.isoformat()) for feedback in feedback_rows
        ]
        return result

    def record_run_status(self, status: dict[str, Any]) -> None:
        """Insert or update a training run's row from its status (as ``imgrec.training.runs`` writes it)."""
        row = {column: status.get(column) for column in RUN_STATUS_COLUMNS}
        row["name"] = row["name"] or status["run_id"]
        row["created_at"] = _naive_utc_or_none(status.get("created"))
        row["updated_at"] = _naive_utc_or_none(status.get("updated")) or utc_now()
        insert = (sqlite.insert if self.backend == "sqlite" else postgresql.insert)(training_runs_table)
        statement = insert.values(run_id=status["run_id"], **row).on_conflict_do_update(
            index_elements=["run_id"], set_=row
        )
        try:
            with self._write_engine.begin() as connection:
                connection.execute(statement)
        except SQLAlchemyError as exc:
            raise StoreError(f"Run status of {status['run_id']} not recorded: {self.explain(exc)}.") from exc

    def run_statuses(self) -> list[dict[str, Any]]:
        """Every mirrored training run, newest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(training_runs_table).order_by(training_runs_table.c.run_id.desc()))
            return [dict(row._mapping) for row in rows]

    def check_writable(self) -> None:
        """Write and roll back (the readiness check): a database that only answers reads is not ready.
        Raises ``SQLAlchemyError`` (a stale read-only connection is dropped on the way, see _stale_connection).

        A SQLite connection opened before the file turned read-only still writes (through its open file and
        the WAL), so that write alone would say ready while every new connection fails: the file itself is
        checked first."""
        path = self.sqlite_path
        if path is not None and path.exists() and not os.access(path, os.W_OK):
            raise sa.exc.OperationalError("check_writable", {}, sqlite3.OperationalError(
                "attempt to write a readonly database"))
        for attempt in (1, 2):
            try:
                with self._write_engine.connect() as connection:
                    transaction = connection.begin()
                    try:
                        connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                    finally:
                        transaction.rollback()
                return
            except SQLAlchemyError as exc:
                # A connection opened while the file was read-only was dropped with its pool: once more, afresh.
                if attempt == 1 and getattr(exc, "connection_invalidated", False):
                    continue
                raise

    def count_predictions(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(sa.select(sa.func.count()).select_from(predictions_table))

    # -- internals ---------------------------------------------------------------------

    def _kept_path(self, record: PredictionRecord) -> str:
        """``<sha[:2]>/<sha><ext>``, relative to the uploads dir, for an image to keep.

        The name comes only from the content hash (checked against the bytes) and the decoded format,
        never from anything a user typed, so no upload can choose where it lands.
        """
        if hashlib.sha256(record.image_bytes).hexdigest() != record.sha256:
            raise StoreError("Prediction not logged: image_bytes do not match the record's sha256.")
        return f"{record.sha256[:2]}/{record.sha256}{EXTENSIONS.get(record.format.upper(), '.bin')}"

    def _keep_upload(self, record: PredictionRecord, relative: str) -> Path | None:
        """Write the image at ``relative`` under the uploads dir (atomically); the path if newly written."""
        if self.uploads_storage is not None:
            key = f"{UPLOADS_PREFIX}/{relative}"
            try:
                if not self.uploads_storage.exists(key):  # the same content under the same name: kept once
                    self.uploads_storage.write_bytes(key, record.image_bytes)
            except StorageError as exc:  # rolls the rows back, as a failed local write does
                raise OSError(str(exc)) from None
            return None
        target = self.uploads_dir / relative
        try:
            os.utime(target)  # already kept: restart its retention clock
            return None
        except FileNotFoundError:
            pass
        # Owner-only: users' images; an interrupted write leaves a temp file that pruning removes.
        write_atomically(target, record.image_bytes, mode=0o600, temp_suffix=TEMP_UPLOAD_SUFFIX)
        return target

    def _upload_id(
        self, connection: Connection, record: PredictionRecord, stored_path: str | None, created_at: datetime,
        thumbnail: bytes | None = None,
    ) -> int:
        """Insert-or-get by hash. ON CONFLICT DO NOTHING makes concurrent first uploads of one image safe."""
        upload_id = connection.scalar(
            _statements(self.backend).insert_upload,
            {
                "sha256": record.sha256,
                "byte_size": record.byte_size,
                "width": record.width,
                "height": record.height,
                "format": record.format,
                "stored_path": stored_path,
                "created_at": created_at,
                "thumbnail": thumbnail,
            },
        )
        if upload_id is not None:
            return upload_id
        upload_id = connection.scalar(_statements(self.backend).upload_id, {"sha256": record.sha256})
        if stored_path is not None:
            connection.execute(
                _statements(self.backend).set_stored_path, {"upload_id": upload_id, "stored_path": stored_path}
            )
        if thumbnail is not None:
            connection.execute(_statements(self.backend).set_thumbnail, {"upload_id": upload_id, "thumbnail": thumbnail})
        return upload_id

    def _insert_prediction(
        self, connection: Connection, record: PredictionRecord, upload_id: int, created_at: datetime
    ) -> int:
        ranked = sorted(((str(label), float(score)) for label, score in record.top_k), key=lambda pair: -pair[1])
        top1_label, top1_score = ranked[0] if ranked else (NO_DETECTIONS_LABEL, 0.0)
        statements = _statements(self.backend)
        result = connection.execute(
            statements.insert_prediction if record.key is None else statements.insert_keyed_prediction,
            {
                "upload_id": upload_id,
                "model_name": record.model_name,
                "model_version": record.model_version,
                "top_k": [{"label": label, "score": score} for label, score in ranked],
                "top1_label": top1_label,
                "top1_score": top1_score,
                "latency_ms": float(record.latency_ms),
                "created_at": created_at,
                "created_day": created_at.date(),
                "source": record.source,
                "session_id": record.session_id,
                "user_agent": record.user_agent,
                "metadata": record.metadata,
                "request_key": record.key,
                "filename": record.filename,
            },
        )
        if record.key is None:
            prediction_id = result.inserted_primary_key[0]
        else:
            prediction_id = result.scalar()
            if prediction_id is None:  # written before (a replay after a lost answer): the same row, its boxes too
                return connection.scalar(statements.keyed_prediction_id, {"request_key": record.key})
        if record.detections:
            connection.execute(detections_table.insert(), [
                {"prediction_id": prediction_id, "rank": rank, "label": str(label), "score": float(score),
                 "x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)}
                for rank, (label, score, x1, y1, x2, y2) in enumerate(record.detections)])
        if record.label_set:
            connection.execute(prediction_labels_table.insert(), [
                {"prediction_id": prediction_id, "label": str(label), "score": float(score), "threshold": float(threshold)}
                for label, score, threshold in record.label_set])
        return prediction_id

    def explain(self, exc: BaseException) -> str:
        """What went wrong, in words a person can act on (the driver's text follows for details)."""
        original = getattr(exc, "orig", None) or exc
        text = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
        lowered = text.lower()
        where = self.location
        if isinstance(exc, OSError) and not isinstance(exc, SQLAlchemyError):
            where_kept = self.uploads_storage.url_of(UPLOADS_PREFIX) if self.uploads_storage else self.uploads_dir
            return f"could not write the image under {where_kept} ({exc.strerror or exc})"
        if "readonly database" in lowered or "read-only transaction" in lowered:
            kind = "file" if self.backend == "sqlite" else "server"
            return f"the database {kind} is read-only ({where})"
        if "database is locked" in lowered:
            return f"the database stayed locked by another writer for over {SQLITE_BUSY_TIMEOUT_S} s ({where})"
        if "unable to open database file" in lowered:
            return f"the database file cannot be opened ({where}); check the folder exists and is writable"
        if "database or disk is full" in lowered or "no space left" in lowered:
            return f"the disk holding the database is full ({where})"
        if isinstance(exc, sa.exc.OperationalError) and self.backend == "postgresql":
            return f"cannot reach the database server at {where} ({text})"
        return f"{type(original).__name__} at {where}: {text}"


@dataclass(frozen=True)
class _WriteStatements:
    insert_upload: sa.Insert
    upload_id: sa.Select
    set_stored_path: sa.Update
    set_thumbnail: sa.Update
    insert_prediction: sa.Insert
    insert_keyed_prediction: sa.Insert
    keyed_prediction_id: sa.Select


@functools.cache
def _statements(backend: str) -> _WriteStatements:
    """The hot-path statements, built once: values arrive as parameters, so SQLAlchemy's cache hits."""
    insert = sqlite.insert if backend == "sqlite" else postgresql.insert
    uploads = uploads_table.c
    return _WriteStatements(
        insert_upload=insert(uploads_table).on_conflict_do_nothing(index_elements=["sha256"]).returning(uploads.id),
        upload_id=sa.select(uploads.id).where(uploads.sha256 == sa.bindparam("sha256")),
        set_stored_path=uploads_table.update()
        .where(uploads.id == sa.bindparam("upload_id"), uploads.stored_path.is_(None))
        .values(stored_path=sa.bindparam("stored_path")),
        set_thumbnail=uploads_table.update()
        .where(uploads.id == sa.bindparam("upload_id"))
        .values(thumbnail=sa.bindparam("thumbnail")),
        insert_prediction=predictions_table.insert(),
        insert_keyed_prediction=insert(predictions_table)
        .on_conflict_do_nothing(index_elements=["request_key"])
        .returning(predictions_table.c.id),
        keyed_prediction_id=sa.select(predictions_table.c.id).where(
            predictions_table.c.request_key == sa.bindparam("request_key")
        ),
    )


def open_store(settings: Settings) -> Store:
    """The store for these settings: SQLite under data/ unless configured."""
    return Store(
        settings.database_url_resolved, uploads_dir=settings.uploads_dir, keep_uploads=settings.keep_uploads,
        uploads_storage=storage_for(settings),
        review_below=settings.uncertain_threshold,
    )


def open_store_for_serving(settings: Settings) -> Store:
    """The store for a long-running face (app, API): opened, then kept uploads past retention pruned."""
    store = open_store(settings)
    prune_expired_uploads(store, settings)
    return store


def prune_expired_uploads(store: Store, settings: Settings) -> int:
    """Apply ``upload_retention_days`` to kept uploads and review thumbnails (0 keeps them for ever). For a
    face that opens the log at start: a failure is logged, never raised, since predictions matter more
    than housekeeping. Returns the kept uploads deleted."""
    if settings.upload_retention_days <= 0:
        return 0
    try:
        store.prune_thumbnails(settings.upload_retention_days)
        return store.prune_uploads(settings.upload_retention_days) if settings.keep_uploads else 0
    except (StoreError, OSError) as exc:
        log.warning("Old uploads were not pruned: %s", exc)
        return 0


def keeps_thumbnail(top_k, review_below: float) -> bool:
    """Whether a prediction with these (label, score) pairs is unsure enough to keep a review thumbnail."""
    return max((float(score) for _, score in top_k), default=0.0) < review_below


def review_thumbnail(pixels) -> bytes:
    """A small JPEG (longest side ``REVIEW_THUMBNAIL_PX``) of decoded RGB pixels, for the review queue."""
    image = Image.fromarray(np.asarray(pixels, np.uint8)).convert("RGB")
    image.thumbnail((REVIEW_THUMBNAIL_PX, REVIEW_THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=REVIEW_THUMBNAIL_QUALITY)
    return buffer.getvalue()


class RecordInvalid(StoreError):
    """The record itself cannot be stored (no retry will change that)."""


def _validate(record: PredictionRecord) -> None:
    problem = _record_problem(record)
    if problem:
        raise RecordInvalid(f"Prediction not logged: {problem}.")


def _record_problem(record: PredictionRecord) -> str | None:
    if not isinstance(record.sha256, str) or not SHA256_PATTERN.fullmatch(record.sha256):
        return "sha256 must be 64 lowercase hex digits"
    if record.key is not None and not (isinstance(record.key, str) and KEY_PATTERN.fullmatch(record.key)):
        return "key must be 32 lowercase hex digits"
    if record.source not in SOURCES:
        return f"source {record.source!r} is not one of {', '.join(SOURCES)}"
    if not record.top_k and record.detections is None:  # a detector may find nothing; a classifier always ranks
        return "top_k is empty"
    for label, score in [*record.top_k, *((d[0], d[1]) for d in record.detections or ())]:
        if not isinstance(score, (int, float)) or not math.isfinite(score) or not 0.0 <= score <= 1.0:
            return f"score {score!r} for label {label!r} is not a probability in [0, 1]"
    for detection in record.detections or ():
        if len(detection) != 6 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in detection[2:]):
            return f"detection {detection!r} is not (label, score, x1, y1, x2, y2) with finite numbers"
    if not math.isfinite(record.latency_ms) or record.latency_ms < 0:
        return f"latency_ms {record.latency_ms!r} is not a non-negative number"
    for name, limit in MAX_LENGTHS.items():
        value = getattr(record, name)
        if value is not None and len(value) > limit:
            return f"{name} is {len(value)} characters long; at most {limit} fit"
    if record.metadata is not None:
        try:
            json.dumps(record.metadata)
        except (TypeError, ValueError) as exc:
            return f"metadata is not JSON-serialisable ({exc})"
    return None


def _configure_sqlite_connection(dbapi_connection, _connection_record) -> None:
    # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _begin_sqlite_transaction).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys = ON")
        (journal_mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
        if journal_mode.lower() != "wal":
            # WAL: readers never block the writer; it persists in the file, so this runs once per database.
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
    finally:
        cursor.close()


def _stale_connection(context) -> None:
    """SQLite opens a file it may not write read-only, and such a connection stays read-only after the
    file is writable again: treat "readonly database" as a lost connection, so SQLAlchemy drops it and
    every connection pooled with it (the next checkout opens the file afresh)."""
    original = context.original_exception
    if "readonly database" in str(original).lower():
        context.is_disconnect = True


def _begin_sqlite_transaction(connection: Connection) -> None:
    # A deferred write transaction that first reads can fail at once with "database is locked" when it
    # upgrades to a writer; IMMEDIATE takes the write lock up front, so writers wait on busy_timeout.
    immediate = connection.get_execution_options().get("imgrec_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
