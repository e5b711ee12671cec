"""Export filtered prediction-log rows as CSV or Parquet, page by page (never every row in one query)."""

from __future__ import annotations

import io
import itertools
from typing import TYPE_CHECKING, BinaryIO

from imgrec.core.errors import StoreError

if TYPE_CHECKING:
    from imgrec.predlog import stats

FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


# The app builds a download in memory: beyond this many rows it says so and points to the CLI,
# which streams any number of rows to a file.
APP_ROW_LIMIT = 200_000


def export_predictions(store, filters: stats.Filters, fmt: str, max_rows: int | None = None) -> bytes:
    """The filtered rows (the oldest ``max_rows`` when given) in ``fmt``, as bytes."""
    buffer = io.BytesIO()
    write_predictions(store, filters, fmt, buffer, max_rows=max_rows)
    return buffer.getvalue()


def write_predictions(store, filters: stats.Filters, fmt: str, destination: BinaryIO,
                      max_rows: int | None = None, page_size: int = 20_000) -> int:
    """Stream the filtered rows (oldest first, at most ``max_rows``) to a binary file; returns how many.

    Built from ``stats.iter_export`` pages, so memory stays one page whatever the log's size.
    """
    if fmt not in FORMATS:
        raise StoreError(f"Unsupported export format '{fmt}'. Expected one of: {', '.join(FORMATS)}.")
    from imgrec.predlog import stats  # SQLAlchemy and pandas load on first export, not with FORMATS

    pages = stats.iter_export(store, filters, page_size=page_size if max_rows is None else min(page_size, max_rows))
    first = next(pages, None)
    if first is None:  # no rows: still the columns (a CSV header, a typed Parquet schema)
        first = stats.export_rows(store, filters, limit=1, after_id=2**62)
    written, writer = 0, None
    for page in itertools.chain([first], pages):
        if max_rows is not None:
            page = page.iloc[: max_rows - written]
        if fmt == "csv":
            destination.write(page.to_csv(index=False, header=written == 0).encode())
        else:
            writer = _write_parquet_page(page, destination, writer)
        written += len(page)
        if max_rows is not None and written >= max_rows:
            break
    if writer is not None:
        writer.close()
    return written


def _write_parquet_page(page, destination, writer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_text_columns_as_strings(page), preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(destination, table.schema)
    writer.write_table(table.cast(writer.schema))
    return writer


def _text_columns_as_strings(page):
    # A text column that is all empty on one page would otherwise get a "null" type and clash with the next.
    text = [name for name, dtype in page.dtypes.items() if dtype == object]  # noqa: E721 - pandas' object dtype compares equal to the type
    return page.astype(dict.fromkeys(text, "string"))
