"""Write a run's results table (Parquet, optionally CSV) atomically, and its artifacts."""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fashn_prefect.api import specs
from fashn_prefect.run.inputs import shorten_data_uris
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.fs import atomic_write, join
from fashn_prefect.store.ledger import Attempt
from fashn_prefect.store.results import CORE_COLUMNS, SCHEMA, results_root


def _parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def result_row(
    spec: RowSpec,
    status: str,
    *,
    prediction_ids: list[str] | None = None,
    attempts: int = 0,
    ambiguous: bool = False,
    error_name: str | None = None,
    error_message: str | None = None,
    credits_charged: int = 0,
    credits_source: str | None = None,
    output_uris: list[str] | None = None,
    submitted_at: str | datetime | None = None,
    completed_at: str | datetime | None = None,
    interrupted_at: str | datetime | None = None,
    completion_seen_by: str | None = None,
    detection_delay_s: float | None = None,
) -> dict[str, Any]:
    """One results-table row for a manifest row."""
    known = spec.model_name in specs.MODELS  # an invalid row may name no known model
    resolved = specs.resolve_inputs(spec.model_name, spec.inputs) if known else {}
    submitted, completed = _parse_time(submitted_at), _parse_time(completed_at)
    latency = (completed - submitted).total_seconds() if submitted and completed else None
    row: dict[str, Any] = {
        "row": spec.row,
        "row_key": spec.row_key,
        "status": status,
        "model_name": spec.model_name,
        "inputs_json": json.dumps(shorten_data_uris(spec.inputs), sort_keys=True, default=str),
        "inputs_hash": spec.inputs_hash,
        "generation_mode": _text(resolved.get("generation_mode") or resolved.get("mode")),
        "resolution": _text(resolved.get("resolution")),
        "prediction_ids": list(prediction_ids or []),
        "attempts": attempts,
        "ambiguous": ambiguous,
        "error_name": error_name,
        "error_message": error_message,
        "estimated_credits": spec.estimated_credits,
        "credits_charged": credits_charged,
        "credits_source": credits_source,
        "output_count": len(output_uris or []),
        "output_uris": list(output_uris or []),
        "submitted_at": submitted,
        "completed_at": completed,
        "latency_s": latency,
        "interrupted_at": _parse_time(interrupted_at),
        "completion_seen_by": completion_seen_by,
        "detection_delay_s": detection_delay_s,
    }
    for name, value in spec.metadata.items():
        row[name if name not in CORE_COLUMNS else f"meta_{name}"] = _text(value)
    return row


def interrupted_at(attempts: list[Attempt]) -> str | None:
    """When the latest submission whose answer never arrived was sent (an attempt left
    ``ambiguous``, or at ``submitting`` by a killed process); None when there is none."""
    interrupted = [a for a in attempts if a.status in ("ambiguous", "submitting")]
    return interrupted[-1].submitted_at if interrupted else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def results_table(
    rows: list[dict[str, Any]], flow_run_id: str | None, started: datetime
) -> pa.Table:
    """Build the Arrow table: the fixed columns, then metadata columns as strings."""
    metadata_columns: list[str] = []
    for row in rows:
        metadata_columns += [k for k in row if k not in CORE_COLUMNS and k not in metadata_columns]
    for row in rows:
        row["flow_run_id"] = flow_run_id
        row["run_started_at"] = started
    schema = pa.schema([*SCHEMA, *(pa.field(c, pa.string()) for c in metadata_columns)])
    return pa.Table.from_pylist(rows, schema=schema)


@dataclass
class WrittenResults:
    """Where a run's results went."""

    parquet: str
    csv: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def write_results(
    table: pa.Table,
    output_url: str,
    run_name: str,
    *,
    csv: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> WrittenResults:
    """Write ``table`` under ``{output}/results/`` atomically; return the URIs written."""
    fs, root = results_root(output_url, storage_options)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    parquet_path = join(root, f"{run_name}.parquet")
    atomic_write(fs, parquet_path, buffer.getvalue())
    written = WrittenResults(parquet=str(fs.unstrip_protocol(parquet_path)))
    if csv:
        flat = table
        for name in ("prediction_ids", "output_uris"):
            index = flat.schema.get_field_index(name)
            as_json = pa.array([json.dumps(v) for v in flat.column(name).to_pylist()])
            flat = flat.set_column(index, name, as_json)
        out = io.BytesIO()
        pacsv.write_csv(flat, out)
        csv_path = join(root, f"{run_name}.csv")
        atomic_write(fs, csv_path, out.getvalue())
        written.csv = str(fs.unstrip_protocol(csv_path))
    return written


def run_name(started: datetime, flow_run_id: str | None) -> str:
    """File stem for a run's results: sortable by time, unique per flow run."""
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{(flow_run_id or 'local')[:8]}"


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status and credit totals for a run's result rows."""
    counts = Counter(r["status"] for r in rows)
    return {
        "rows": len(rows),
        **{
            status: counts.get(status, 0)
            for status in ("completed", "failed", "invalid", "skipped")
        },
        "estimated_credits": sum(r["estimated_credits"] for r in rows if r["status"] != "skipped"),
        "credits_charged": sum(r["credits_charged"] for r in rows),
        # Charged credits booked from the specs because the API sent no header.
        "credits_estimated": sum(
            r["credits_charged"] for r in rows if r.get("credits_source") == "estimate"
        ),
        "errors": dict(Counter(r["error_name"] for r in rows if r.get("error_name"))),
        # Rows whose submission FASHN may or may not have received (see ambiguous_advice).
        "ambiguous_rows": [
            r["row_key"]
            for r in rows
            if r["status"] == "failed" and r.get("error_name") == "AmbiguousSubmission"
        ],
    }
