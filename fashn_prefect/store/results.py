"""The results table: one row per manifest row per run, under ``{output}/results/``.

Defines the columns, and reads earlier runs' tables back (as a pyarrow dataset) so a
re-run can skip rows that already completed with the same inputs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from fashn_prefect.store.fs import filesystem, is_hidden, join

RESULTS_DIR = "results"
STATUSES = ("completed", "failed", "invalid", "skipped")

SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("row_key", pa.string()),
        ("status", pa.string()),
        ("model_name", pa.string()),
        ("inputs_json", pa.string()),
        ("inputs_hash", pa.string()),
        ("generation_mode", pa.string()),
        ("resolution", pa.string()),
        ("prediction_ids", pa.list_(pa.string())),
        ("attempts", pa.int64()),
        ("ambiguous", pa.bool_()),
        ("error_name", pa.string()),
        ("error_message", pa.string()),
        ("estimated_credits", pa.int64()),
        ("credits_charged", pa.int64()),
        ("credits_source", pa.string()),
        ("output_count", pa.int64()),
        ("output_uris", pa.list_(pa.string())),
        ("submitted_at", pa.timestamp("ms", tz="UTC")),
        ("completed_at", pa.timestamp("ms", tz="UTC")),
        ("latency_s", pa.float64()),
        # When the row's latest interrupted submission was sent (its answer never came).
        ("interrupted_at", pa.timestamp("ms", tz="UTC")),
        ("completion_seen_by", pa.string()),
        ("detection_delay_s", pa.float64()),
        ("flow_run_id", pa.string()),
        ("run_started_at", pa.timestamp("ms", tz="UTC")),
    ]
)
CORE_COLUMNS = frozenset(SCHEMA.names)


def results_root(output_url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The filesystem and folder holding results tables."""
    fs, root = filesystem(output_url, **(storage_options or {}))
    return fs, join(root, RESULTS_DIR)


def read_results(
    output_url: str,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table | None:
    """All results tables under ``output_url`` as one table, or None when there are none."""
    fs, root = results_root(output_url, storage_options)
    try:
        files = [p for p in fs.find(root) if p.endswith(".parquet") and not is_hidden(p)]
    except FileNotFoundError:
        return None
    if not files:
        return None
    dataset = ds.dataset(sorted(files), filesystem=fs, format="parquet")
    wanted = [c for c in (columns or dataset.schema.names) if c in dataset.schema.names]
    return dataset.to_table(columns=wanted)


def completed_rows(
    output_url: str, storage_options: dict[str, Any] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """Latest completed result per ``(row_key, inputs_hash)`` across earlier runs.

    Its ``ambiguous`` flag says whether any earlier run lost the answer to one of the row's
    submissions (that prediction may have been charged too).
    """
    table = read_results(
        output_url,
        columns=[
            "row_key",
            "inputs_hash",
            "status",
            "output_uris",
            "prediction_ids",
            "completed_at",
            "credits_charged",
            "ambiguous",
        ],
        storage_options=storage_options,
    )
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if table is None:
        return done
    for record in table.to_pylist():
        if record.get("status") not in ("completed", "skipped") or not record.get("output_uris"):
            continue
        key = (record["row_key"], record["inputs_hash"])
        previous = done.get(key)
        if previous is None or _stamp(record) >= _stamp(previous):
            done[key] = record
    return done


def reported_charges(
    output_url: str, storage_options: dict[str, Any] | None = None
) -> frozenset[str]:
    """Prediction ids of rows that earlier results tables already report as charged.

    A row reported again (a permanent failure such as ``OutputMissing``) must not book
    the same charge a second time.
    """
    table = read_results(
        output_url, columns=["prediction_ids", "credits_charged"], storage_options=storage_options
    )
    if table is None or "credits_charged" not in table.column_names:
        return frozenset()
    return frozenset(
        pid
        for record in table.to_pylist()
        if (record.get("credits_charged") or 0) > 0
        for pid in record.get("prediction_ids") or []
    )


def _stamp(record: dict[str, Any]) -> datetime:
    value = record.get("completed_at")
    return value if isinstance(value, datetime) else datetime.min.replace(tzinfo=UTC)
