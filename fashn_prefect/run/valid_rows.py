"""A valid manifest row (:class:`RowSpec`), how its values are typed, and the valid rows
of a manifest kept as columns (:class:`ValidRows`): a million rows stay small, and each
row's spec is rebuilt from its manifest row when it is read."""

from __future__ import annotations

import functools
import re
import sys
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import pyarrow as pa

from fashn_prefect.api import specs
from fashn_prefect.store.rows import ListLike

RESERVED_COLUMNS = ("row_id", "model_name")
"""Columns that are never inputs or metadata."""
_INT = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f"}


@dataclass(frozen=True)
class RowSpec:
    """A valid manifest row, ready to plan."""

    row: int
    row_key: str
    model_name: str
    inputs: dict[str, Any]
    metadata: dict[str, Any]
    inputs_hash: str
    estimated_credits: int
    catalogued: bool = True
    """False for a model the specs do not describe (a pass-through; credits unknown)."""


class TextColumn:
    """Strings kept as Arrow chunks of :data:`CHUNK_ROWS`: a million inputs hashes take
    68 MB, not the 121 MB of Python strings."""

    CHUNK_ROWS = 65_536

    def __init__(self) -> None:
        self._chunks: list[pa.Array] = []
        self._tail: list[str] = []

    def extend(self, texts: Sequence[str]) -> None:
        """Add every one of ``texts`` at the end, in order."""
        start = 0
        while start < len(texts):
            room = self.CHUNK_ROWS - len(self._tail)
            self._tail.extend(texts[start : start + room])
            start += room
            if len(self._tail) == self.CHUNK_ROWS:
                self._chunks.append(pa.array(self._tail, pa.string()))
                self._tail = []

    def __len__(self) -> int:
        return len(self._chunks) * self.CHUNK_ROWS + len(self._tail)

    def __getitem__(self, index: int) -> str:
        if index < 0:
            index += len(self)
        chunk, offset = divmod(index, self.CHUNK_ROWS)
        if chunk < len(self._chunks):
            return str(self._chunks[chunk][offset].as_py())
        return self._tail[offset]

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            yield from chunk.to_pylist()
        yield from self._tail

    def column(self) -> pa.ChunkedArray:
        """Every string, as one Arrow column (no copy)."""
        return pa.chunked_array([*self._chunks, pa.array(self._tail, pa.string())], pa.string())


class ValidRows(ListLike[RowSpec]):
    """The valid rows of a manifest, kept as a few columns; each :class:`RowSpec` is
    rebuilt from its manifest row when it is read (a million rows stay small)."""

    def __init__(self, source: Sequence[Mapping[str, Any]]) -> None:
        self._source = source
        self._positions = array("q")
        self._keys = TextColumn()
        self._models: list[str] = []
        self._hashes = TextColumn()
        self._credits = array("q")
        self._catalogued = bytearray()
        self._row_index: dict[int, int] | None = None

    def extend(
        self,
        positions: Sequence[int] | Any,
        keys: Sequence[str],
        models: Sequence[str],
        digests: Sequence[str],
        credits: Sequence[int],
        catalogued: Sequence[bool],
    ) -> None:
        """Add rows (0-based manifest ``positions``) with what validation found for them,
        one sequence per field."""
        self._row_index = None
        self._positions.extend(int(p) for p in positions)
        self._keys.extend(keys)
        self._models.extend(sys.intern(m) for m in models)
        self._hashes.extend(digests)
        self._credits.extend(credits)
        self._catalogued.extend(catalogued)

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, index: int) -> RowSpec: ...

    @overload
    def __getitem__(self, index: slice) -> list[RowSpec]: ...

    def __getitem__(self, index: int | slice) -> RowSpec | list[RowSpec]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = self._positions[index]
        model, catalogued = self._models[index], bool(self._catalogued[index])
        inputs, metadata = split_row(self._source[position], model, catalogued)
        return RowSpec(
            row=position + 1,
            row_key=self._keys[index],
            model_name=model,
            inputs=inputs,
            metadata=metadata,
            inputs_hash=self._hashes[index],
            estimated_credits=self._credits[index],
            catalogued=catalogued,
        )

    def __iter__(self) -> Iterator[RowSpec]:
        # In order: the manifest's rows are decoded a batch at a time, once each.
        source = self._source
        keys, hashes = iter(self._keys), iter(self._hashes)
        for index, position in enumerate(self._positions):
            model, catalogued = self._models[index], bool(self._catalogued[index])
            inputs, metadata = split_row(source[position], model, catalogued)
            yield RowSpec(
                position + 1,
                next(keys),
                model,
                inputs,
                metadata,
                next(hashes),
                self._credits[index],
                catalogued,
            )

    @property
    def row_numbers(self) -> list[int]:
        """Every valid row's 1-based manifest row, in manifest order."""
        return [position + 1 for position in self._positions]

    def by_row(self, rows: Sequence[int]) -> list[RowSpec]:
        """The valid rows at these 1-based manifest ``rows``."""
        if self._row_index is None:
            self._row_index = {p + 1: i for i, p in enumerate(self._positions)}
        return [self[self._row_index[row]] for row in rows]

    @property
    def keys(self) -> list[str]:
        """Every valid row's key, in manifest order (a new list)."""
        return list(self._keys)

    @property
    def hashes(self) -> list[str]:
        """Every valid row's inputs hash, in manifest order (a new list)."""
        return list(self._hashes)

    def key_column(self) -> pa.ChunkedArray:
        """Every valid row's key, in manifest order, as an Arrow column."""
        return self._keys.column()

    def hash_column(self) -> pa.ChunkedArray:
        """Every valid row's inputs hash, in manifest order, as an Arrow column."""
        return self._hashes.column()

    @property
    def models(self) -> list[str]:
        """Every valid row's model name, in manifest order."""
        return self._models

    def unknown_models(self) -> dict[str, int]:
        """Valid rows by model name, for models the specs do not describe."""
        found: dict[str, int] = {}
        for model, catalogued in zip(self._models, self._catalogued, strict=True):
            if not catalogued:
                found[model] = found.get(model, 0) + 1
        return found

    @property
    def credits(self) -> array[int]:
        """Every valid row's credit estimate, in manifest order."""
        return self._credits


def split_row(
    raw: Mapping[str, Any], model: str, catalogued: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid row's typed inputs and its metadata, as validation read them."""
    inputs: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    spec = specs.MODELS.get(model) if catalogued else None
    # Keyed by the spec's identity too: a model registered again gets a fresh layout.
    for column, kind in _layout(model, id(spec) if spec else None, tuple(raw)):
        value = raw[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if kind is None:
            metadata[column] = value
        elif kind == "generic":
            inputs[column] = coerce_generic(value)
        elif kind in ("string", "image") and isinstance(value, str):
            inputs[column] = value
        else:
            inputs[column] = coerce(value, kind)
    return inputs, metadata


@functools.lru_cache(maxsize=256)
def _layout(
    model: str, spec_id: int | None, columns: tuple[str, ...]
) -> tuple[tuple[str, str | None], ...]:
    """For each column of a row of ``model``: its input type, ``"generic"`` (an input of
    a pass-through model) or None (metadata); reserved columns are left out."""
    spec = specs.MODELS.get(model) if spec_id is not None else None
    layout: list[tuple[str, str | None]] = []
    for column in columns:
        if column in RESERVED_COLUMNS:
            continue
        if spec is None:
            layout.append((column, None if column.startswith("meta_") else "generic"))
        else:
            input_field = spec.field(column)
            layout.append((column, None if input_field is None else input_field.type))
    return tuple(layout)


def coerce_generic(value: Any) -> Any:
    """CSV text for an input of an unknown model: whole numbers and true/false are typed."""
    if isinstance(value, str):
        text = value.strip()
        if _INT.match(text):
            return int(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return value
    if hasattr(value, "item"):
        return value.item()
    return value


def present(value: Any) -> bool:
    if value is None:
        return False
    return not (isinstance(value, str) and value.strip() == "")


def coerce(value: Any, kind: str) -> Any:
    """Turn CSV text (and loosely typed Parquet values) into the field's type when unambiguous."""
    if kind == "integer":
        if isinstance(value, str) and _INT.match(value.strip()):
            return int(value.strip())
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind == "boolean":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        return value
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value
