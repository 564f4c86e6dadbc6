"""Arrow tables read as Python rows (dicts), a batch at a time: manifests, earlier results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, overload

import pyarrow as pa

T = TypeVar("T")


class ListLike(Sequence[T]):
    """A sequence built on demand that compares like a list: equal to any sequence (not
    text) with equal items in the same order."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))


BATCH_ROWS = 4096
"""Rows decoded into Python at a time."""


class BatchedRows(ListLike[dict[str, Any]]):
    """An Arrow table's rows as dicts, decoded a batch at a time.

    A million-row table stays columnar (a few bytes per value) instead of a million
    dicts; indexing and iterating decode :data:`BATCH_ROWS` rows at once and keep the
    latest batch, so reading in order costs one decode per batch.
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._start = -1
        self._batch: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index - index % BATCH_ROWS
        if start != self._start:
            self._batch = self.table.slice(start, BATCH_ROWS).to_pylist()
            self._start = start
        return self._batch[index - start]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.table.to_batches(max_chunksize=BATCH_ROWS):
            yield from batch.to_pylist()

    def take(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """The rows at these 0-based ``positions``, in that order."""
        return self.table.take(pa.array(positions, pa.int64())).to_pylist()
