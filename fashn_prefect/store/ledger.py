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
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.store.fs import atomic_write, filesystem, is_hidden, join, safe_name
from fashn_prefect.store.records import (
    RecordSummary,
    RowRecord,
    UnreadableRecord,
    parse_record,
    utc_now,
)
from fashn_prefect.store.snapshots import (
    SNAPSHOT_SCHEMA,
    SUMMARY_COLUMNS,
    Damaged,
    LedgerRecords,
    SnapshotRows,
    decode_snapshots,
    newest,
    newest_rows,
    parquet_bytes,
)

LEDGER_DIR = "ledger"


SNAPSHOT_DIR = "snapshots"


MERGE_AT = 16
"""More snapshots than this in one output root are merged into one."""


_LIST_TRIES = 5


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
        atomic_write(self.fs, path, parquet_bytes(table))
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
        merged = newest(pa.concat_tables(tables))
        name = f"{utc_now().replace(':', '')}-merged-{uuid.uuid4().hex[:12]}"
        path = join(self.snapshot_root, f"{name}.parquet")
        atomic_write(self.fs, path, parquet_bytes(merged))
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
            tables, damaged = decode_snapshots(paths, contents, SUMMARY_COLUMNS)
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
            rows = mine[newest_rows(table.select(["row_key", "updated_at"]), mine)]
            # Snapshots holding each wanted key once, and nothing else, are kept as read.
            newest = table if len(rows) == table.num_rows else table.take(rows)
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
        existing = {name for name in existing if name.endswith(".json")}
        if not existing:  # every record settled into snapshots: no key's file name needed
            return {}
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
            parsed = parse_record(key, data, shown)
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

    def _read_snapshots(self, paths: list[str]) -> tuple[list[pa.Table], list[Damaged]]:
        """The readable snapshots (whole) and the damaged ones; a vanished one is in neither."""
        tables, damaged = decode_snapshots(paths, _read_all(self.fs, paths), None)
        return [tables[path] for path in paths if path in tables], damaged

    def _shown(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))


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
