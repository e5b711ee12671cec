"""A batch job on Ray Data: read the bytes, predict in actors holding one model each, write Parquet parts.

The pattern of Ray's batch-inference guide: ``read_binary_files`` → ``map_batches`` with a callable class
(``PredictBatch``, one ``Predictor`` loaded per actor) on an actor pool → results streamed back to the
driver, which writes them as Parquet parts (each written whole, so an interrupted job leaves only
complete parts and ``skip_existing`` finishes the rest). Each image goes through the service path
(``imgrec.inference.service``): the same decoding, refusals, result fields and logging as ``imgrec predict``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imgrec.batch.rows import SCHEMA, rows_table
from imgrec.batch.sources import Source, resolve_source
from imgrec.core.errors import ImgrecError, first_line
from imgrec.core.files import utc_timestamp
from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings
from imgrec.core.storage import Storage
from imgrec.predlog.sources import BATCH_SOURCE
from imgrec.registry import catalog

PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
ROWS_PER_PART = 4096
BATCH_SIZE = 32  # images per model call in an actor
READ_CPUS = 0.5  # a read task mostly waits for the disk or the network
BATCH_DIR = "batch"  # under data_dir: the outputs of jobs launched from the app


IMGREC_ERROR_LINE = re.compile(r"imgrec\.[\w.]+(?:Error|Cancelled): (.+)")


class BatchError(ImgrecError):
    """A batch job cannot start or write its results; the message says why."""


@dataclass(frozen=True)
class Progress:
    images: int  # done so far in this run
    total: int  # to do in this run
    failures: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Summary:
    model: str
    output: str
    images: int  # predicted or refused in this run
    failures: int
    skipped: int  # already in the output (``skip_existing``)
    seconds: float
    actors: int

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.images} images ({self.failures} failed, {self.skipped} already done) with {self.model} "
                f"in {self.seconds:.1f} s: {self.images_per_s:.1f} images/s on {self.actors} actor(s) → {self.output}")


class PredictBatch:
    """The Ray actor: loads one predictor when it starts, then predicts batch after batch."""

    def __init__(self, name: str, version: str, settings: Settings, top_k: int, scheme: str, log: bool):
        from imgrec.inference.predictor import Predictor
        from imgrec.inference.service import PredictionLog
        from imgrec.tasks.base import DecodeOptions

        self.settings = settings
        self.scheme = scheme
        self.predictor = Predictor.load(name, version, settings)
        self.options = DecodeOptions(top_k=top_k)
        self.prediction_log = PredictionLog(settings, serving=False) if log else None
        if self.prediction_log is not None:
            # Opened (and migrated) now, not inside the first write's time limit.
            self.prediction_log.store()

    def __call__(self, batch: dict) -> pa.Table:
        from imgrec.inference.service import Upload, serve_uploads

        uploads = [Upload(f"{self.scheme}{path}", bytes(data)) for path, data in zip(batch["path"], batch["bytes"])]
        outcomes = serve_uploads(self.predictor, uploads, self.options, self.settings, self.prediction_log,
                                 source=BATCH_SOURCE)
        return rows_table(outcomes)


def run_batch(source: str, model: str | None, output: str, settings: Settings, *, ray_address: str | None = None,
              log: bool = False, skip_existing: bool = False, actors: int | None = None, top_k: int | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> Summary:
    """Predict every file ``source`` names with ``model`` (``name[@version]``, default the active one) and write
    the rows (``imgrec.batch.rows.SCHEMA``) as Parquet parts in the folder or bucket prefix ``output``."""
    ref = ModelRef.parse(model) if model else None
    name, version = catalog.resolve(ref.name if ref else None, ref.version if ref else None, settings)
    card = catalog.load_card(name, version, settings)
    card.verify_files(catalog.model_dir(name, version, settings))  # a corrupt model is refused here, not in each actor
    files = resolve_source(source)
    results = Storage(output)
    done = existing_sources(results)
    if done and not skip_existing:
        raise BatchError(f"Output '{output}' already holds results for {len(done)} images. Expected a new output, "
                         "or --skip-existing to finish an interrupted job.")
    todo = [path for path in files.paths if files.shown(path) not in done]
    started = time.perf_counter()
    if not todo:
        return Summary(card.ref, output, 0, 0, len(files.paths), 0.0, 0)
    import ray

    actors = _start_ray(ray_address, actors)
    dataset = _dataset(files, todo, name, version, settings, top_k or settings.default_top_k, log, actors)
    writer = _PartWriter(results)
    seen: set[str] = set()
    failures = 0
    try:
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            table = block.cast(SCHEMA)
            writer.add(table)
            seen |= set(table.column("source_path").to_pylist())
            failures += len(set(table.filter(pc.is_valid(table.column("error"))).column("source_path").to_pylist()))
            if on_progress:
                on_progress(Progress(len(seen), len(todo), failures, time.perf_counter() - started))
    except ray.exceptions.RayError as exc:
        writer.close()  # what is done stays done: --skip-existing finishes the rest
        raise BatchError(f"The batch job stopped after {len(seen)} of {len(todo)} images: {_reason(exc)} "
                         "Run it again with --skip-existing once that is fixed.") from None
    missing = [path for path in todo if files.shown(path) not in seen]
    if missing:  # listed, but gone before Ray read them: an error row each, as `imgrec predict` says it
        writer.add(_missing_rows(missing, files, card, settings))
        failures += len(missing)
    writer.close()
    return Summary(card.ref, output, len(todo), failures, len(files.paths) - len(todo),
                   time.perf_counter() - started, actors)


def _reason(exc: BaseException) -> str:
    """The imgrec error behind a Ray failure (e.g. a model an actor could not load), else Ray's first line."""
    cause = exc
    while cause is not None:
        if isinstance(cause, ImgrecError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    # An actor that died in its constructor reaches us as text: its traceback, ending in our error's message.
    found = IMGREC_ERROR_LINE.findall(str(exc))
    return found[-1] if found else first_line(exc)


def _start_ray(address: str | None, actors: int | None) -> int:
    """Join the cluster at ``address``, or start a local Ray sized to this machine; the number of actors to use
    (default: one per CPU but one, which is left for reading)."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    DataContext.get_current().enable_progress_bars = False  # the face shows its own progress
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return actors or max(1, cpus - 1)


def _dataset(files: Source, todo: list[str], name: str, version: str, settings: Settings, top_k: int, log: bool,
             actors: int):
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    # More actors than free cores (e.g. 2 on a 2-core machine) share them rather than starve the readers.
    actor_cpus = min(1.0, (cpus - READ_CPUS) / actors)
    dataset = ray.data.read_binary_files(todo, include_paths=True, filesystem=files.arrow_filesystem(),
                                         ignore_missing_paths=True, num_cpus=READ_CPUS)
    return dataset.map_batches(
        PredictBatch,
        fn_constructor_kwargs=dict(name=name, version=version, settings=settings, top_k=top_k, scheme=files.scheme,
                                   log=log),
        batch_size=BATCH_SIZE,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=actor_cpus,
    )


def _missing_rows(paths: list[str], files: Source, card, settings: Settings) -> pa.Table:
    from imgrec.inference.service import read_files

    # read_files refuses a path that is not there with the message `imgrec predict` prints for it; the rows
    # keep the path as given (a URL would not survive its trip through pathlib).
    shown = [files.shown(path) for path in paths]
    table = rows_table(read_files(shown, card, settings))
    return table.set_column(table.schema.get_field_index("source_path"), "source_path", pa.array(shown, pa.string()))


class _PartWriter:
    """Rows in, Parquet parts of ``ROWS_PER_PART`` rows out, each written whole (temp and rename, or one PUT)."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.run = uuid.uuid4().hex[:12]
        self.count = 0
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= ROWS_PER_PART:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        buffer = io.BytesIO()
        pq.write_table(pa.concat_tables(self.pending), buffer)
        self.storage.write_bytes(f"{PART_PREFIX}{self.run}-{self.count:05d}{PART_SUFFIX}", buffer.getvalue())
        self.count += 1
        self.pending, self.rows = [], 0

    def close(self) -> None:
        self.flush()


def new_output(settings: Settings, model_ref: str) -> Path:
    """A fresh output folder under ``data/batch/`` for a job the app launches, named by time and model."""
    stamp = utc_timestamp().replace(":", "").replace("-", "").removesuffix("+0000")
    return settings.data_dir / BATCH_DIR / f"{stamp}-{model_ref.replace('@', '-')}.parquet"


def past_outputs(settings: Settings) -> list[Path]:
    """The outputs of the jobs launched from the app, newest first."""
    folder = settings.data_dir / BATCH_DIR
    return sorted(folder.glob("*.parquet"), reverse=True) if folder.is_dir() else []


def part_names(storage: Storage) -> list[str]:
    return [n for n in storage.list_names("") if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)]


def existing_sources(storage: Storage) -> set[str]:
    """The source paths an output already holds rows for."""
    return {path for name in part_names(storage)
            for path in pq.read_table(io.BytesIO(storage.read_bytes(name)), columns=["source_path"])
            .column("source_path").to_pylist()}


def read_results(output: str):
    """Every row of a batch output, as a pandas DataFrame (empty, with the columns, when there are none)."""
    storage = Storage(output)
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(name))) for name in part_names(storage)]
    return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()).to_pandas()
