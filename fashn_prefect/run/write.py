"""Write a run's results table (Parquet, optionally CSV) atomically, batch by batch, and
make its rows."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from fashn_prefect.api import specs
from fashn_prefect.run.inputs import shorten_data_uris
from fashn_prefect.run.results_builder import ResultsBuilder, Totals
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.store.fs import atomic_write, join
from fashn_prefect.store.records import Attempt
from fashn_prefect.store.results import CORE_COLUMNS, results_root

#: Rows per Parquet row group (bigger groups compress better: 65,536-row groups made a
#: 1M-row table 10 % bigger than one group, these 3 %).
PARQUET_ROWS = 262144
#: Rows per CSV write (their list columns are turned into JSON one slice at a time).
CSV_ROWS = 65536
# The json module's own encoder, as ``json.dumps(..., sort_keys=True, default=str)`` builds
# it on every call.
_INPUTS_JSON = json.JSONEncoder(sort_keys=True, default=str)
# A string json.dumps writes as itself between quotes (printable ASCII but " and \).
_PLAIN_JSON = r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$"


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
    generation_mode, resolution = _mode_and_resolution(spec.model_name, spec.inputs)
    submitted, completed = _parse_time(submitted_at), _parse_time(completed_at)
    latency = (completed - submitted).total_seconds() if submitted and completed else None
    outputs = list(output_uris) if output_uris else []
    row: dict[str, Any] = {
        "row": spec.row,
        "row_key": spec.row_key,
        "status": status,
        "model_name": spec.model_name,
        "inputs_json": _inputs_json(spec.inputs),
        "inputs_hash": spec.inputs_hash,
        "generation_mode": generation_mode,
        "resolution": resolution,
        "prediction_ids": list(prediction_ids) if prediction_ids else [],
        "attempts": attempts,
        "ambiguous": ambiguous,
        "error_name": error_name,
        "error_message": error_message,
        "estimated_credits": spec.estimated_credits,
        "credits_charged": credits_charged,
        "credits_source": credits_source,
        "output_count": len(outputs),
        "output_uris": outputs,
        "submitted_at": submitted,
        "completed_at": completed,
        "latency_s": latency,
        "interrupted_at": None if interrupted_at is None else _parse_time(interrupted_at),
        "completion_seen_by": completion_seen_by,
        "detection_delay_s": detection_delay_s,
    }
    for name, value in spec.metadata.items():
        row[name if name not in CORE_COLUMNS else f"meta_{name}"] = (
            None if value is None else str(value)
        )
    return row


def _inputs_json(inputs: dict[str, Any]) -> str:
    """The row's inputs as JSON (sorted keys), long data URIs shortened."""
    for value in inputs.values():
        if isinstance(value, str) and value.startswith("data:"):
            inputs = shorten_data_uris(inputs)
            break
    return _INPUTS_JSON.encode(inputs)


_MODE_INPUTS = ("generation_mode", "mode", "resolution")
# (id of the model's spec, its inputs that decide the two columns) -> (spec, the columns).
# The spec is kept so an id reused after a model is registered again never matches.
_MODES: dict[tuple[Any, ...], tuple[Any, str | None, str | None]] = {}
_CONDITIONS: dict[int, tuple[Any, tuple[str, ...]]] = {}


def _mode_and_resolution(model_name: str, inputs: dict[str, Any]) -> tuple[str | None, str | None]:
    """The ``generation_mode`` and ``resolution`` columns: the inputs with the documented
    defaults filled in (:func:`specs.resolve_inputs`); none for a model the specs do not
    describe. Remembered per model and the few inputs they depend on."""
    model = specs.MODELS.get(model_name) if isinstance(model_name, str) else None
    if model is None:
        return None, None
    g, m, r = inputs.get("generation_mode"), inputs.get("mode"), inputs.get("resolution")
    key: tuple[Any, ...] | None = None
    # Only strings are remembered: equal values of other types can print differently.
    if (
        (g is None or type(g) is str)
        and (m is None or type(m) is str)
        and (r is None or type(r) is str)
    ):
        conditions = _conditions(model)
        present = tuple(inputs.get(n) is not None for n in conditions) if conditions else ()
        key = (id(model), g, m, r, present)
        hit = _MODES.get(key)
        if hit is not None and hit[0] is model:
            return hit[1], hit[2]
    resolved = specs.resolve_inputs(model_name, inputs)
    mode = _text(resolved.get("generation_mode") or resolved.get("mode"))
    resolution = _text(resolved.get("resolution"))
    if key is not None:
        if len(_MODES) >= 4096:
            _MODES.clear()
        _MODES[key] = (model, mode, resolution)
    return mode, resolution


def _conditions(model: Any) -> tuple[str, ...]:
    """Inputs whose presence decides whether a mode or resolution default applies."""
    known = _CONDITIONS.get(id(model))
    if known is not None and known[0] is model:
        return known[1]
    names = tuple(
        name
        for f in model.fields
        if f.name in _MODE_INPUTS
        for name in (f.default_requires, f.default_unless)
        if name
    )
    _CONDITIONS[id(model)] = (model, names)
    return names


def interrupted_at(attempts: list[Attempt]) -> str | None:
    """When the latest submission whose answer never arrived was sent (an attempt left
    ``ambiguous``, or at ``submitting`` by a killed process); None when there is none."""
    interrupted = [a for a in attempts if a.status in ("ambiguous", "submitting")]
    return interrupted[-1].submitted_at if interrupted else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def results_table(
    rows: Iterable[dict[str, Any]], flow_run_id: str | None, started: datetime
) -> pa.Table:
    """The Arrow table of ``rows``, sorted by row: the fixed columns, then metadata columns
    as strings (see :class:`~fashn_prefect.run.results_builder.ResultsBuilder`)."""
    builder = ResultsBuilder()
    builder.extend(rows)
    return builder.table(flow_run_id, started)


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
    """Write ``table`` under ``{output}/results/`` atomically, a slice of rows at a time
    (:data:`PARQUET_ROWS`, :data:`CSV_ROWS`); return the URIs written. In the CSV the list
    columns are JSON arrays."""
    fs, root = results_root(output_url, storage_options)

    def parquet(sink: IO[bytes]) -> None:
        with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
            for part in _parts(table, PARQUET_ROWS):
                writer.write_table(part)

    parquet_path = join(root, f"{run_name}.parquet")
    _write_atomically(fs, parquet_path, parquet)
    written = WrittenResults(parquet=str(fs.unstrip_protocol(parquet_path)))
    if csv:
        csv_path = join(root, f"{run_name}.csv")
        _write_atomically(fs, csv_path, lambda sink: _write_csv(table, sink))
        written.csv = str(fs.unstrip_protocol(csv_path))
    return written


_JSON_COLUMNS = ("prediction_ids", "output_uris")


def _write_csv(table: pa.Table, sink: IO[bytes]) -> None:
    schema = table.schema
    for name in _JSON_COLUMNS:
        index = schema.get_field_index(name)
        schema = schema.set(index, pa.field(name, pa.string()))
    with pacsv.CSVWriter(sink, schema) as writer:
        for part in _parts(table, CSV_ROWS):
            for name in _JSON_COLUMNS:
                index = part.schema.get_field_index(name)
                as_json = json_lists(part.column(name).combine_chunks())
                part = part.set_column(index, name, as_json)
            writer.write_table(part)


def _parts(table: pa.Table, rows: int) -> Iterable[pa.Table]:
    """``table`` in slices of ``rows`` rows (an empty table as one empty slice)."""
    yield table.slice(0, rows)
    for offset in range(rows, table.num_rows, rows):
        yield table.slice(offset, rows)


def json_lists(lists: pa.Array) -> pa.Array:
    """Each list of strings as ``json.dumps(list)`` writes it (``null`` for a null list).

    Built with Arrow compute; a value that needs escaping (a quote, a backslash, a control
    or non-ASCII character) is written by ``json.dumps`` itself.
    """
    lists = lists.cast(pa.list_(pa.string()))
    # A slice's own values only (``values`` is the whole array's).
    offsets = lists.offsets
    start = offsets[0].as_py() if len(offsets) else 0
    values = lists.values.slice(start, offsets[-1].as_py() - start if len(offsets) else 0)
    offsets = pc.subtract(offsets, pa.scalar(start, offsets.type))
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    plain = pc.match_substring_regex(values, _PLAIN_JSON)
    escape = pc.and_(pc.invert(plain), pc.is_valid(values))
    if pc.any(escape).as_py():
        special = values.filter(escape).to_pylist()
        quoted = pc.replace_with_mask(quoted, escape, pa.array([json.dumps(v) for v in special]))
    quoted = pc.fill_null(quoted, "null")
    items = pa.ListArray.from_arrays(offsets, quoted)  # a null list reads as empty
    joined = pc.binary_join_element_wise("[", pc.binary_join(items, ", "), "]", "")
    return pc.if_else(lists.is_null(), "null", joined) if lists.null_count else joined


def _write_atomically(fs: Any, path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Readers see nothing or the whole file: a local file is written beside ``path`` and
    renamed into place (streamed, never whole in memory); an object store gets one upload
    (:func:`~fashn_prefect.store.fs.atomic_write`)."""
    if not isinstance(fs, LocalFileSystem):
        buffer = io.BytesIO()
        write(buffer)
        atomic_write(fs, path, buffer.getvalue())
        return
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = join(parent, f".tmp-{uuid.uuid4().hex}") if parent else f".tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(tmp, "wb") as handle:
            write(handle)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


def run_name(started: datetime, flow_run_id: str | None) -> str:
    """File stem for a run's results: sortable by time, unique per flow run."""
    stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"run-{stamp}-{(flow_run_id or 'local')[:8]}"


def summarise(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status and credit totals for a run's result rows
    (:class:`~fashn_prefect.run.results_builder.Totals`)."""
    totals = Totals()
    for row in rows:
        totals.add(row)
    return totals.as_dict()
