"""The prediction log on real databases (SQLite file, and PostgreSQL when installed): writes, dedup,
feedback, concurrency, faults, migrations, kept uploads."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from imgrec.core.errors import StoreError
from imgrec.predlog import stats
from imgrec.predlog.store import (
    PredictionRecord,
    Store,
    alembic_config,
    feedback_table,
    head_revision,
    metadata,
    open_store,
    predictions_table,
    prune_expired_uploads,
    uploads_table,
)
from tests.helpers.settings import make_settings
from tests.helpers.store_fixtures import (
    BASE_TIME,
    fake_sha256,
    make_record,
    write_on_request_worker,
    write_predictions_worker,
)

# Fixtures: database_url (each backend), store, postgres_cluster, postgres_url.
pytest_plugins = ["tests.helpers.store_fixtures"]

HOSTILE = "'; DROP TABLE predictions; --"


def count_rows(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(table))


# -- writes and reads --------------------------------------------------------------------------


def test_round_trip_keeps_every_field(store):
    record = make_record(
        "round-trip",
        label="tabby, tabby cat",
        score=0.8125,
        model_version="3",
        latency_ms=41.25,
        source="api",
        user_agent="curl/8.5 \"quoted\" 'single'",
        metadata={"filename_shown": "Holiday 2024 ☀.jpg", "batch": [1, 2]},
        created_at=BASE_TIME,
    )
    prediction_id = store.log_prediction(record)

    logged = store.get_prediction(prediction_id)
    assert logged["sha256"] == record.sha256
    assert (logged["byte_size"], logged["width"], logged["height"], logged["format"]) == (
        record.byte_size,
        64,
        48,
        "JPEG",
    )
    assert (logged["model_name"], logged["model_version"]) == ("tiny-cnn", "3")
    assert logged["top1_label"] == "tabby, tabby cat" and logged["top1_score"] == 0.8125
    assert logged["top_k"] == [{"label": "tabby, tabby cat", "score": 0.8125}, {"label": "other", "score": 0.09375}]
    assert logged["latency_ms"] == 41.25
    assert logged["source"] == "api" and logged["session_id"] == "session-1"
    assert logged["user_agent"] == record.user_agent
    assert logged["metadata"] == record.metadata
    assert logged["created_at"] == BASE_TIME.isoformat()
    assert logged["stored_path"] is None and logged["feedback"] == []
    assert store.get_prediction(prediction_id + 1000) is None


def test_top1_is_the_highest_score_whatever_the_order_given(store):
    prediction_id = store.log_prediction(make_record(top_k=[("dog", 0.25), ("cat", 0.7), ("bird", 0.05)]))
    logged = store.get_prediction(prediction_id)
    assert (logged["top1_label"], logged["top1_score"]) == ("cat", 0.7)
    assert [entry["label"] for entry in logged["top_k"]] == ["cat", "dog", "bird"]


def test_optional_fields_are_stored_as_null(store):
    prediction_id = store.log_prediction(make_record(session_id=None, user_agent=None, metadata=None))
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.select(predictions_table.c.session_id, predictions_table.c.metadata.is_(None)).where(
                predictions_table.c.id == prediction_id
            )
        ).one()
    assert row == (None, True)


def test_uploads_are_deduplicated_by_hash(store):
    first = store.log_prediction(make_record("same-image", model_version="1"))
    second = store.log_prediction(make_record("same-image", model_version="2"))
    other = store.log_prediction(make_record("other-image"))

    assert len({first, second, other}) == 3
    assert count_rows(store, uploads_table) == 2
    assert count_rows(store, predictions_table) == 3
    assert store.get_prediction(first)["upload_id"] == store.get_prediction(second)["upload_id"]
    assert store.get_prediction(other)["upload_id"] != store.get_prediction(first)["upload_id"]


def test_feedback_is_recorded_and_listed_with_the_prediction(store):
    prediction_id = store.log_prediction(make_record(label="cat"))
    store.add_feedback(prediction_id, corrected_label="dog", note="it's a puppy; clearly")
    store.add_feedback(prediction_id, wrong=False)

    feedback = store.get_prediction(prediction_id)["feedback"]
    assert [(row["corrected_label"], row["wrong"], row["note"]) for row in feedback] == [
        ("dog", True, "it's a puppy; clearly"),
        (None, False, ""),
    ]
    with pytest.raises(StoreError, match="no prediction with id 999999"):
        store.add_feedback(999999, corrected_label="dog")
    assert count_rows(store, feedback_table) == 2


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as connection:
            connection.execute(
                feedback_table.insert().values(prediction_id=424242, wrong=True, note="", created_at=BASE_TIME)
            )


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"source": "web"}, "source 'web' is not one of app, api, cli"),
        ({"sha256": "../../etc/passwd"}, "sha256 must be 64 lowercase hex digits"),
        ({"top_k": [("cat", 1.5)]}, "score 1.5 for label 'cat' is not a probability"),
        ({"top_k": []}, "top_k is empty"),
        ({"latency_ms": float("nan")}, "latency_ms nan is not a non-negative number"),
        ({"model_name": "m" * 200}, "model_name is 200 characters long; at most 128 fit"),
        ({"metadata": {"when": object()}}, "metadata is not JSON-serialisable"),
    ],
)
def test_invalid_records_are_refused_with_the_reason(store, overrides, reason):
    record = make_record(**overrides)
    with pytest.raises(StoreError, match="Prediction not logged: " + reason.replace("(", r"\(")):
        store.log_prediction(record)
    prediction_id, warning = store.log_prediction_safely(record)
    assert prediction_id is None and warning.startswith("Prediction not logged: " + reason)
    assert count_rows(store, predictions_table) == 0


def test_hostile_filter_values_are_data_not_sql(store):
    store.log_prediction(make_record(label="cat's toy", model_name="m'1", score=0.9))
    store.log_prediction(make_record(label="cat's toy", model_name="m'1", score=0.4))
    store.log_prediction(make_record(label=HOSTILE, model_name=HOSTILE, source="cli"))
    store.log_prediction(make_record(label="dog"))

    assert stats.summary(store, stats.Filters(labels=["cat's toy"])).predictions == 2
    assert stats.summary(store, stats.Filters(model_names=["m'1"], max_confidence=0.5)).predictions == 1
    assert stats.summary(store, stats.Filters(labels=[HOSTILE], model_names=[HOSTILE])).predictions == 1
    assert stats.summary(store, stats.Filters(sources=[HOSTILE])).predictions == 0
    assert stats.summary(store, stats.Filters(model_versions=["1' OR '1'='1"])).predictions == 0
    assert stats.summary(store, stats.Filters(labels=["%"], model_names=["_"])).predictions == 0
    assert stats.by_label(store, stats.Filters(labels=[HOSTILE, "dog"]))["label"].tolist() == [HOSTILE, "dog"]
    assert len(stats.review_queue(store, stats.Filters(labels=[HOSTILE]), max_confidence=1.0)) == 1
    assert len(stats.export_rows(store, stats.Filters(model_names=[HOSTILE]))) == 1
    assert count_rows(store, predictions_table) == 4  # still there


def test_a_training_run_status_is_inserted_then_updated_in_place(store):
    created = "2026-11-25T10:00:00+00:00"
    store.record_run_status({"run_id": "20261125-100000-cifar-ab12", "name": "cifar", "state": "queued",
                             "dataset": "cifar10", "backbone": "mobilenet_v2", "epoch": 0, "total_epochs": 8,
                             "created": created, "updated": created, "pid": 123})
    store.record_run_status({"run_id": "20261125-100000-cifar-ab12", "name": "cifar", "state": "completed",
                             "epoch": 8, "total_epochs": 8, "model_ref": "cifar@1", "created": created,
                             "updated": "2026-11-25T12:30:00+01:00", "message": "Saved cifar@1."})
    store.record_run_status({"run_id": "20261125-110000-x-cd34", "state": "failed", "error": "boom",
                             "updated": "not a time"})
    newest, first = store.run_statuses()
    assert (newest["run_id"], newest["name"], newest["state"], newest["error"]) == (
        "20261125-110000-x-cd34", "20261125-110000-x-cd34", "failed", "boom")
    assert newest["updated_at"] is not None  # an unreadable time becomes "now", never a lost row
    assert (first["state"], first["epoch"], first["model_ref"], first["message"]) == (
        "completed", 8, "cifar@1", "Saved cifar@1.")
    assert first["dataset"] is None  # the status written last is what the row says
    assert first["created_at"] == datetime(2026, 11, 25, 10, 0) and first["updated_at"] == datetime(2026, 11, 25, 11, 30)


# -- concurrency -------------------------------------------------------------------------------


def test_eight_threads_write_4000_predictions(store):
    threads, per_thread, distinct_images = 8, 500, 50
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def write(worker: int) -> None:
        try:
            start.wait()
            for index in range(per_thread):
                store.log_prediction(make_record(index % distinct_images, source="api", metadata={"thread": worker}))
        except BaseException as exc:  # noqa: BLE001 - surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(worker,)) for worker in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert not errors, errors[:3]
    assert count_rows(store, predictions_table) == threads * per_thread
    assert count_rows(store, uploads_table) == distinct_images


def test_a_store_that_created_the_file_keeps_writing_visibly_while_others_come_and_go(tmp_path):
    # Regression: a migration lock that opened and closed the database file itself dropped the
    # creating process's SQLite locks; the next process to close a connection then thought it was
    # the last one and removed the WAL, and the creator's later writes vanished.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    context = multiprocessing.get_context("spawn")
    requests, replies = context.Queue(), context.Queue()
    creator = context.Process(target=write_on_request_worker, args=(url, requests, replies))
    creator.start()
    try:
        for written in range(1, 6):
            requests.put("write")
            assert replies.get(timeout=60) == written
            with Store(url) as reader:  # opening and closing another process's store each time
                assert reader.count_predictions() == written
    finally:
        requests.put("stop")
        creator.join(timeout=60)
    assert creator.exitcode == 0


def test_four_processes_open_a_fresh_database_and_write_4000_predictions(database_url):
    processes, per_process, distinct_images = 4, 1000, 40
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    children = [
        context.Process(
            target=write_predictions_worker, args=(database_url, worker, per_process, distinct_images, barrier)
        )
        for worker in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)

    assert [child.exitcode for child in children] == [0] * processes  # a child's traceback is in stderr
    with Store(database_url) as store:
        assert count_rows(store, predictions_table) == processes * per_process
        assert count_rows(store, uploads_table) == distinct_images
        assert stats.summary(store).predictions == processes * per_process


# -- faults ------------------------------------------------------------------------------------


def test_read_only_database_file_gives_a_clear_warning_and_keeps_the_prediction(tmp_path, caplog):
    path = tmp_path / "data" / "imgrec.db"
    with Store(f"sqlite:///{path}") as writable:
        writable.log_prediction(make_record("before"))
    # Root ignores chmod, so ask SQLite itself for a read-only handle: writes then really fail.
    read_only = Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with pytest.raises(StoreError, match="the database file is read-only"):
            read_only.log_prediction(make_record("after"))

        caplog.set_level(logging.WARNING, logger="imgrec.predlog.store")
        prediction_id, warning = read_only.log_prediction_safely(make_record("after"))
        assert prediction_id is None
        assert warning == f"Prediction not logged: the database file is read-only ({path})."
        assert warning in caplog.text
        # Still readable: the analytics work on a read-only copy.
        assert stats.summary(read_only).predictions == 1
        with pytest.raises(StoreError, match="Feedback not saved: the database file is read-only"):
            read_only.add_feedback(1, corrected_label="dog")
    finally:
        read_only.close()


def test_a_missing_data_directory_is_created(tmp_path):
    settings = make_settings(tmp_path / "does" / "not" / "exist")
    assert not settings.data_dir.exists()
    with open_store(settings) as store:
        store.log_prediction(make_record())
    assert (settings.data_dir / "imgrec.db").is_file()


def test_an_unopenable_database_file_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    expected = r"Cannot open the prediction log: cannot create the folder .*data/sub \(Not a directory\)"
    with pytest.raises(StoreError, match=expected):
        Store(f"sqlite:///{blocker / 'sub' / 'imgrec.db'}")


def test_unsupported_url_is_refused():
    with pytest.raises(StoreError, match=r"Unsupported database URL 'mysql://u:\*\*\*@h/d'"):
        Store("mysql://u:secret@h/d")
    with pytest.raises(StoreError, match="the database driver 'psycopg2' is not installed"):
        Store("postgresql+psycopg2://u@h/d")


# -- migrations --------------------------------------------------------------------------------


def test_a_database_at_the_first_revision_is_upgraded_without_data_loss(database_url):
    from alembic import command

    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = sa.create_engine(database_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        config.attributes.pop("connection")
        # Rows as a 0001-era imgrec wrote them (ids from the database, as any real writer's).
        connection.execute(
            sa.text(
                "INSERT INTO uploads (sha256, byte_size, width, height, format, stored_path, created_at) "
                "VALUES (:sha, 2048, 640, 480, 'PNG', NULL, :at)"
            ),
            {"sha": fake_sha256("old"), "at": BASE_TIME},
        )
        for score in (0.91, 0.31):
            connection.execute(
                sa.text(
                    "INSERT INTO predictions (upload_id, model_name, model_version, top_k, top1_label, "
                    "top1_score, latency_ms, created_at, source, session_id, user_agent, metadata) VALUES "
                    "(1, 'old-model', '1', :top_k, 'cat', :score, 20.0, :at, 'cli', 's', NULL, NULL)"
                ),
                {"top_k": f'[{{"label": "cat", "score": {score}}}]', "score": score, "at": BASE_TIME},
            )
    with engine.connect() as connection:
        assert "feedback" not in sa.inspect(connection).get_table_names()
    engine.dispose()

    with Store(database_url) as store:
        assert store.get_prediction(1)["top_k"] == [{"label": "cat", "score": 0.91}]
        assert count_rows(store, predictions_table) == 2 and count_rows(store, uploads_table) == 1
        store.add_feedback(2, corrected_label="dog")
        assert stats.summary(store).flagged == 1
        assert stats.frame_to_records(stats.by_day(store)) == [
            {"day": BASE_TIME.date().isoformat(), "model_name": "old-model", "model_version": "1", "predictions": 2}
        ]
        new_id = store.log_prediction(make_record("new", created_at=BASE_TIME + timedelta(days=1)))
        assert new_id == 3
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == head_revision()


def test_migrations_build_exactly_the_schema_the_code_declares(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_database_from_a_newer_imgrec_is_refused_clearly(tmp_path):
    url = f"sqlite:///{tmp_path / 'imgrec.db'}"
    Store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema revision 9999 is unknown to this imgrec"):
        Store(url)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'imgrec.db'}") as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# -- kept uploads ------------------------------------------------------------------------------


def image_record(content: bytes, **overrides) -> PredictionRecord:
    return make_record(
        sha256=hashlib.sha256(content).hexdigest(), byte_size=len(content), image_bytes=content, **overrides
    )


@pytest.fixture
def keeping_store(tmp_path):
    settings = make_settings(tmp_path, keep_uploads=True)
    with open_store(settings) as store:
        yield store


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def test_kept_uploads_are_named_by_hash_whatever_the_user_called_them(keeping_store, tmp_path):
    content = b"\xff\xd8\xff" + os.urandom(64)
    sha = hashlib.sha256(content).hexdigest()
    hostile_name = "../../etc/passwd.jpg"
    prediction_id = keeping_store.log_prediction(image_record(content, metadata={"filename": hostile_name}))

    stored_path = keeping_store.get_prediction(prediction_id)["stored_path"]
    assert stored_path == f"{sha[:2]}/{sha}.jpg"
    kept = keeping_store.upload_file(stored_path)
    assert kept.read_bytes() == content
    assert kept.resolve().is_relative_to((tmp_path / "data" / "uploads").resolve())
    assert files_under(tmp_path / "data" / "uploads") == [kept]
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "etc" / "passwd.jpg").exists()


def test_a_kept_upload_is_written_once_and_its_retention_clock_restarts(keeping_store):
    content = b"\x89PNG" + os.urandom(32)
    first = keeping_store.log_prediction(image_record(content, format="PNG"))
    kept = keeping_store.upload_file(keeping_store.get_prediction(first)["stored_path"])
    assert kept.suffix == ".png"
    os.utime(kept, (time.time() - 86400 * 10, time.time() - 86400 * 10))

    second = keeping_store.log_prediction(image_record(content, format="PNG"))
    assert keeping_store.get_prediction(second)["stored_path"] == keeping_store.get_prediction(first)["stored_path"]
    assert time.time() - kept.stat().st_mtime < 60
    assert len(files_under(keeping_store.uploads_dir)) == 1


def test_bytes_that_do_not_match_the_hash_are_not_kept(keeping_store):
    record = image_record(b"real bytes")
    record.image_bytes = b"something else"
    with pytest.raises(StoreError, match="image_bytes do not match the record's sha256"):
        keeping_store.log_prediction(record)
    assert files_under(keeping_store.uploads_dir) == []


def test_uploads_are_not_kept_unless_asked(tmp_path):
    with open_store(make_settings(tmp_path)) as store:
        prediction_id = store.log_prediction(image_record(b"not kept"))
        assert store.get_prediction(prediction_id)["stored_path"] is None
    assert not (tmp_path / "data" / "uploads").exists()


def test_prune_deletes_old_uploads_and_forgets_their_paths(keeping_store):
    old_id = keeping_store.log_prediction(image_record(b"old image"))
    new_id = keeping_store.log_prediction(image_record(b"new image"))
    old_file = keeping_store.upload_file(keeping_store.get_prediction(old_id)["stored_path"])
    new_file = keeping_store.upload_file(keeping_store.get_prediction(new_id)["stored_path"])
    forty_days_ago = time.time() - 40 * 86400
    os.utime(old_file, (forty_days_ago, forty_days_ago))
    leftover = old_file.parent / ".interrupted.part"
    leftover.write_bytes(b"half")
    os.utime(leftover, (forty_days_ago, forty_days_ago))
    not_ours = old_file.parent / "notes.txt"
    not_ours.write_text("someone else's")
    os.utime(not_ours, (forty_days_ago, forty_days_ago))

    assert keeping_store.prune_uploads(older_than_days=30) == 1

    assert not old_file.exists() and not leftover.exists()
    assert new_file.exists() and not_ours.exists()
    assert keeping_store.get_prediction(old_id)["stored_path"] is None
    assert keeping_store.get_prediction(new_id)["stored_path"] is not None
    assert keeping_store.prune_uploads(older_than_days=30) == 0


def _age_kept_upload(store, prediction_id: int, days: float) -> Path:
    kept = store.upload_file(store.get_prediction(prediction_id)["stored_path"])
    then = time.time() - days * 86400
    os.utime(kept, (then, then))
    return kept


@pytest.mark.parametrize(("keep", "days", "pruned"), [(True, 30, 1), (True, 0, 0), (False, 30, 0)])
def test_the_retention_setting_decides_what_start_up_pruning_deletes(tmp_path, keep, days, pruned):
    writing = make_settings(tmp_path, keep_uploads=True)
    with open_store(writing) as store:
        old = _age_kept_upload(store, store.log_prediction(image_record(b"old image")), days=40)
        recent = _age_kept_upload(store, store.log_prediction(image_record(b"recent image")), days=5)
        settings = make_settings(tmp_path, keep_uploads=keep, upload_retention_days=days)
        assert prune_expired_uploads(store, settings) == pruned
    assert old.exists() is (pruned == 0) and recent.exists()


def test_start_up_pruning_logs_a_failure_instead_of_raising(tmp_path, caplog):
    settings = make_settings(tmp_path, keep_uploads=True)
    with Store(f"sqlite:///{tmp_path / 'log.db'}") as store:  # no uploads directory
        assert prune_expired_uploads(store, settings) == 0
    assert "Old uploads were not pruned" in caplog.text


# -- analytics: every aggregate against an independent Python computation ----------------------

MODELS = (("tiny-cnn", "1"), ("tiny-cnn", "2"), ("imagenet-mobilenetv2", ""))
LABELS = ("cat", "dog", "bird", "cat's toy", "tabby, tabby cat", HOSTILE)
SEED_COUNT = 240
# Scores that sit exactly on bin edges, at the extremes and at the uncertainty threshold.
EDGE_SCORES = (0.0, 1.0, 0.5, 0.3, 0.1, 0.7, 0.999, 0.0005)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request, tmp_path_factory):
    """A small log with known contents, written through ``log_prediction``; and the rows as Python dicts."""
    import numpy as np

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('seeded') / 'imgrec.db'}"
        drop = None
    else:
        cluster = request.getfixturevalue("postgres_cluster")
        name = cluster.create_database()
        url, drop = cluster.url(name), lambda: cluster.drop_database(name)
    rng = np.random.default_rng(7)
    rows = []
    with Store(url) as store:
        for index in range(SEED_COUNT):
            model_name, model_version = MODELS[index % 3]
            late = index >= SEED_COUNT // 2
            # The later half drifts: more dogs, less confident.
            label = LABELS[int(rng.integers(0, len(LABELS)))] if not late or index % 3 else "dog"
            if index < len(EDGE_SCORES):
                score = EDGE_SCORES[index]
            else:
                score = float(rng.beta(5, 2) if not late else rng.beta(2, 2))
            row = dict(
                seed=f"image-{index % 170}",
                model_name=model_name,
                model_version=model_version,
                label=label,
                score=score,
                latency_ms=round(float(rng.lognormal(3, 0.5)), 3),
                source=("app", "api", "cli")[index % 3 if index % 7 else 1],
                created_at=BASE_TIME + timedelta(minutes=37 * index),
            )
            row["id"] = store.log_prediction(
                make_record(
                    row["seed"],
                    top_k=[(label, score)],
                    model_name=model_name,
                    model_version=model_version,
                    latency_ms=row["latency_ms"],
                    source=row["source"],
                    created_at=row["created_at"],
                )
            )
            row["flagged"], row["corrected_label"], row["note"] = False, None, None
            rows.append(row)
        for row in rows[5::11]:
            store.add_feedback(row["id"], corrected_label="bird", note=f"seen by reviewer {row['id']}")
            row.update(flagged=True, corrected_label="bird", note=f"seen by reviewer {row['id']}")
        for row in rows[7::13]:
            store.add_feedback(row["id"], wrong=False, note="looks right")  # latest feedback, not a flag
            row.update(corrected_label=None, note="looks right")
        yield store, rows
    if drop:
        drop()


FILTER_CASES = {
    "none": (stats.Filters(), lambda row: True),
    "model version": (
        stats.Filters(model_names=["tiny-cnn"], model_versions=["2"]),
        lambda row: row["model_version"] == "2",
    ),
    "labels": (stats.Filters(labels=["cat's toy", HOSTILE]), lambda row: row["label"] in ("cat's toy", HOSTILE)),
    "sources": (stats.Filters(sources=["api", "cli"]), lambda row: row["source"] in ("api", "cli")),
    "confidence": (
        stats.Filters(min_confidence=0.3, max_confidence=0.7),
        lambda row: 0.3 <= row["score"] <= 0.7,
    ),
    "dates as days": (
        stats.Filters(date_from=BASE_TIME.date() + timedelta(days=1), date_to=BASE_TIME.date() + timedelta(days=2)),
        lambda row: timedelta(days=1) <= row["created_at"].date() - BASE_TIME.date() <= timedelta(days=2),
    ),
    "datetimes, half-open": (
        stats.Filters(date_from=BASE_TIME + timedelta(hours=5), date_to=BASE_TIME + timedelta(hours=50)),
        lambda row: BASE_TIME + timedelta(hours=5) <= row["created_at"] < BASE_TIME + timedelta(hours=50),
    ),
    "everything": (
        stats.Filters(
            date_from=BASE_TIME,
            date_to=BASE_TIME.date() + timedelta(days=3),
            model_names=["tiny-cnn", "imagenet-mobilenetv2"],
            sources=["app", "api"],
            min_confidence=0.2,
        ),
        lambda row: row["created_at"].date() <= BASE_TIME.date() + timedelta(days=3)
        and row["model_name"] in ("tiny-cnn", "imagenet-mobilenetv2")
        and row["source"] in ("app", "api")
        and row["score"] >= 0.2,
    ),
    "matches nothing": (stats.Filters(labels=["zebra"]), lambda row: False),
}


def linear_percentile(values, quantile):
    import numpy as np

    return float(np.percentile(values, quantile * 100)) if values else None


@pytest.mark.parametrize("case", FILTER_CASES)
def test_summary_matches_python(seeded, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    kept = [row for row in rows if keep(row)]
    latencies = [row["latency_ms"] for row in kept]

    result = stats.summary(store, filters, uncertain_threshold=0.5)

    assert result.predictions == len(kept)
    assert result.distinct_images == len({row["seed"] for row in kept})
    assert result.flagged == sum(row["flagged"] for row in kept)
    if kept:
        assert result.mean_confidence == pytest.approx(sum(row["score"] for row in kept) / len(kept))
        assert result.uncertain_share == pytest.approx(sum(row["score"] < 0.5 for row in kept) / len(kept))
        assert result.latency_p50_ms == pytest.approx(linear_percentile(latencies, 0.5))
        assert result.latency_p95_ms == pytest.approx(linear_percentile(latencies, 0.95))
    else:
        assert (result.mean_confidence, result.uncertain_share, result.latency_p50_ms) == (None, None, None)
    assert result.to_dict()["predictions"] == len(kept)


@pytest.mark.parametrize("case", ["none", "sources", "matches nothing"])
def test_latency_percentiles_match_python(seeded, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    latencies = [row["latency_ms"] for row in rows if keep(row)]
    quantiles = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)

    result = stats.latency_percentiles(store, filters, quantiles)

    assert list(result) == ["p0", "p50", "p90", "p95", "p99", "p100"]
    for quantile, value in zip(quantiles, result.values()):
        expected = linear_percentile(latencies, quantile)
        assert value == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("case", ["none", "confidence", "dates as days"])
def test_by_model_matches_python(seeded, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    kept = [row for row in rows if keep(row)]

    frame = stats.by_model(store, filters, uncertain_threshold=0.6)

    expected = []
    for model_name, model_version in sorted({(row["model_name"], row["model_version"]) for row in kept}):
        group = [row for row in kept if (row["model_name"], row["model_version"]) == (model_name, model_version)]
        expected.append(
            {
                "model_name": model_name,
                "model_version": model_version,
                "predictions": len(group),
                "mean_confidence": pytest.approx(sum(row["score"] for row in group) / len(group)),
                "mean_latency_ms": pytest.approx(sum(row["latency_ms"] for row in group) / len(group)),
                "uncertain_share": pytest.approx(sum(row["score"] < 0.6 for row in group) / len(group)),
                "first_seen": min(row["created_at"] for row in group).isoformat(),
                "last_seen": max(row["created_at"] for row in group).isoformat(),
            }
        )
    assert stats.frame_to_records(frame) == expected


@pytest.mark.parametrize("case", ["none", "model version", "matches nothing"])
def test_by_label_matches_python(seeded, case):
    from collections import Counter

    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    kept = [row for row in rows if keep(row)]
    counts = Counter(row["label"] for row in kept)
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:4]

    frame = stats.by_label(store, filters, limit=4)

    assert frame["label"].tolist() == [label for label, _ in top]
    assert frame["predictions"].tolist() == [count for _, count in top]
    assert frame["share"].tolist() == pytest.approx([count / len(kept) for _, count in top])
    for label, mean in zip(frame["label"], frame["mean_confidence"]):
        scores = [row["score"] for row in kept if row["label"] == label]
        assert mean == pytest.approx(sum(scores) / len(scores))


@pytest.mark.parametrize("case", ["none", "labels", "datetimes, half-open"])
def test_by_day_matches_python(seeded, case):
    from collections import Counter

    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    counts = Counter(
        (row["created_at"].date().isoformat(), row["model_name"], row["model_version"]) for row in rows if keep(row)
    )

    frame = stats.by_day(store, filters)

    assert [tuple(record.values()) for record in stats.frame_to_records(frame)] == [
        (*key, counts[key]) for key in sorted(counts)
    ]


@pytest.mark.parametrize("bins", [10, 7, 1])
@pytest.mark.parametrize("case", ["none", "sources"])
def test_confidence_histogram_matches_python(seeded, bins, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    expected = [0] * bins
    for row in rows:
        if keep(row):
            expected[min(int(row["score"] * bins), bins - 1)] += 1

    frame = stats.confidence_histogram(store, filters, bins=bins)

    assert frame["predictions"].tolist() == expected
    assert frame["lower"].tolist() == pytest.approx([index / bins for index in range(bins)])
    assert frame["upper"].iloc[-1] == 1.0


@pytest.mark.parametrize("case", ["none", "model version", "dates as days", "datetimes, half-open", "matches nothing"])
def test_latency_over_time_matches_python(seeded, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    days: dict[str, list[float]] = {}
    for row in rows:
        if keep(row):
            days.setdefault(row["created_at"].date().isoformat(), []).append(row["latency_ms"])

    frame = stats.latency_over_time(store, filters)

    assert frame["day"].tolist() == sorted(days)
    for record in stats.frame_to_records(frame):
        latencies = days[record["day"]]
        assert record["predictions"] == len(latencies)
        assert record["mean_latency_ms"] == pytest.approx(sum(latencies) / len(latencies))
        assert record["p50_latency_ms"] == pytest.approx(linear_percentile(latencies, 0.5))
        assert record["p95_latency_ms"] == pytest.approx(linear_percentile(latencies, 0.95))


@pytest.mark.parametrize("case", ["none", "sources", "matches nothing"])
def test_review_queue_matches_python(seeded, case):
    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    candidates = [row for row in rows if keep(row) and (row["flagged"] or row["score"] < 0.4)]
    expected = sorted(candidates, key=lambda row: (not row["flagged"], row["score"], row["id"]))[:15]

    frame = stats.review_queue(store, filters, max_confidence=0.4, limit=15)

    records = stats.frame_to_records(frame)
    assert [record["prediction_id"] for record in records] == [row["id"] for row in expected]
    assert [record["flagged"] for record in records] == [row["flagged"] for row in expected]
    assert [record["corrected_label"] for record in records] == [row["corrected_label"] for row in expected]
    assert [record["note"] for record in records] == [row["note"] for row in expected]
    assert [record["sha256"] for record in records] == [fake_sha256(row["seed"]) for row in expected]
    assert [record["top1_score"] for record in records] == [row["score"] for row in expected]
    assert [record["top_k"] for record in records] == [
        [{"label": row["label"], "score": row["score"]}] for row in expected
    ]
    assert all(record["stored_path"] is None for record in records)


@pytest.mark.parametrize("case", ["none", "confidence"])
def test_export_pages_cover_every_filtered_row_once(seeded, case):
    import json

    import pandas as pd

    store, rows = seeded
    filters, keep = FILTER_CASES[case]
    expected_ids = [row["id"] for row in rows if keep(row)]

    pages = list(stats.iter_export(store, filters, page_size=50))
    exported = pd.concat(pages)

    assert all(len(page) <= 50 for page in pages) and len(pages) == -(-len(expected_ids) // 50)
    assert exported["prediction_id"].tolist() == expected_ids
    assert list(exported.columns) == list(stats.EXPORT_COLUMNS)
    first = next(row for row in rows if row["id"] == expected_ids[0])
    first_exported = exported.iloc[0]
    assert json.loads(first_exported["top_k"])[0] == {"label": first["label"], "score": first["score"]}
    assert first_exported["sha256"] == fake_sha256(first["seed"])
    second_page = stats.export_rows(store, filters, limit=50, after_id=int(pages[0]["prediction_id"].iloc[-1]))
    assert second_page["prediction_id"].tolist() == expected_ids[50:100]


def reference_drift(rows, window_a, window_b, bins, keep=lambda row: True):
    """PSI and KS straight from the definitions, on the raw rows."""
    import math
    from collections import Counter

    from scipy.stats import ks_2samp

    a = [row for row in rows if keep(row) and window_a[0] <= row["created_at"] < window_a[1]]
    b = [row for row in rows if keep(row) and window_b[0] <= row["created_at"] < window_b[1]]

    def psi(expected_counts, actual_counts):
        total_expected, total_actual = sum(expected_counts), sum(actual_counts)
        value = 0.0
        for expected_count, actual_count in zip(expected_counts, actual_counts):
            e = max(expected_count / total_expected, stats.PSI_EPSILON)
            f = max(actual_count / total_actual, stats.PSI_EPSILON)
            value += (f - e) * math.log(f / e)
        return value

    def histogram(group, bin_count):
        counts = [0] * bin_count
        for row in group:
            counts[min(int(row["score"] * bin_count), bin_count - 1)] += 1
        return counts

    labels = sorted({row["label"] for row in a + b})
    label_a, label_b = Counter(row["label"] for row in a), Counter(row["label"] for row in b)
    fine_a, fine_b = histogram(a, stats.KS_BINS), histogram(b, stats.KS_BINS)
    cumulative_a = [sum(fine_a[: index + 1]) / len(a) for index in range(stats.KS_BINS)]
    cumulative_b = [sum(fine_b[: index + 1]) / len(b) for index in range(stats.KS_BINS)]
    return {
        "count_a": len(a),
        "count_b": len(b),
        "confidence_psi": psi(histogram(a, bins), histogram(b, bins)),
        "label_psi": psi([label_a[label] for label in labels], [label_b[label] for label in labels]),
        "binned_ks": max(abs(x - y) for x, y in zip(cumulative_a, cumulative_b)),
        "exact_ks": ks_2samp([row["score"] for row in a], [row["score"] for row in b]),
        "mean_a": sum(row["score"] for row in a) / len(a),
    }


def test_drift_matches_python_and_sees_the_shift(seeded):
    store, rows = seeded
    middle = rows[SEED_COUNT // 2]["created_at"]
    window_a = (BASE_TIME, middle)
    window_b = (middle, rows[-1]["created_at"] + timedelta(seconds=1))
    expected = reference_drift(rows, window_a, window_b, bins=10)

    report = stats.drift(store, window_a, window_b, bins=10, label_limit=50)

    assert (report.predictions_a, report.predictions_b) == (expected["count_a"], expected["count_b"]) == (120, 120)
    assert report.confidence_psi == pytest.approx(expected["confidence_psi"])
    assert report.label_psi == pytest.approx(expected["label_psi"])
    assert report.ks_statistic == pytest.approx(expected["binned_ks"])
    assert report.ks_statistic == pytest.approx(expected["exact_ks"].statistic, abs=0.02)
    assert report.mean_confidence_a == pytest.approx(expected["mean_a"])
    assert report.ks_pvalue < 0.01
    assert report.confidence_verdict == "major shift" and report.drifted
    assert report.label_shifts[0]["label"] == "dog"
    assert report.label_shifts[0]["share_b"] > report.label_shifts[0]["share_a"]
    assert report.to_dict()["verdict"] == report.verdict


def test_drift_of_a_window_against_itself_is_stable(seeded):
    store, rows = seeded
    window = (BASE_TIME.date(), BASE_TIME.date() + timedelta(days=10))
    report = stats.drift(store, window, window, filters=stats.Filters(sources=["app"]))
    assert report.confidence_psi == 0 and report.label_psi == 0 and report.ks_statistic == 0
    assert (report.verdict, report.drifted) == ("stable", False)
    assert report.window_a == ("2026-03-01T00:00:00", "2026-03-12T00:00:00")  # a date end includes its day


def test_drift_with_too_few_predictions_says_so(seeded):
    store, rows = seeded
    report = stats.drift(
        store,
        (BASE_TIME, BASE_TIME + timedelta(hours=2)),
        (BASE_TIME + timedelta(days=30), BASE_TIME + timedelta(days=31)),
    )
    assert report.predictions_b == 0 and report.confidence_psi is None
    assert (report.verdict, report.drifted) == ("not enough data", False)


def test_query_arguments_are_checked(seeded):
    store, _ = seeded
    with pytest.raises(StoreError, match="bins must be at least 1"):
        stats.confidence_histogram(store, bins=0)
    with pytest.raises(StoreError, match="Quantile 95 is outside"):
        stats.latency_percentiles(store, quantiles=(95,))


def test_model_filter_keeps_exactly_the_chosen_name_version_pairs(store):
    """a@1 and b@2 chosen: a@2 and b@1 must not come along (names and versions are not independent)."""
    expected = {}
    for index, (name, version) in enumerate((("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")) * 3):
        # A distinct score per pair, so a wrong mix shows in the mean too, not only in the count.
        score = {"a@1": 0.9, "a@2": 0.1, "b@1": 0.2, "b@2": 0.7}[f"{name}@{version}"]
        prediction_id = store.log_prediction(
            make_record(index, model_name=name, model_version=version, score=score,
                        created_at=BASE_TIME + timedelta(hours=index))
        )
        expected.setdefault((name, version), []).append(prediction_id)
    chosen = stats.Filters(models=[("a", "1"), ("b", "2")])
    wanted = sorted(expected[("a", "1")] + expected[("b", "2")])

    summary = stats.summary(store, chosen)
    assert summary.predictions == 6
    assert summary.mean_confidence == pytest.approx(0.8)
    models = stats.by_model(store, chosen)
    assert list(zip(models["model_name"], models["model_version"])) == [("a", "1"), ("b", "2")]
    assert sorted(stats.export_rows(store, chosen)["prediction_id"]) == wanted
    days = stats.by_day(store, chosen)
    assert set(zip(days["model_name"], days["model_version"])) == {("a", "1"), ("b", "2")}
    assert stats.latency_over_time(store, chosen)["predictions"].sum() == 6
    # Pairs are ANDed with the other model fields, like every filter.
    assert stats.summary(store, stats.Filters(models=[("a", "1"), ("b", "2")], model_versions=["2"])).predictions == 3
    assert stats.summary(store, stats.Filters(models=[("a", "2")])).predictions == 3
    assert stats.summary(store, stats.Filters(models=[("a", "3")])).predictions == 0
    # Name@version text and lists (as JSON gives them back) work too; a bare name is refused.
    assert stats.Filters(models=["a@1", ["b", "2"]]).models == (("a", "1"), ("b", "2"))
    with pytest.raises(StoreError, match="name, version"):
        stats.Filters(models=["a"])


def test_filters_accept_single_strings_and_are_hashable_values():
    filters = stats.Filters(labels="cat", sources=("app",), models=[("a", "1"), "b@2"])
    assert (filters.labels, filters.sources, filters.models) == (("cat",), ("app",), (("a", "1"), ("b", "2")))
    # Equal filters are one cache key on the Analytics page (st.cache_data hashes them).
    assert filters == stats.Filters(labels=["cat"], sources="app", models=["a@1", ("b", "2")])
    assert hash(filters) == hash(stats.Filters(labels=["cat"], sources="app", models=["a@1", ("b", "2")]))
