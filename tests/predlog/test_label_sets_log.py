"""A multi-label prediction's label set in the prediction log, on SQLite and PostgreSQL: migration 0007, the
write and its replay from the spool, and an empty set (no label found) kept as no rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from imgrec.predlog import spool
from imgrec.predlog.store import Store, alembic_config, prediction_labels_table
from tests.helpers.store_fixtures import make_record

pytest_plugins = ["tests.helpers.store_fixtures"]

STREET = [("person", 0.91, 0.5), ("bicycle", 0.62, 0.4)]
TOP_K = [("person", 0.91), ("bicycle", 0.62), ("car", 0.3)]


def multilabel_record(seed, label_set, **overrides):
    return make_record(seed, model_name="tiny-multilabel", top_k=TOP_K, label_set=label_set, **overrides)


def test_the_label_set_is_written_and_read_back(database_url):
    with Store(database_url) as store:
        street = store.log_prediction(multilabel_record("street", STREET))
        nothing = store.log_prediction(multilabel_record("empty", []))
        classifier = store.log_prediction(make_record("cat"))
        assert store.get_prediction(street)["label_set"] == [
            {"label": "person", "score": pytest.approx(0.91), "threshold": 0.5},
            {"label": "bicycle", "score": pytest.approx(0.62), "threshold": 0.4}]
        assert store.get_prediction(nothing)["label_set"] == []
        assert store.get_prediction(nothing)["top1_label"] == "person"  # the headline stays the best score
        assert store.get_prediction(classifier)["label_set"] == []


def test_a_spooled_label_set_survives_the_replay():
    record = multilabel_record("spooled", STREET, key="a" * 32)
    again = spool._from_json(spool._to_json(record))
    assert [tuple(item) for item in again.label_set] == STREET


def test_migration_0008_adds_the_table_and_goes_back(database_url):
    if database_url.startswith("sqlite"):
        from pathlib import Path

        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = sa.create_engine(database_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        assert "prediction_labels" not in sa.inspect(connection).get_table_names()
    engine.dispose()
    with Store(database_url) as store:  # opening migrates to head
        prediction_id = store.log_prediction(multilabel_record("new", STREET))
        with store.engine.connect() as connection:
            rows = connection.execute(sa.select(prediction_labels_table.c.label)
                                      .where(prediction_labels_table.c.prediction_id == prediction_id)).scalars().all()
        assert sorted(rows) == ["bicycle", "person"]
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        assert "prediction_labels" not in sa.inspect(connection).get_table_names()
    engine.dispose()
