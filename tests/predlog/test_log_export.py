"""Exporting the prediction log: streamed page by page, capped for the app, every row for the CLI."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from imgrec.core.errors import StoreError
from imgrec.predlog import stats
from imgrec.predlog.store import Store
from imgrec.predlog.tabular import export_predictions, write_predictions
from tests.helpers.store_fixtures import make_record


@pytest.fixture
def logged(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'log.db'}") as store:
        for index in range(25):
            store.log_prediction(make_record(index, label="cat" if index % 5 else "dog"))
        yield store


def read(data: bytes, fmt: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data)) if fmt == "csv" else pd.read_parquet(io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_small_pages_and_a_cap_give_the_oldest_rows_once(logged, fmt):
    destination = io.BytesIO()
    assert write_predictions(logged, stats.NO_FILTERS, fmt, destination, page_size=4) == 25
    every = read(destination.getvalue(), fmt)
    assert list(every["prediction_id"]) == list(range(1, 26))
    capped = read(export_predictions(logged, stats.NO_FILTERS, fmt, max_rows=7), fmt)
    assert list(capped["prediction_id"]) == list(range(1, 8))
    assert list(capped.columns) == list(every.columns) == list(stats.EXPORT_COLUMNS)
    dogs = read(export_predictions(logged, stats.Filters(labels=["dog"]), fmt), fmt)
    assert list(dogs["prediction_id"]) == [1, 6, 11, 16, 21]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_no_matching_rows_still_gives_the_columns(logged, fmt):
    empty = read(export_predictions(logged, stats.Filters(labels=["zebra"]), fmt), fmt)
    assert empty.empty and list(empty.columns) == list(stats.EXPORT_COLUMNS)


def test_an_unknown_format_is_refused_by_name(logged):
    with pytest.raises(StoreError, match="Unsupported export format 'xlsx'. Expected one of: csv, parquet."):
        export_predictions(logged, stats.NO_FILTERS, "xlsx")
