"""PostgreSQL-only checks. The shared store suite (tests/predlog/test_store.py) already runs on PostgreSQL too;
this adds what only PostgreSQL has: the throw-away cluster itself, percentile_cont agreeing with the
SQLite OFFSET path on identical data, a read-only server, an unreachable server."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from imgrec.core.errors import StoreError
from imgrec.predlog import stats
from imgrec.predlog.store import Store
from tests.helpers.store_fixtures import BASE_TIME, make_record

pytest_plugins = ["tests.helpers.store_fixtures"]  # postgres_cluster, postgres_url
pytestmark = pytest.mark.postgres


def test_the_cluster_is_private_unprivileged_and_socket_only(postgres_cluster, postgres_url):
    with Store(postgres_url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW listen_addresses").scalar() == ""
        data_directory = connection.exec_driver_sql("SHOW data_directory").scalar()
    if os.geteuid() == 0:
        assert os.stat(data_directory).st_uid != 0  # PostgreSQL refuses root; the fixture runs it as a user
    assert str(postgres_cluster.socket_dir) in postgres_url


@pytest.fixture(scope="module")
def twin_stores(postgres_cluster, tmp_path_factory):
    """The same 300 predictions in a SQLite file and in a PostgreSQL database."""
    import numpy as np

    database = postgres_cluster.create_database()
    sqlite_store = Store(f"sqlite:///{tmp_path_factory.mktemp('twin') / 'imgrec.db'}")
    postgres_store = Store(postgres_cluster.url(database))
    rng = np.random.default_rng(11)
    for index in range(300):
        record = make_record(
            f"twin-{index % 200}",
            top_k=[(("cat", "dog", "bird")[index % 3], float(rng.uniform(0.05, 1.0)))],
            model_version=("1", "2")[index // 150],
            latency_ms=float(rng.gamma(2.0, 10.0)),
            source=("app", "api", "cli")[index % 3],
            created_at=BASE_TIME + timedelta(minutes=29 * index),
        )
        first_id, second_id = sqlite_store.log_prediction(record), postgres_store.log_prediction(record)
        assert first_id == second_id
        if index % 17 == 0:
            sqlite_store.add_feedback(first_id, corrected_label="bird")
            postgres_store.add_feedback(second_id, corrected_label="bird")
    yield sqlite_store, postgres_store
    sqlite_store.close()
    postgres_store.close()
    postgres_cluster.drop_database(database)


def comparable(frame, approx=False):
    """Rows without feedback times (each store got its feedback at its own moment); floats approximate."""
    return [
        {
            key: pytest.approx(value) if approx and isinstance(value, float) else value
            for key, value in record.items()
            if key != "feedback_at"
        }
        for record in stats.frame_to_records(frame)
    ]


@pytest.mark.parametrize(
    "filters",
    [stats.Filters(), stats.Filters(model_versions=["2"], sources=["app", "cli"], min_confidence=0.25)],
    ids=["all", "filtered"],
)
def test_both_backends_give_the_same_answers(twin_stores, filters):
    sqlite_store, postgres_store = twin_stores
    assert stats.summary(postgres_store, filters).to_dict() == pytest.approx(
        stats.summary(sqlite_store, filters).to_dict()
    )
    quantiles = (0.01, 0.5, 0.95, 0.999)
    assert stats.latency_percentiles(postgres_store, filters, quantiles) == pytest.approx(
        stats.latency_percentiles(sqlite_store, filters, quantiles)
    )
    for query in (stats.by_model, stats.by_label, stats.by_day, stats.latency_over_time, stats.review_queue):
        assert comparable(query(postgres_store, filters)) == comparable(query(sqlite_store, filters), approx=True)
    assert comparable(stats.confidence_histogram(postgres_store, filters, bins=13)) == comparable(
        stats.confidence_histogram(sqlite_store, filters, bins=13), approx=True
    )
    assert comparable(stats.export_rows(postgres_store, filters, limit=40, after_id=20)) == comparable(
        stats.export_rows(sqlite_store, filters, limit=40, after_id=20), approx=True
    )
    middle = BASE_TIME + timedelta(days=3)
    windows = ((BASE_TIME, middle), (middle, BASE_TIME + timedelta(days=7)))
    sqlite_drift = stats.drift(sqlite_store, *windows, filters).to_dict()
    postgres_drift = stats.drift(postgres_store, *windows, filters).to_dict()
    assert postgres_drift.pop("label_shifts") == [pytest.approx(shift) for shift in sqlite_drift.pop("label_shifts")]
    assert postgres_drift == {
        key: pytest.approx(value) if isinstance(value, float) else value for key, value in sqlite_drift.items()
    }


def test_a_read_only_server_gives_a_clear_warning_and_keeps_the_prediction(postgres_url, caplog):
    Store(postgres_url).close()  # migrate while writable
    read_only_url = postgres_url + "&options=-c%20default_transaction_read_only%3Don"
    with Store(read_only_url) as store:
        caplog.set_level(logging.WARNING, logger="imgrec.predlog.store")
        prediction_id, warning = store.log_prediction_safely(make_record())
        assert prediction_id is None
        assert warning.startswith("Prediction not logged: the database server is read-only (postgresql+psycopg://")
        assert warning in caplog.text
        assert stats.summary(store).predictions == 0


def test_an_unreachable_server_is_named_in_the_error(tmp_path):
    url = f"postgresql+psycopg://postgres@/imgrec?host={tmp_path}"  # no server has a socket there
    with pytest.raises(StoreError, match=r"Cannot open the prediction log: cannot reach the database server at "):
        Store(url)


def test_concurrent_first_uploads_of_one_image_share_one_row(postgres_url):
    from concurrent.futures import ThreadPoolExecutor

    with Store(postgres_url) as store:
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda _: store.log_prediction(make_record("one image")), range(64)))
        assert len(set(ids)) == 64
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM uploads")) == 1
