"""Export filtered prediction-log rows as CSV or Parquet, page by page (never every row in one query)."""

from __future__ import annotations

import io

from imgrec import stats
from imgrec.errors import StoreError

FORMATS = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


def export_predictions(store, filters: stats.Filters, fmt: str, page_size: int = 20_000) -> bytes:
    """The filtered rows in ``fmt`` ("csv" or "parquet"), built from ``stats.iter_export`` pages."""
    if fmt not in FORMATS:
        raise StoreError(f"Unsupported export format '{fmt}'. Expected one of: {', '.join(FORMATS)}.")
    pages = stats.iter_export(store, filters, page_size=page_size)
    if fmt == "csv":
        buffer = io.StringIO()
        wrote_header = False
        for page in pages:
            page.to_csv(buffer, index=False, header=not wrote_header)
            wrote_header = True
        if not wrote_header:
            buffer.write(",".join(stats.EXPORT_COLUMNS) + "\n")
        return buffer.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    writer = None
    for page in pages:
        table = pa.Table.from_pandas(_text_columns_as_strings(page), preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(buffer, table.schema)
        writer.write_table(table.cast(writer.schema))
    if writer is None:
        empty = stats.export_rows(store, filters, limit=1, after_id=2**62)
        pq.write_table(pa.Table.from_pandas(_text_columns_as_strings(empty), preserve_index=False), buffer)
    else:
        writer.close()
    return buffer.getvalue()


def _text_columns_as_strings(page):
    # A text column that is all empty on one page would otherwise get a "null" type and clash with the next.
    text = [name for name, dtype in page.dtypes.items() if dtype == object]
    return page.astype({name: "string" for name in text})
