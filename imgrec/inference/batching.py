"""Micro-batching for the API: images from concurrent requests share one ``predict_batch`` call.

Requests run ``service.predict_uploads`` in worker threads as usual; the predictor they get is a
``BatchedPredictor`` whose ``predict`` resizes the request's images, hands them to the
``Batcher`` and waits. The batcher's own thread gathers work until ``max_size`` images are waiting
or ``max_wait_ms`` has passed since the first one, runs one batch per model, and hands each request
its rows. The queue is bounded: a full queue raises ``Overloaded`` at once (the API answers 503).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from imgrec.inference.predictor import image_sizes
from imgrec.tasks.base import DecodeOptions


class Overloaded(Exception):
    """The batch queue is full; try again shortly."""


@dataclass
class _Work:
    predictor: object  # imgrec.inference.predictor.Predictor
    batch: np.ndarray  # prepared uint8 (N, H, W, 3)
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchOutcome:
    probabilities: np.ndarray  # this request's rows
    batch_size: int  # images in the batch it ran in
    latency_ms: float  # the batch's inference time per image


# Called after each batch with (images in the batch, inference seconds).
BatchObserver = Callable[[int, float], None]
# The same with the predictor first and, last, each request's seconds in the queue before its batch ran.
RunObserver = Callable[[object, int, float, list[float]], None]


class Batcher:
    """One thread that runs queued work in batches. ``start()`` once, ``stop()`` at shutdown."""

    def __init__(self, max_size: int, max_wait_ms: float, queue_size: int, observer: BatchObserver | None = None,
                 run_observer: RunObserver | None = None):
        self.max_size = max(1, int(max_size))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=max(1, int(queue_size)))
        self._observer = observer
        self._run_observer = run_observer
        self._thread: threading.Thread | None = None
        self._carry: _Work | None = None  # taken from the queue but did not fit in the last batch

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="imgrec-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)  # blocking put: the sentinel always gets in behind queued work
        self._thread.join(timeout)
        self._thread = None

    def submit(self, predictor, batch: np.ndarray) -> Future:
        """Queue a prepared batch; the future's result is a ``BatchOutcome``. Raises ``Overloaded`` when full."""
        if self._thread is None:
            raise RuntimeError("Batcher is not running.")
        work = _Work(predictor, batch)
        try:
            self._queue.put_nowait(work)
        except queue.Full:
            raise Overloaded(f"The prediction queue is full ({self._queue.maxsize} requests waiting).") from None
        return work.future

    def _run(self) -> None:
        while True:
            first = self._carry or self._queue.get()
            self._carry = None
            if first is None:
                return
            works, size, stopping = [first], len(first.batch), False
            deadline = time.monotonic() + self.max_wait
            while size < self.max_size:
                remaining = deadline - time.monotonic()
                try:
                    work = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is None:
                    stopping = True
                    break
                if size + len(work.batch) > self.max_size:
                    self._carry = work  # first in the next batch, so order is kept
                    break
                works.append(work)
                size += len(work.batch)
            self._run_batch(works)
            if stopping:
                self._fail_leftovers()
                return

    def _run_batch(self, works: list[_Work]) -> None:
        # One inference call per model: a reload mid-batch leaves work for the old and the new model.
        groups: dict[int, list[_Work]] = {}
        for work in works:
            groups.setdefault(id(work.predictor), []).append(work)
        for group in groups.values():
            try:
                stacked = np.concatenate([work.batch for work in group])
                started = time.perf_counter()
                waits = [started - work.queued for work in group]
                probabilities = group[0].predictor.predict_batch(stacked)
                seconds = time.perf_counter() - started
            except BaseException as exc:  # noqa: BLE001 - every waiting request must hear about it
                for work in group:
                    work.future.set_exception(exc)
                continue
            if self._observer is not None:
                self._observer(len(stacked), seconds)
            if self._run_observer is not None:
                self._run_observer(group[0].predictor, len(stacked), seconds, waits)
            latency_ms = seconds * 1000 / len(stacked)
            start = 0
            for work in group:
                rows = probabilities[start : start + len(work.batch)]
                start += len(work.batch)
                work.future.set_result(BatchOutcome(rows, len(stacked), latency_ms))

    def _fail_leftovers(self) -> None:
        leftovers = [self._carry] if self._carry else []
        self._carry = None
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is not None:
                leftovers.append(work)
        for work in leftovers:
            work.future.set_exception(Overloaded("The server is shutting down."))


class BatchedPredictor:
    """Looks like a ``Predictor`` to ``service.predict_uploads``, but infers through a shared ``Batcher``."""

    def __init__(self, predictor, batcher: Batcher | None, on_batch: BatchObserver | None = None):
        self.predictor = predictor
        self.card = predictor.card
        self._batcher = batcher
        self._on_batch = on_batch  # observer for unbatched calls (the batcher has its own)

    def predict(self, images: Sequence, options: DecodeOptions) -> list:
        if len(images) == 0:
            return []
        batch = self.predictor.prepare(images)
        if self._batcher is None:
            started = time.perf_counter()
            probabilities = self.predictor.predict_batch(batch)
            seconds = time.perf_counter() - started
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
            return self.predictor.decode(probabilities, options, seconds * 1000 / len(batch), image_sizes(images))
        outcome: BatchOutcome = self._batcher.submit(self.predictor, batch).result()
        return self.predictor.decode(outcome.probabilities, options, outcome.latency_ms, image_sizes(images))
