"""The results table: one row per manifest row per run, under ``{output}/results/``.

Defines the columns, and reads earlier runs' tables back (as a pyarrow dataset) so a
re-run can skip rows that already completed with the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fashn_prefect.store.fs import filesystem, is_hidden, join
from fashn_prefect.store.rows import BatchedRows

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


class CompletedRows:
    """The latest completed result per ``(row_key, inputs_hash)`` across earlier runs, kept
    as an Arrow table. Its ``ambiguous`` flag says whether any earlier run lost the answer
    to one of the row's submissions (that prediction may have been charged too)."""

    def __init__(self, table: pa.Table | None = None) -> None:
        self.table = table

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def match(self, row_keys: Sequence[str], inputs_hashes: Sequence[str]) -> np.ndarray:
        """For each row, the index of its completed result, or -1 when it has none."""
        found = np.full(len(row_keys), -1, dtype=np.int64)
        if not len(self) or not len(row_keys):
            return found
        assert self.table is not None
        wanted = pa.table(
            {
                "row_key": pa.array(row_keys, pa.string()),
                "inputs_hash": pa.array(inputs_hashes, pa.string()),
                "_wanted": pa.array(np.arange(len(row_keys), dtype=np.int64)),
            }
        )
        done = self.table.select(["row_key", "inputs_hash"]).append_column(
            "_done", pa.array(np.arange(len(self), dtype=np.int64))
        )
        pairs = wanted.join(done, ["row_key", "inputs_hash"], join_type="inner")
        found[pairs["_wanted"].to_numpy()] = pairs["_done"].to_numpy()
        return found

    def rows(self, indexes: np.ndarray) -> Sequence[dict[str, Any]]:
        """The completed results at ``indexes`` (from :meth:`match`), in that order, as
        dicts decoded a batch at a time."""
        if self.table is None or not len(indexes):
            return []
        return BatchedRows(self.table.take(pa.array(indexes, pa.int64())))


def completed_rows(output_url: str, storage_options: dict[str, Any] | None = None) -> CompletedRows:
    """Latest completed result per ``(row_key, inputs_hash)`` across earlier runs (a
    completed or skipped row with outputs; the latest ``completed_at`` wins, and on a tie
    the table read last)."""
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
    if table is None or not {"row_key", "inputs_hash", "status"} <= set(table.column_names):
        return CompletedRows()
    done = pc.is_in(table["status"], pa.array(["completed", "skipped"]))
    if "output_uris" in table.column_names:
        done = pc.and_(done, pc.greater(pc.list_value_length(table["output_uris"]), 0))
    else:
        done = pc.and_(done, False)
    table = table.filter(pc.fill_null(done, False))
    if not table.num_rows:
        return CompletedRows()
    stamps = table["completed_at"] if "completed_at" in table.column_names else None
    earliest = pa.scalar(datetime.min.replace(tzinfo=UTC), pa.timestamp("ms", tz="UTC"))
    ranked = table.append_column(
        "_stamp",
        pc.fill_null(pc.cast(stamps, pa.timestamp("ms", tz="UTC")), earliest)
        if stamps is not None
        else pa.array([datetime.min.replace(tzinfo=UTC)] * table.num_rows),
    ).append_column("_i", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    order = pc.sort_indices(
        ranked,
        sort_keys=[
            ("row_key", "ascending"),
            ("inputs_hash", "ascending"),
            ("_stamp", "descending"),
            ("_i", "descending"),
        ],
    )
    ordered = table.take(order)
    if ordered.num_rows > 1:
        key = pc.binary_join_element_wise(
            ordered["row_key"], ordered["inputs_hash"], "\x00"
        ).combine_chunks()
        changed = pc.not_equal(key.slice(1), key.slice(0, len(key) - 1))
        ordered = ordered.filter(pa.concat_arrays([pa.array([True]), changed]))
    return CompletedRows(ordered)


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
    if "prediction_ids" not in table.column_names:
        return frozenset()
    charged = table.filter(pc.fill_null(pc.greater(table["credits_charged"], 0), False))
    ids = pc.list_flatten(charged["prediction_ids"]).drop_null()
    return frozenset(pc.unique(ids).to_pylist())
