"""The durable per-row ledger: every submission is written down before it is polled.

Two forms live under ``{output}/ledger/``:

* *Loose records*: one small JSON object per row key, rewritten atomically at each step
  of a row's life: ``submitting`` (about to POST) → ``submitted`` (prediction id known)
  → ``completed`` (outputs stored) or ``failed``; ``ambiguous`` when a POST's fate is
  unknown. Only rows in flight (or settled since the last snapshot) have one.
* *Snapshots*: immutable Parquet files under ``ledger/snapshots/``, one per batch of rows
  a run has settled (:meth:`Ledger.write_snapshot`). Once a snapshot is stored, the
  loose records it covers are deleted; when a folder holds more than
  :data:`MERGE_AT` snapshots they are merged into one (:meth:`Ledger.merge_snapshots`).

A re-run reads the ledger to resume polling known predictions instead of submitting them
again, and treats a row left in ``submitting`` as ambiguous: it may have been created and
charged, so it is never resent without ``resubmit_ambiguous``. A loose record is always
newer than any snapshot of its row; among snapshots the latest ``updated_at`` wins. A
snapshot that cannot be read makes the rows it may hold ambiguous, never new.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fashn_prefect.store.fs import atomic_write, filesystem, is_hidden, join, safe_name

LEDGER_DIR = "ledger"
SNAPSHOT_DIR = "snapshots"
MERGE_AT = 16
"""More snapshots than this in one output root are merged into one."""
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
_LIST_TRIES = 5


def utc_now() -> str:
    """Current UTC time as an ISO-8601 string."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Attempt:
    """One submission of a row."""

    number: int
    prediction_id: str | None = None
    status: str = "submitting"
    submitted_at: str | None = None
    completed_at: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    credits_used: int | None = None
    # Where credits_used came from: "header" (x-fashn-credits-used), "estimate" (the
    # specs', when the header was missing) or "unknown" (neither; model not catalogued).
    credits_source: str | None = None
    # How the end was learned: "webhook" (a delivery, confirmed by one status call) or
    # "poll"; and the seconds from the end to the run seeing it (see run/poll.py).
    completion_seen_by: str | None = None
    detection_delay_s: float | None = None


@dataclass
class RowRecord:
    """Everything known about a row key in one output root."""

    row_key: str
    inputs_hash: str
    model_name: str
    status: str = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    updated_at: str = field(default_factory=utc_now)

    @property
    def last(self) -> Attempt | None:
        """The latest attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    def to_json(self) -> bytes:
        """Serialise to UTF-8 JSON."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RowRecord:
        """Parse a record written by :meth:`to_json`."""
        raw: dict[str, Any] = json.loads(data)
        attempts = [Attempt(**a) for a in raw.pop("attempts", [])]
        return cls(attempts=attempts, **raw)

    @property
    def summary(self) -> RecordSummary:
        """What planning reads of this record."""
        last = self.last
        return RecordSummary(
            inputs_hash=self.inputs_hash,
            status=self.status,
            has_outputs=bool(self.outputs),
            last_status=last.status if last else None,
            last_prediction_id=last.prediction_id if last else None,
            last_error_name=last.error_name if last else None,
            credits_used=sum(a.credits_used or 0 for a in self.attempts),
        )


class RecordSummary(NamedTuple):
    """What planning reads of a row's record: its inputs, where it stands, its last
    attempt, and the credits its attempts were charged."""

    inputs_hash: str
    status: str
    has_outputs: bool
    last_status: str | None
    last_prediction_id: str | None
    last_error_name: str | None
    credits_used: int


@dataclass(frozen=True)
class _Damaged:
    """A snapshot that could not be read, and the row keys it holds when those are known."""

    path: str
    problem: str
    keys: frozenset[str] | None


class Ledger:
    """Reads and writes row records and snapshots under ``{output}/ledger/``."""

    def __init__(self, output_url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, root = filesystem(output_url, **(storage_options or {}))
        self.root = join(root, LEDGER_DIR)
        self.snapshot_root = join(self.root, SNAPSHOT_DIR)

    def path(self, row_key: str) -> str:
        """Where a row key's loose record lives; the name cannot escape the ledger folder."""
        return join(self.root, f"{safe_name(row_key)}.json")

    def save(self, record: RowRecord) -> None:
        """Atomically replace the row's loose record."""
        record.updated_at = utc_now()
        atomic_write(self.fs, self.path(record.row_key), record.to_json())

    def write_snapshot(self, records: Sequence[RowRecord], label: str = "run") -> str:
        """Store ``records`` as one new, immutable snapshot; return its path."""
        summaries = [r.summary for r in records]
        columns: dict[str, list[Any]] = {
            "row_key": [r.row_key for r in records],
            "updated_at": [r.updated_at for r in records],
        }
        for name in RecordSummary._fields:
            columns[name] = [getattr(summary, name) for summary in summaries]
        columns["record"] = [r.to_json() for r in records]
        table = pa.table(columns, schema=SNAPSHOT_SCHEMA)
        name = f"{utc_now().replace(':', '')}-{safe_name(label, 40)}-{uuid.uuid4().hex[:12]}"
        path = join(self.snapshot_root, f"{name}.parquet")
        atomic_write(self.fs, path, _parquet_bytes(table))
        return path

    def delete_loose(self, row_keys: Iterable[str]) -> None:
        """Delete these rows' loose records (a snapshot holds them now); missing ones are fine."""
        _remove(self.fs, [self.path(k) for k in row_keys])

    def merge_snapshots(self, at: int | None = None) -> str | None:
        """Merge the snapshots into one when there are more than ``at`` (default
        :data:`MERGE_AT`); return the merged snapshot's path.

        The merged snapshot (the newest record of each row) is stored before the snapshots
        it replaces are deleted, and only those, so runs merging or writing at the same
        time never lose a row. Nothing is merged while any snapshot cannot be read.
        """
        paths = self._snapshot_paths()
        if len(paths) <= (MERGE_AT if at is None else at):
            return None
        tables, damaged = self._read_snapshots(paths)
        if damaged or len(tables) != len(paths):
            return None
        merged = _newest(pa.concat_tables(tables))
        name = f"{utc_now().replace(':', '')}-merged-{uuid.uuid4().hex[:12]}"
        path = join(self.snapshot_root, f"{name}.parquet")
        atomic_write(self.fs, path, _parquet_bytes(merged))
        _remove(self.fs, paths)  # a snapshot another run merged too is gone already
        return path

    def load_many(self, row_keys: Sequence[str]) -> LedgerRecords:
        """Records for those of ``row_keys`` that have one: the snapshots (one listing,
        one read each), then the loose records (one listing, then batched reads).

        A record that exists but cannot be read or parsed (damaged, truncated, a storage
        error) comes back as an :class:`UnreadableRecord`, never as "no record": the row
        may have been submitted, so it must not be planned as new. So does every row a
        damaged snapshot may hold.
        """
        if not len(row_keys):
            return LedgerRecords()
        snapshot = self._load_snapshots(row_keys)
        return LedgerRecords(self._load_loose(row_keys), snapshot)

    def _load_snapshots(self, row_keys: Sequence[str]) -> SnapshotRows:
        """The newest snapshot row of each wanted key (without its record, which is read
        from the snapshot's bytes when asked for), and the rows of damaged snapshots."""
        for _ in range(_LIST_TRIES):
            paths = self._snapshot_paths()
            contents = _read_all(self.fs, paths)
            tables, damaged = _decode_snapshots(paths, contents, _SUMMARY_COLUMNS)
            if len(tables) + len(damaged) == len(paths):
                break
            # A listed snapshot vanished: another run merged it into one not yet listed.
        else:
            raise OSError(f"the ledger snapshots under {self.snapshot_root} kept changing")
        readable = [path for path in paths if path in tables]
        wanted = pa.array(row_keys, pa.string())
        newest = None
        if readable:
            # Each row numbered by its snapshot and its row there, to find its record later.
            numbered = []
            for n, path in enumerate(readable):
                part = tables.pop(path)
                size = part.num_rows
                part = part.append_column("_file", pa.array(np.full(size, n, np.int32)))
                part = part.append_column("_row", pa.array(np.arange(size, dtype=np.int32)))
                numbered.append(part)
            table = pa.concat_tables(numbered)
            del numbered
            mine = np.flatnonzero(pc.is_in(table["row_key"], wanted).to_numpy(False))
            newest = table.take(mine[_newest_rows(table.select(["row_key", "updated_at"]), mine)])
            del table
        unreadable: dict[str, UnreadableRecord] = {}
        for bad in damaged:
            keys = row_keys if bad.keys is None else [k for k in row_keys if k in bad.keys]
            for key in keys:
                unreadable[key] = UnreadableRecord(key, self._shown(bad.path), bad.problem)
        files = [(self._shown(path), cast(bytes, contents[path])) for path in readable]
        return SnapshotRows(newest, files, unreadable)

    def _load_loose(self, row_keys: Sequence[str]) -> dict[str, RowRecord | UnreadableRecord]:
        try:
            existing = set(self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return {}
        existing = {p.rstrip("/").rsplit("/", 1)[-1] for p in existing}
        wanted = {self.path(k): k for k in row_keys if f"{safe_name(k)}.json" in existing}
        if not wanted:
            return {}
        contents = _read_all(self.fs, list(wanted))
        records: dict[str, RowRecord | UnreadableRecord] = {}
        for path, data in contents.items():
            key = wanted.get(path) or wanted.get(path.rstrip("/"))
            if key is None or isinstance(data, FileNotFoundError):
                continue
            shown = self._shown(self.path(key))
            if isinstance(data, BaseException):
                records[key] = UnreadableRecord(key, shown, f"{type(data).__name__}: {data}")
                continue
            parsed = _parse(key, data, shown)
            if parsed is not None:
                records[key] = parsed
        return records

    def _snapshot_paths(self) -> list[str]:
        self.fs.invalidate_cache(self.snapshot_root)
        try:
            found = self.fs.ls(self.snapshot_root, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p for p in found if p.endswith(".parquet") and not is_hidden(p))

    def _read_snapshots(self, paths: list[str]) -> tuple[list[pa.Table], list[_Damaged]]:
        """The readable snapshots (whole) and the damaged ones; a vanished one is in neither."""
        tables, damaged = _decode_snapshots(paths, _read_all(self.fs, paths), None)
        return [tables[path] for path in paths if path in tables], damaged

    def _shown(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))


_SUMMARY_COLUMNS = [name for name in SNAPSHOT_SCHEMA.names if name != "record"]


def _decode_snapshots(
    paths: list[str], contents: dict[str, bytes | BaseException], columns: list[str] | None
) -> tuple[dict[str, pa.Table], list[_Damaged]]:
    """Each readable snapshot's ``columns`` (all when None), by path, and the damaged
    snapshots; a vanished one is in neither."""
    tables: dict[str, pa.Table] = {}
    damaged: list[_Damaged] = []
    for path in paths:
        data = contents[path]
        if isinstance(data, FileNotFoundError):
            continue
        if isinstance(data, BaseException):
            damaged.append(_Damaged(path, f"{type(data).__name__}: {data}", None))
            continue
        try:
            schema = pq.read_schema(pa.BufferReader(data))
            if not schema.equals(SNAPSHOT_SCHEMA):
                raise ValueError(f"unexpected columns {schema.names}")
            tables[path] = pq.read_table(pa.BufferReader(data), columns=columns)
        except Exception as exc:
            damaged.append(_Damaged(path, f"{type(exc).__name__}: {exc}", _keys_of(data)))
    return tables, damaged


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
        return _parse(key, blob, shown)


def _parse(key: str, data: bytes, shown: str) -> RowRecord | UnreadableRecord | None:
    """The record of ``key`` in ``data``; None when it names another row key."""
    try:
        record = RowRecord.from_json(data)
    except (ValueError, TypeError, AttributeError) as exc:
        return UnreadableRecord(key, shown, f"{type(exc).__name__}: {exc}")
    return record if record.row_key == key else None


def _keys_of(data: bytes) -> frozenset[str] | None:
    """The row keys of a damaged snapshot whose key column still reads, else None."""
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["row_key"])
        return frozenset(str(k) for k in table["row_key"].to_pylist())
    except Exception:
        return None


def _newest_rows(keys: pa.Table, rows: np.ndarray) -> np.ndarray:
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


def _newest(table: pa.Table) -> pa.Table:
    """One row per row key: the latest ``updated_at`` (on a tie, the one read last)."""
    if table.num_rows < 2:
        return table
    indexed = table.append_column("_i", pa.array(range(table.num_rows), pa.int64()))
    order = pc.sort_indices(
        indexed,
        sort_keys=[("row_key", "ascending"), ("updated_at", "descending"), ("_i", "descending")],
    )
    ordered = table.take(order)
    keys = ordered["row_key"].combine_chunks()
    changed = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    first = pa.concat_arrays([pa.array([True]), changed])
    return ordered.filter(first)


def _read_all(fs: Any, paths: list[str]) -> dict[str, bytes | BaseException]:
    """Each object whole, in one request apiece (concurrent on object stores); a failed
    read comes back as its exception. (Reading "from byte 0" spares s3fs the size
    request it makes before a whole-object read.)"""
    if not paths:
        return {}
    starts, ends = [0] * len(paths), [None] * len(paths)
    return dict(zip(paths, fs.cat_ranges(paths, starts, ends, on_error="return"), strict=True))


def _remove(fs: Any, paths: list[str]) -> None:
    """Delete ``paths`` (in bulk where the store can); those already gone are fine."""
    if not paths:
        return
    try:
        fs.rm(paths)
    except FileNotFoundError:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


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


@dataclass(frozen=True)
class UnreadableRecord:
    """A row's ledger record that exists but could not be read: its row's fate is unknown."""

    row_key: str
    path: str
    problem: str

    def describe(self) -> str:
        """What went wrong and what the user can do, for the results table."""
        return (
            f"the ledger record {self.path} for row {self.row_key!r} could not be read "
            f"({self.problem}); an earlier submission may exist and may have been charged, "
            "so the row is not submitted again. Re-run once the storage answers, or, if the "
            "record is damaged, re-run with resubmit_ambiguous to submit the row again"
        )
