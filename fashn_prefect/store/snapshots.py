"""Ledger snapshots: immutable Parquet files of settled rows' records, and how a plan
reads them at catalog scale.

A snapshot holds each record as JSON beside the few columns a plan reads (its inputs
hash, status, last attempt and charge), so a plan decides every row from columns and a
record is parsed only when its row is taken up (:class:`SnapshotRows`).
:class:`LedgerRecords` puts loose records, damaged snapshots and snapshot rows together
in the order that is safe: a loose record wins, then a damaged snapshot, then the newest
snapshot row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fashn_prefect.store.records import RecordSummary, RowRecord, UnreadableRecord, parse_record

SNAPSHOT_SCHEMA = pa.schema(
    [
        ("row_key", pa.string()),
        ("updated_at", pa.string()),
        # What planning reads, beside the record, so it need not parse a million records.
        ("inputs_hash", pa.string()),
        ("status", pa.string()),
        ("has_outputs", pa.bool_()),
        ("last_status", pa.string()),
        ("last_prediction_id", pa.string()),
        ("last_error_name", pa.string()),
        ("credits_used", pa.int64()),
        ("record", pa.binary()),
    ]
)


SUMMARY_COLUMNS = [name for name in SNAPSHOT_SCHEMA.names if name != "record"]


@dataclass(frozen=True)
class Damaged:
    """A snapshot that could not be read, and the row keys it holds when those are known."""

    path: str
    problem: str
    keys: frozenset[str] | None


def decode_snapshots(
    paths: list[str], contents: dict[str, bytes | BaseException], columns: list[str] | None
) -> tuple[dict[str, pa.Table], list[Damaged]]:
    """Each readable snapshot's ``columns`` (all when None), by path, and the damaged
    snapshots; a vanished one is in neither."""
    tables: dict[str, pa.Table] = {}
    damaged: list[Damaged] = []
    for path in paths:
        data = contents[path]
        if isinstance(data, FileNotFoundError):
            continue
        if isinstance(data, BaseException):
            damaged.append(Damaged(path, f"{type(data).__name__}: {data}", None))
            continue
        try:
            schema = pq.read_schema(pa.BufferReader(data))
            if not schema.equals(SNAPSHOT_SCHEMA):
                raise ValueError(f"unexpected columns {schema.names}")
            tables[path] = pq.read_table(pa.BufferReader(data), columns=columns)
        except Exception as exc:
            damaged.append(Damaged(path, f"{type(exc).__name__}: {exc}", keys_of(data)))
    return tables, damaged


def keys_of(data: bytes) -> frozenset[str] | None:
    """The row keys of a damaged snapshot whose key column still reads, else None."""
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["row_key"])
        return frozenset(str(k) for k in table["row_key"].to_pylist())
    except Exception:
        return None


class SnapshotRows:
    """The newest snapshot row of each row key a plan asked for: its summary columns,
    and where its record is (which snapshot, which row). A record is read from that
    snapshot's bytes when asked for; the last snapshot's records are kept decoded."""

    def __init__(
        self,
        table: pa.Table | None = None,
        files: list[tuple[str, bytes]] | None = None,
        damaged: dict[str, UnreadableRecord] | None = None,
    ) -> None:
        self.table = table
        self.damaged = damaged or {}
        self._files = files or []
        self._decoded: tuple[int, list[bytes | None]] | None = None
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def locate(self, keys: Sequence[str]) -> np.ndarray:
        """For each of ``keys``, its row here, or -1 when there is none."""
        found = np.full(len(keys), -1, dtype=np.int64)
        if self.table is None or not len(keys):
            return found
        wanted = pa.table(
            {
                "row_key": pa.array(keys, pa.string()),
                "_k": pa.array(np.arange(len(keys), dtype=np.int64)),
            }
        )
        mine = self.table.select(["row_key"]).append_column(
            "_s", pa.array(np.arange(len(self), dtype=np.int64))
        )
        pairs = wanted.join(mine, "row_key", join_type="inner")
        found[pairs["_k"].to_numpy()] = pairs["_s"].to_numpy()
        return found

    def forget_summaries(self) -> None:
        """Keep only where each record is (its key, snapshot and row). A plan reads the
        summary columns once; a million-row resume then holds about 150 MB less while
        its rows run."""
        if self.table is not None:
            self.table = self.table.select(["row_key", "_file", "_row"])

    def position(self, key: str) -> int:
        """The row of ``key`` here, or -1."""
        if self._index is None:
            keys = self.table["row_key"].to_pylist() if self.table is not None else []
            self._index = {k: i for i, k in enumerate(keys)}
        return self._index.get(key, -1)

    def row_keys(self) -> list[str]:
        """Every row key with a snapshot row here."""
        return self.table["row_key"].to_pylist() if self.table is not None else []

    def record(self, position: int) -> RowRecord | UnreadableRecord | None:
        """The record at ``position`` (from :meth:`locate`), parsed."""
        assert self.table is not None
        key = self.table["row_key"][position].as_py()
        file = self.table["_file"][position].as_py()
        row = self.table["_row"][position].as_py()
        shown, data = self._files[file]
        if self._decoded is None or self._decoded[0] != file:
            try:
                column = pq.read_table(pa.BufferReader(data), columns=["record"])["record"]
                self._decoded = (file, column.to_pylist())
            except Exception as exc:
                return UnreadableRecord(key, shown, f"{type(exc).__name__}: {exc}")
        blob = self._decoded[1][row]
        if blob is None:
            return UnreadableRecord(key, shown, "the snapshot holds no record for it")
        return parse_record(key, blob, shown)


class LedgerRecords(Mapping[str, "RowRecord | UnreadableRecord"]):
    """The records :meth:`Ledger.load_many` found, by row key: loose records (parsed),
    rows of damaged snapshots (unreadable), and the newest snapshot rows, which stay
    columnar (:class:`SnapshotRows`) and are parsed one at a time when asked for. A loose
    record wins over both; a damaged snapshot's row wins over a readable snapshot's."""

    def __init__(
        self,
        loose: dict[str, RowRecord | UnreadableRecord] | None = None,
        snapshot: SnapshotRows | None = None,
    ) -> None:
        self.loose = loose or {}
        self.snapshot = snapshot if snapshot is not None else SnapshotRows()

    def _own(self, key: str) -> RowRecord | UnreadableRecord | None:
        """The loose record or the damaged snapshot's row of ``key``, if any."""
        return self.loose.get(key) or self.snapshot.damaged.get(key)

    def __getitem__(self, key: str) -> RowRecord | UnreadableRecord:
        found = self._own(key)
        if found is None:
            position = self.snapshot.position(key)
            found = self.snapshot.record(position) if position >= 0 else None
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        own = {**self.loose, **self.snapshot.damaged}
        yield from own
        yield from (k for k in self.snapshot.row_keys() if k not in own)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def unreadable_keys(self) -> set[str]:
        """Row keys whose record exists but could not be read (loose or snapshot)."""
        loose = {k for k, v in self.loose.items() if isinstance(v, UnreadableRecord)}
        return loose | {k for k in self.snapshot.damaged if k not in self.loose}

    def record_at(self, key: str, position: int) -> RowRecord | UnreadableRecord | None:
        """The record of ``key``, whose snapshot row is ``position`` (-1: none)."""
        found = self._own(key)
        if found is None and position >= 0:
            found = self.snapshot.record(position)
        return found

    def summaries(self, keys: Sequence[str]) -> Summaries:
        """What planning reads of each of ``keys``' records, as columns."""
        positions = self.snapshot.locate(keys)
        own = {k: self._own(k) for k in keys if k in self.loose or k in self.snapshot.damaged}
        return Summaries(self.snapshot, positions, own)


class Summaries:
    """What planning reads of the records of a list of keys: the snapshot rows' summary
    columns (aligned with the keys; null where a key has no snapshot row), ``positions``
    (each key's snapshot row, -1 for none), and ``own``: the keys whose loose record or
    damaged snapshot row overrides the snapshot columns."""

    def __init__(
        self,
        snapshot: SnapshotRows,
        positions: np.ndarray,
        own: dict[str, RowRecord | UnreadableRecord | None],
    ) -> None:
        self.positions = positions
        self.own = own
        if snapshot.table is None:
            self.columns: pa.Table | None = None
        else:
            missing = positions < 0
            take = pa.array(np.where(missing, 0, positions), mask=missing)
            self.columns = snapshot.table.select(list(RecordSummary._fields)).take(take)

    def credits_used(self, keys: Sequence[str], hashes: Sequence[str]) -> np.ndarray:
        """For each key (the keys these summaries were made for): the credits its record's
        attempts were charged, when the record is for these ``hashes`` (else 0)."""
        used = np.zeros(len(keys), dtype=np.int64)
        if self.columns is not None:
            same = pc.equal(self.columns["inputs_hash"], pa.array(hashes, pa.string()))
            charged = pc.if_else(pc.fill_null(same, False), self.columns["credits_used"], 0)
            used = np.array(pc.fill_null(charged, 0).to_numpy(zero_copy_only=False), np.int64)
        for n, key in enumerate(keys):
            if key in self.own:
                record = self.own[key]
                mine = isinstance(record, RowRecord) and record.inputs_hash == hashes[n]
                used[n] = record.summary.credits_used if mine else 0  # type: ignore[union-attr]
        return used


def newest_rows(keys: pa.Table, rows: np.ndarray) -> np.ndarray:
    """Of ``rows`` (indexes into ``keys``, a table of ``row_key`` and ``updated_at``), the
    positions in ``rows`` of each row key's newest (on a tie, the one read last)."""
    if len(rows) < 2:
        return np.arange(len(rows))
    small = keys.take(pa.array(rows)).append_column("_i", pa.array(np.arange(len(rows))))
    order = pc.sort_indices(
        small,
        sort_keys=[("row_key", "ascending"), ("updated_at", "descending"), ("_i", "descending")],
    ).to_numpy()
    ordered = small["row_key"].take(pa.array(order)).combine_chunks()
    changed = pc.not_equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))
    first = np.concatenate([[True], changed.to_numpy(False)])
    return np.sort(order[first])


def newest(table: pa.Table) -> pa.Table:
    """One row per row key: the latest ``updated_at`` (on a tie, the one read last)."""
    every = np.arange(table.num_rows)
    return table.take(pa.array(newest_rows(table.select(["row_key", "updated_at"]), every)))


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())
