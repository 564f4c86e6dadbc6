"""The results builder (fashn_prefect.run.results_builder): rows added one at a time, in
any order, give the same table and totals as building one list of every row, sorted by
row, did (the oracle below is that former code)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from fashn_prefect.run.results_builder import ResultsBuilder
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.run.write import result_row, results_table, summarise
from fashn_prefect.store.results import CORE_COLUMNS, SCHEMA

pytestmark = pytest.mark.unit

STARTED = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def one_list_table(rows: list[dict[str, Any]], flow_run_id: str | None) -> pa.Table:
    """The table as it was built before the builder: one list, sorted, then from_pylist."""
    rows = sorted(({**r} for r in rows), key=lambda r: r["row"])
    metadata: list[str] = []
    for row in rows:
        metadata += [k for k in row if k not in CORE_COLUMNS and k not in metadata]
    for row in rows:
        row["flow_run_id"], row["run_started_at"] = flow_run_id, STARTED
    schema = pa.schema([*SCHEMA, *(pa.field(c, pa.string()) for c in metadata)])
    return pa.Table.from_pylist(rows, schema=schema)


def one_list_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's totals as they were counted over the sorted list of every row."""
    rows = sorted(rows, key=lambda r: r["row"])
    counts = Counter(r["status"] for r in rows)
    return {
        "rows": len(rows),
        **{s: counts.get(s, 0) for s in ("completed", "failed", "invalid", "skipped")},
        "estimated_credits": sum(r["estimated_credits"] for r in rows if r["status"] != "skipped"),
        "credits_charged": sum(r["credits_charged"] for r in rows),
        "credits_estimated": sum(
            r["credits_charged"] for r in rows if r.get("credits_source") == "estimate"
        ),
        "errors": dict(Counter(r["error_name"] for r in rows if r.get("error_name"))),
        "ambiguous_rows": [
            r["row_key"]
            for r in rows
            if r["status"] == "failed" and r.get("error_name") == "AmbiguousSubmission"
        ],
    }


def mixed_rows(n: int) -> list[dict[str, Any]]:
    """``n`` result rows of every kind; the ``season`` column appears only from row 40 on
    and ``batch`` only on the last row, so both are first seen after earlier batches."""
    rows = []
    for i in range(1, n + 1):
        metadata: dict[str, Any] = {"sku": f"SKU{i:04d}"}
        if i >= 40:
            metadata["season"] = "winter" if i % 2 else None
        if i == n:
            metadata = {"batch": 7, **metadata}
        if i % 11 == 0:
            metadata["status"] = "clashes with a fixed column"
        inputs = {"model_image": f"https://img.example/{i}.jpg", "garment_image": "g.jpg"}
        spec = RowSpec(i, f"row-{i}", "tryon-v1.6", inputs, metadata, f"h{i}", 1)
        kind = i % 5
        if kind == 0:
            row = result_row(spec, "skipped", prediction_ids=["p"], output_uris=["s3://o/a.png"])
        elif kind == 1:
            row = result_row(
                spec,
                "completed",
                prediction_ids=[f"p{i}"],
                output_uris=[f"file:///out/{i}.png"],
                credits_charged=1,
                credits_source="estimate" if i % 3 else "header",
                submitted_at="2026-03-01T12:30:00+00:00",
                completed_at="2026-03-01T12:30:09.5+00:00",
            )
        elif kind == 2:
            row = result_row(
                spec, "failed", error_name="AmbiguousSubmission", ambiguous=True, attempts=1
            )
        elif kind == 3:
            row = result_row(spec, "failed", error_name="PredictionFailed", error_message="no")
        else:
            row = result_row(
                RowSpec(i, f"invalid-row-{i}", "no-such-model", {}, metadata, "", 0),
                "invalid",
                error_name="InvalidRow",
                error_message="model_name: unknown",
            )
        rows.append(row)
    return rows


@pytest.mark.parametrize("batch_rows", [1, 8, 1000])
def test_rows_added_in_any_order_give_the_sorted_one_list_table(batch_rows: int) -> None:
    rows = mixed_rows(60)
    arrival = rows[:]
    random.Random(batch_rows).shuffle(arrival)
    builder = ResultsBuilder(batch_rows=batch_rows)
    for row in arrival:
        builder.add(row)

    table = builder.table("flow-1234", STARTED)

    expected = one_list_table(rows, "flow-1234")
    assert table.schema.equals(expected.schema)
    assert table.equals(expected)
    # Metadata columns in the order the rows sorted by row show them, not arrival order.
    assert table.column_names[len(SCHEMA) :] == ["sku", "meta_status", "season", "batch"]
    assert table.column("row").to_pylist() == list(range(1, 61))
    assert set(table.column("flow_run_id").to_pylist()) == {"flow-1234"}


def test_a_metadata_column_first_seen_late_is_null_on_earlier_rows() -> None:
    rows = mixed_rows(60)
    builder = ResultsBuilder(batch_rows=8)
    builder.extend(rows)

    table = builder.table(None, STARTED)

    assert table.column_names[len(SCHEMA) :] == ["sku", "meta_status", "season", "batch"]
    assert table.column("batch").to_pylist() == [None] * 59 + ["7"]
    assert table.column("season").to_pylist()[:39] == [None] * 39
    assert table.column("flow_run_id").null_count == 60
    assert table.equals(one_list_table(rows, None))


def test_the_totals_are_those_of_the_sorted_rows_whatever_the_arrival_order() -> None:
    rows = mixed_rows(60)
    arrival = rows[::-1]
    builder = ResultsBuilder(batch_rows=7)
    builder.extend(arrival)

    expected = one_list_totals(rows)
    assert builder.totals.as_dict() == expected
    assert summarise(arrival) == expected
    # The report lists them in row order, whatever order the rows finished in.
    assert list(builder.totals.as_dict()["errors"]) == list(expected["errors"])
    assert builder.totals.as_dict()["ambiguous_rows"][:2] == ["row-2", "row-7"]
    assert len(builder) == 60


def test_no_rows_give_an_empty_table_with_the_fixed_columns() -> None:
    builder = ResultsBuilder()

    table = builder.table("flow-1", STARTED)

    assert table.num_rows == 0
    assert table.schema.equals(SCHEMA)
    assert results_table([], None, STARTED).schema.equals(SCHEMA)
    assert builder.totals.as_dict() == one_list_totals([])


def test_results_table_is_the_builder_over_a_list() -> None:
    rows = mixed_rows(25)
    assert results_table(rows[::-1], "f", STARTED).equals(one_list_table(rows, "f"))


def test_the_table_can_be_asked_for_again_after_more_rows() -> None:
    rows = mixed_rows(30)
    builder = ResultsBuilder(batch_rows=4)
    builder.extend(rows[20:])
    first = builder.table("f", STARTED)
    builder.extend(rows[:20])

    assert first.column("row").to_pylist() == list(range(21, 31))
    assert builder.table("g", STARTED).equals(one_list_table(rows, "g"))
