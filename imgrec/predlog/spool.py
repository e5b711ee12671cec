"""A bounded local spool for predictions the database refused: on disk, fsync'd, replayed in order.

Each record is one JSON file in ``<data dir>/spool/``, named ``<time ns>-<pid>-<key>.json`` so names sort
in the order records were spooled (across processes too), written to a temporary name, fsync'd, renamed
and its folder fsync'd: a record the spool took survives a crash or a power cut. ``replay`` writes the
records to the database oldest first and deletes each once written; it stops at the first failure (the
database is still away) and one process at a time replays (an ``flock`` on the folder). Every record carries
its idempotency key (``PredictionRecord.key``), so a record written twice (its first write's answer was
lost, or it was replayed by two processes) stays one row.

The spool holds at most ``max_bytes`` (``IMGREC_LOG_SPOOL_MAX_BYTES``); a record that would pass it is
dropped (not logged), counted and reported. The counters are per process; the size is the folder's.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from imgrec.core.errors import StoreError

log = logging.getLogger(__name__)

SUFFIX = ".json"
TEMP_PREFIX = ".part-"


class Spool:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.spooled = 0
        self.replayed = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._counter = 0

    # -- taking records ----------------------------------------------------------------

    def put(self, record) -> bool:
        """Keep ``record`` (a ``PredictionRecord`` with a key) durably; False if it was dropped (spool full)."""
        body = json.dumps(_to_json(record), ensure_ascii=False).encode()
        with self._lock:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if self.size_bytes() + len(body) > self.max_bytes:
                    self.dropped += 1
                    log.error("Prediction dropped: the log spool at %s is full (%d bytes, limit %d).",
                              self.directory, self.size_bytes(), self.max_bytes)
                    return False
                self._counter += 1
                name = f"{time.time_ns():020d}-{os.getpid()}-{self._counter:06d}-{record.key}{SUFFIX}"
                _write_durably(self.directory, name, body)
            except OSError as exc:
                self.dropped += 1
                log.error("Prediction dropped: cannot write the log spool at %s (%s).", self.directory, exc)
                return False
            self.spooled += 1
        return True

    # -- replaying ---------------------------------------------------------------------

    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)
                          and not p.name.startswith(TEMP_PREFIX))
        except FileNotFoundError:
            return []

    def size_bytes(self) -> int:
        total = 0
        for path in self.pending():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def replay(self, store, deadline: float | None = None) -> int:
        """Write the spooled records to ``store`` oldest first; returns how many were written. Stops at the
        first failure, at ``deadline`` (a ``time.monotonic()`` value), or when another process replays."""
        from imgrec.predlog.store import RecordInvalid

        written = 0
        with self._replay_lock() as mine:
            if not mine:
                return 0
            for path in self.pending():
                if deadline is not None and time.monotonic() > deadline:
                    break
                try:
                    record = _from_json(json.loads(path.read_bytes()))
                except FileNotFoundError:
                    continue
                except (OSError, ValueError, TypeError, KeyError) as exc:
                    log.error("Spooled record %s cannot be read (%s); set aside as %s.bad", path.name, exc, path.name)
                    path.rename(path.with_suffix(".bad"))
                    continue
                try:
                    store.log_prediction(record)
                except RecordInvalid as exc:
                    log.error("Spooled record %s refused for good (%s); set aside", path.name, exc)
                    path.rename(path.with_suffix(".bad"))
                    continue
                except StoreError as exc:
                    log.info("Spool replay paused: %s", exc)
                    break
                path.unlink(missing_ok=True)
                written += 1
        if written:
            with self._lock:
                self.replayed += written
            log.info("Replayed %d spooled predictions into the log", written)
        return written

    @contextlib.contextmanager
    def _replay_lock(self):
        try:
            folder = os.open(self.directory, os.O_RDONLY)
        except FileNotFoundError:
            yield False
            return
        try:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(folder)

    def stats(self) -> dict:
        pending = self.pending()
        return {
            "records": len(pending),
            "bytes": self.size_bytes(),
            "limit_bytes": self.max_bytes,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "dropped": self.dropped,
        }


def _write_durably(directory: Path, name: str, body: bytes) -> None:
    temp = directory / f"{TEMP_PREFIX}{name}"
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, body)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.rename(temp, directory / name)
    folder = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _to_json(record) -> dict:
    data = asdict(record)
    data["top_k"] = [[str(label), float(score)] for label, score in record.top_k]
    if record.detections is not None:
        data["detections"] = [[str(d[0]), *(float(v) for v in d[1:])] for d in record.detections]
    if record.label_set is not None:
        data["label_set"] = [[str(item[0]), float(item[1]), float(item[2])] for item in record.label_set]
    data["created_at"] = record.created_at.isoformat() if record.created_at else None
    data["image_bytes"] = base64.b64encode(record.image_bytes).decode() if record.image_bytes else None
    data["thumbnail"] = base64.b64encode(record.thumbnail).decode() if record.thumbnail else None
    return data


def _from_json(data: dict):
    from imgrec.predlog.store import PredictionRecord

    data = dict(data)
    data["top_k"] = [(label, score) for label, score in data["top_k"]]
    if data.get("detections") is not None:
        data["detections"] = [tuple(d) for d in data["detections"]]
    if data.get("label_set") is not None:
        data["label_set"] = [tuple(item) for item in data["label_set"]]
    data["created_at"] = datetime.fromisoformat(data["created_at"]) if data["created_at"] else None
    data["image_bytes"] = base64.b64decode(data["image_bytes"]) if data["image_bytes"] else None
    data["thumbnail"] = base64.b64decode(data["thumbnail"]) if data.get("thumbnail") else None
    return PredictionRecord(**data)
