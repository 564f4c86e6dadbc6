"""Read a manifest (CSV or Parquet on any fsspec URL) into raw rows.

One row is one prediction. Nothing is interpreted here beyond decoding the file: columns
keep their names and values stay as they were written (CSV values are strings, Parquet
values keep their types). :mod:`fashn_prefect.run.validate` turns rows into typed inputs.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fashn_prefect.errors import ManifestError
from fashn_prefect.store.fs import filesystem
from fashn_prefect.store.rows import BatchedRows

ManifestFormat = Literal["csv", "parquet"]


@dataclass(frozen=True, eq=False)
class Manifest:
    """Decoded manifest rows, in file order: an Arrow table read from the file, seen as
    dicts through ``rows`` (values as written: CSV text, Parquet types; NaN is None)."""

    url: str
    format: ManifestFormat
    columns: tuple[str, ...]
    rows: Sequence[dict[str, Any]]

    @property
    def table(self) -> pa.Table | None:
        """The rows as an Arrow table, when they were read or given as one."""
        return self.rows.table if isinstance(self.rows, BatchedRows) else None


def detect_format(url: str) -> ManifestFormat:
    """Guess the manifest format from its file name."""
    name = url.lower().split("?", 1)[0]
    if name.endswith((".parquet", ".pq", ".parq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return "csv"
    raise ManifestError(
        f"Cannot tell the format of manifest {url!r}: name it *.csv or *.parquet, "
        "or pass the format explicitly."
    )


def read_manifest(
    url: str,
    *,
    format: ManifestFormat | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Read a CSV or Parquet manifest from ``url`` (local path, file://, memory://, s3://, ...)."""
    fmt = format or detect_format(url)
    fs, path = filesystem(url, **(storage_options or {}))
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        raise ManifestError(f"Manifest not found: {url}") from None
    except IsADirectoryError:
        raise ManifestError(f"Manifest is a directory, not a file: {url}") from None
    except Exception as exc:
        raise ManifestError(f"Cannot read manifest {url}: {type(exc).__name__}: {exc}") from None
    if not raw:
        raise ManifestError(f"Manifest is empty (0 bytes): {url}")
    rows, columns = _decode_csv(raw, url) if fmt == "csv" else _decode_parquet(raw, url)
    if not rows:
        raise ManifestError(f"Manifest has a header but no rows: {url}")
    return Manifest(url=url, format=fmt, columns=columns, rows=rows)


def _decode_csv(raw: bytes, url: str) -> tuple[BatchedRows, tuple[str, ...]]:
    if raw.startswith(b"\x1f\x8b"):
        import gzip

        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ManifestError(f"Manifest {url} is a corrupt gzip file: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"Manifest {url} is not valid UTF-8 (byte {exc.start}): save it as UTF-8 CSV."
        ) from None
    if "\x00" in text:
        raise ManifestError(f"Manifest {url} contains NUL bytes: it is not a text CSV file.")
    sep = "\t" if url.lower().endswith(".tsv") else ","
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    except csv.Error as exc:  # e.g. a lone carriage return inside the header
        raise ManifestError(f"Manifest {url} has an unreadable header row: {exc}") from None
    _check_columns(tuple(c.strip() for c in header), url)
    try:
        frame = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, sep=sep, engine="c"
        )
    except pd.errors.EmptyDataError:
        raise ManifestError(f"Manifest {url} has no header row.") from None
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"Manifest {url} is not a well-formed CSV: {detail}") from None
    columns = tuple(str(c).strip() for c in frame.columns)
    _check_columns(columns, url)
    frame.columns = list(columns)
    # Every column is text; a field missing from a short line is NaN in pandas, None here.
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return BatchedRows(_without_nan(table)), columns


def rows_manifest(rows: Any, url: str = "memory://rows") -> Manifest:
    """Rows held in memory as a manifest: a pandas DataFrame, a pyarrow Table, or an
    iterable of dicts (one per row; columns in first-seen order). Values keep their types,
    as in a Parquet manifest; ``url`` only names the rows in messages."""
    if isinstance(rows, Manifest):
        return rows
    if isinstance(rows, pd.DataFrame):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, pa.Table):
        columns = tuple(str(name).strip() for name in rows.column_names)
        _check_columns(columns, url)
        if rows.num_rows == 0:
            raise ManifestError(f"No rows given: {url}")
        table = _without_nan(rows.rename_columns(list(columns)))
        return Manifest(url=url, format="parquet", columns=columns, rows=BatchedRows(table))
    else:
        try:
            records = [{str(k).strip(): v for k, v in dict(row).items()} for row in rows]
        except (TypeError, ValueError) as exc:
            raise ManifestError(
                f"Rows must be a DataFrame, an Arrow table or a list of dicts: {exc}"
            ) from None
        columns = tuple(dict.fromkeys(k for record in records for k in record))
    _check_columns(columns, url)
    if not records:
        raise ManifestError(f"No rows given: {url}")
    cleaned = tuple({c: _clean(record.get(c)) for c in columns} for record in records)
    return Manifest(url=url, format="parquet", columns=columns, rows=cleaned)


def _decode_parquet(raw: bytes, url: str) -> tuple[BatchedRows, tuple[str, ...]]:
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ManifestError(f"Manifest {url} is not a readable Parquet file: {detail}") from None
    try:
        columns = tuple(str(name).strip() for name in table.column_names)
    except UnicodeDecodeError:  # a corrupt file whose schema names are not UTF-8
        raise ManifestError(f"Manifest {url} has column names that are not UTF-8.") from None
    _check_columns(columns, url)
    try:
        table = _without_nan(table.rename_columns(list(columns)))
        _check_decodable(table)
    except Exception as exc:
        raise ManifestError(f"Manifest {url} has values that cannot be decoded: {exc}") from None
    return BatchedRows(table), columns


def _check_decodable(table: pa.Table) -> None:
    """Raise when a value cannot become a Python value (invalid UTF-8, a date out of
    range...), before anything is validated: text is checked in Arrow, other types that
    can fail are decoded."""
    table.validate(full=True)
    simple = (pa.types.is_string, pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    for column in table.columns:
        if not any(check(column.type) for check in simple):
            column.to_pylist()


def _without_nan(table: pa.Table) -> pa.Table:
    """``table`` with NaN in its floating-point columns read as missing (None), and text
    as ``string`` (pandas gives ``large_string``; the columnar checks read ``string``)."""
    for index, column in enumerate(table.columns):
        if pa.types.is_large_string(column.type):
            table = table.set_column(index, table.field(index).name, column.cast(pa.string()))
        elif pa.types.is_floating(column.type):
            cleaned = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
            table = table.set_column(index, table.field(index), cleaned)
    return table


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _check_columns(columns: tuple[str, ...], url: str) -> None:
    blanks = [i + 1 for i, c in enumerate(columns) if not c or c.startswith("Unnamed: ")]
    if blanks:
        raise ManifestError(f"Manifest {url} has unnamed columns at positions {blanks}.")
    seen: set[str] = set()
    dupes = sorted({c for c in columns if c in seen or seen.add(c)})  # type: ignore[func-returns-value]
    if dupes:
        raise ManifestError(f"Manifest {url} repeats column names: {', '.join(dupes)}.")
