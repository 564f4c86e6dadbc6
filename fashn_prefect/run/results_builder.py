"""A run's results table built as its rows arrive: Arrow record batches every
:data:`BATCH_ROWS` rows and the run's totals kept as it goes, never one list of every row.

Metadata columns (any key that is not a fixed column) are discovered as rows arrive and
hold strings; a batch built before a key was first seen gets a null column for it. Rows
may arrive in any order (as they finish): the table is sorted by row, and its metadata
columns are in the order the rows sorted by row first show them, so the same rows always
give the same table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa

from fashn_prefect.store.results import CORE_COLUMNS, SCHEMA

__all__ = ["BATCH_ROWS", "ResultsBuilder", "Totals"]

#: Rows per record batch. Small enough that rows waiting for their batch die young: with
#: 8,192 they lived long enough to reach the garbage collector's oldest generation, and
#: full collections over a 1M-row run's plan added about 3 s.
BATCH_ROWS = 1024
_STATUSES = ("completed", "failed", "invalid", "skipped")


class Totals:
    """Counts by status and credit totals of result rows, added one at a time.

    :meth:`as_dict` gives what the run report's ``totals`` holds, in row order whatever
    order the rows arrived in: ``errors`` by the row each error was first seen on,
    ``ambiguous_rows`` by row.
    """

    def __init__(self) -> None:
        self.rows = 0
        self.statuses: Counter[str] = Counter()
        self.estimated_credits = 0
        self.credits_charged = 0
        self.credits_estimated = 0
        self._errors: dict[str, list[int]] = {}  # name -> [count, first row]
        self._ambiguous: list[tuple[int, str]] = []

    def add(self, row: dict[str, Any]) -> None:
        """Count one result row."""
        status = row["status"]
        self.rows += 1
        self.statuses[status] += 1
        if status != "skipped":
            self.estimated_credits += row["estimated_credits"]
        charged = row["credits_charged"]
        self.credits_charged += charged
        if row.get("credits_source") == "estimate":
            self.credits_estimated += charged
        error = row.get("error_name")
        if error:
            seen = self._errors.get(error)
            if seen is None:
                self._errors[error] = [1, row["row"]]
            else:
                seen[0] += 1
                seen[1] = min(seen[1], row["row"])
            if status == "failed" and error == "AmbiguousSubmission":
                self._ambiguous.append((row["row"], row["row_key"]))

    def as_dict(self) -> dict[str, Any]:
        """The totals, as ``summarise`` gives them for the rows sorted by row."""
        errors = sorted(self._errors.items(), key=lambda item: item[1][1])
        return {
            "rows": self.rows,
            **{status: self.statuses.get(status, 0) for status in _STATUSES},
            "estimated_credits": self.estimated_credits,
            "credits_charged": self.credits_charged,
            # Charged credits booked from the specs because the API sent no header.
            "credits_estimated": self.credits_estimated,
            "errors": {name: count for name, (count, _) in errors},
            # Rows whose submission FASHN may or may not have received (see ambiguous_advice).
            "ambiguous_rows": [key for _, key in sorted(self._ambiguous, key=lambda a: a[0])],
        }


class ResultsBuilder:
    """Collects result rows (:meth:`add`) into Arrow batches; :meth:`table` gives the
    results table sorted by row."""

    def __init__(self, batch_rows: int = BATCH_ROWS) -> None:
        self.batch_rows = batch_rows
        self.totals = Totals()
        self._pending: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        # Metadata column -> (the lowest row showing it, its position in that row).
        self._metadata: dict[str, tuple[int, int]] = {}
        self._layouts: dict[tuple[str, ...], tuple[tuple[int, str], ...]] = {}

    def __len__(self) -> int:
        return self.totals.rows

    def add(self, row: dict[str, Any]) -> None:
        """Add one result row (a dict as :func:`~fashn_prefect.run.write.result_row`
        makes); it is converted with the next batch."""
        metadata, number = self._metadata, row["row"]
        for position, name in self._metadata_of(row):
            seen = metadata.get(name)
            if seen is None or number < seen[0]:
                metadata[name] = (number, position)
        self.totals.add(row)
        self._pending.append(row)
        if len(self._pending) >= self.batch_rows:
            self._flush()

    def _metadata_of(self, row: dict[str, Any]) -> tuple[tuple[int, str], ...]:
        """The metadata keys of ``row`` with their positions; remembered per key layout
        (the rows of one manifest share a few)."""
        layout = tuple(row)
        found = self._layouts.get(layout)
        if found is None:
            found = tuple((i, name) for i, name in enumerate(layout) if name not in CORE_COLUMNS)
            if len(self._layouts) >= 1024:
                self._layouts.clear()
            self._layouts[layout] = found
        return found

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        """Add every row of ``rows`` (any iterable)."""
        for row in rows:
            self.add(row)

    def schema(self) -> pa.Schema:
        """The fixed columns, then the metadata columns (strings) in the order the rows
        added so far, sorted by row, first show them."""
        metadata = sorted(self._metadata, key=self._metadata.__getitem__)
        return pa.schema([*SCHEMA, *(pa.field(c, pa.string()) for c in metadata)])

    def _flush(self) -> None:
        if self._pending:
            batch = pa.RecordBatch.from_pylist(self._pending, schema=self.schema())
            self._batches.append(batch)
            self._pending = []

    def table(self, flow_run_id: str | None, started: datetime) -> pa.Table:
        """Every row added so far as one table sorted by ``row``, with ``flow_run_id`` and
        ``run_started_at`` filled in on every row."""
        self._flush()
        schema = self.schema()
        batches = [_widen(batch, schema) for batch in self._batches]
        table = pa.Table.from_batches(batches, schema=schema)
        rows = table.num_rows
        for name, value in (("flow_run_id", flow_run_id), ("run_started_at", started)):
            field = schema.field(name)
            column = pa.repeat(pa.scalar(value, type=field.type), rows)
            table = table.set_column(schema.get_field_index(name), field, column)
        if not _is_sorted(table.column("row")):
            table = table.sort_by("row")
        # Keep the sorted rows only: the builder does not hold a second copy of the table.
        self._batches = table.to_batches()
        return table


def _widen(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with the columns of ``schema``: a null column for each metadata column
    first seen after it."""
    if batch.schema.equals(schema):
        return batch
    columns = [
        batch.column(name) if name in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
        for name in schema.names
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _is_sorted(column: pa.ChunkedArray) -> bool:
    """True when ``column`` (no nulls) never decreases."""
    values = column.to_numpy()
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())
