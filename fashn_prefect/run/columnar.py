"""Clear manifest rows in bulk: the columnar checks run before the per-row ones.

A catalog manifest is mostly rows that break no rule. For a manifest held as an Arrow
table, every rule that looks at one value at a time (its type, whether it is given, its
enum, its range, the shape of an image URL) runs over whole columns with pyarrow compute.
A row that passes every check there is *cleared*: valid, with its inputs hash and credit
estimate computed here too. Every other row (a problem, a value whose check needs Python,
a cross-field rule, an image path to open, a model the specs do not describe) is left to
:func:`fashn_prefect.run.validate._validate_row`, which words the problems exactly as
before. The hash is byte for byte the one the per-row path computes, so earlier results
tables and ledgers still match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.api import specs
from fashn_prefect.api.specs.types import InputField, ModelSpec

CHUNK_ROWS = 65_536
"""Rows checked at a time (bounds the memory of the intermediate columns)."""
RESERVED = ("row_id", "model_name")
# Whitespace is trimmed as ASCII: where Python's str.strip() would trim more (Unicode
# spaces), the value then fails a check here and the per-row path decides.
# Text that json.dumps writes unchanged between quotes (printable ASCII but '"' and '\');
# image URLs also have no space and no '[' or ']' (urlsplit reads those as an IPv6 host).
_PLAIN_TEXT = r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$"
_PLAIN_URL = r"^https?://[\x21\x24-\x2e\x30-\x3e\x40-\x5a\x5e-\x7e][\x21\x23-\x5a\x5e-\x7e]*$"
_INTEGER = r"^[+-]?[0-9]{1,18}$"
_TRUE = ["true", "yes", "1", "y", "t"]
_FALSE = ["false", "no", "0", "n", "f"]


@dataclass
class ClearedRows:
    """Rows (0-based positions) that the columnar checks found valid, with what
    validation computes for them; ``models`` holds each row's model name."""

    positions: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    credits: list[int] = field(default_factory=list)


def clear_rows(table: pa.Table, default_model: str | None) -> tuple[ClearedRows, list[int]]:
    """Check ``table`` column by column; return the cleared rows and the positions left to
    the per-row checks (ascending)."""
    cleared = ClearedRows()
    left: list[int] = []
    for start in range(0, max(table.num_rows, 1), CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        if chunk.num_rows:
            _clear_chunk(chunk, start, default_model, cleared, left)
    order = np.argsort(np.asarray(cleared.positions, dtype=np.int64), kind="stable")
    cleared.positions = [cleared.positions[i] for i in order]
    cleared.models = [cleared.models[i] for i in order]
    cleared.hashes = [cleared.hashes[i] for i in order]
    cleared.credits = [cleared.credits[i] for i in order]
    left.sort()
    return cleared, left


def _clear_chunk(
    chunk: pa.Table,
    offset: int,
    default_model: str | None,
    cleared: ClearedRows,
    left: list[int],
) -> None:
    models = _model_names(chunk, default_model)
    positions = np.arange(offset, offset + chunk.num_rows, dtype=np.int64)
    handled = np.zeros(chunk.num_rows, dtype=bool)
    for name in pc.unique(models.drop_null()).to_pylist() if models is not None else []:
        spec = specs.MODELS.get(name)
        if spec is None or spec.lifecycle == "deprecated":
            continue  # pass-through and deprecation warnings are worded per row
        in_group = pc.fill_null(pc.equal(models, name), False).to_numpy(zero_copy_only=False)
        group = chunk.filter(pa.array(in_group))
        ok, pieces = _check_group(group, spec)
        if ok is None:
            continue
        handled |= in_group
        group_positions = positions[in_group]
        good = np.asarray(ok, dtype=bool)
        left.extend(int(p) for p in group_positions[~good])
        texts = pieces.filter(pa.array(good))
        if not len(texts):
            continue
        prefix = '{"files":{},"inputs":{'
        suffix = "}," + f'"model_name":{json.dumps(name)}' + "}"
        hashes = [
            hashlib.sha256(f"{prefix}{text}{suffix}".encode()).hexdigest()
            for text in texts.to_pylist()
        ]
        cleared.positions.extend(int(p) for p in group_positions[good])
        cleared.models.extend([name] * len(hashes))
        cleared.hashes.extend(hashes)
        cleared.credits.extend(_estimates(group.filter(pa.array(good)), spec))
    left.extend(int(p) for p in positions[~handled])


def _model_names(chunk: pa.Table, default_model: str | None) -> pa.Array | None:
    """Each row's model name as the per-row path reads it (None where it must decide)."""
    if "model_name" not in chunk.column_names:
        return None if default_model is None else pa.array([default_model] * chunk.num_rows)
    column = chunk["model_name"].combine_chunks()
    if not pa.types.is_string(column.type):
        return None
    stripped = pc.ascii_trim_whitespace(column)
    given = pc.fill_null(pc.not_equal(stripped, ""), False)
    fallback = pa.scalar(default_model, pa.string())
    return pc.if_else(given, stripped, fallback)


def _check_group(group: pa.Table, spec: ModelSpec) -> tuple[Any, pa.Array]:
    """Per row of one model's rows: whether every value clears its field's checks, and
    the inputs' JSON members (sorted by name, as the hash writes them). ``(None, ...)``
    when the group needs the per-row checks as a whole."""
    ok = np.ones(group.num_rows, dtype=bool)
    members: list[tuple[str, pa.Array]] = []
    inputs_given: set[str] = set()
    for name in group.column_names:
        if name in RESERVED:
            continue
        f = spec.field(name)
        if f is None:
            continue  # metadata: carried as given, never checked
        column = group[name].combine_chunks()
        present = _present(column)
        value_ok, text = _field_values(column, f)
        if value_ok is None:
            return None, pa.array([])
        ok &= np.asarray(pc.or_(pc.invert(present), value_ok).to_numpy(zero_copy_only=False))
        member = pc.binary_join_element_wise(f"{json.dumps(name)}:", text, ",", "")
        members.append((name, pc.if_else(present, member, pa.scalar(None, pa.string()))))
        inputs_given.add(name)
        if name in specs.CROSS_FIELD_INPUTS.get(spec.name, ()):
            ok &= ~np.asarray(present.to_numpy(zero_copy_only=False))
    for f in spec.fields:
        if f.required and f.name not in inputs_given:
            return None, pa.array([])  # "is required but missing", worded per row
        if f.required:
            given = _present(group[f.name].combine_chunks())
            ok &= np.asarray(given.to_numpy(zero_copy_only=False))
    members.sort(key=lambda item: item[0])
    if not members:
        return ok, pa.array([""] * group.num_rows)
    # Each member ends with a comma; the last one's is cut. (null_handling="skip" would
    # drop rows whose members are all null.)
    joined = pc.binary_join_element_wise(
        *(m for _, m in members), "", null_handling="replace", null_replacement=""
    )
    return ok, pc.utf8_slice_codeunits(joined, 0, -1)


def _present(column: pa.Array) -> pa.Array:
    """Given: not null and, for text, not blank (what the per-row path calls present)."""
    if pa.types.is_string(column.type):
        blank = pc.equal(pc.ascii_trim_whitespace(column), "")
        return pc.fill_null(pc.invert(blank), False)
    return pc.is_valid(column)


def _field_values(column: pa.Array, f: InputField) -> tuple[pa.Array | None, pa.Array]:
    """Whether each value clears ``f``'s checks, and its JSON text; ``(None, ...)`` when
    the column's type needs the per-row checks."""
    if pa.types.is_string(column.type):
        if f.type == "integer":
            stripped = pc.ascii_trim_whitespace(column)
            ok = pc.fill_null(pc.match_substring_regex(stripped, _INTEGER), False)
            unsigned = pc.replace_substring_regex(stripped, r"^\+", "")
            numbers = pc.cast(pc.if_else(ok, unsigned, "0"), pa.int64())
            return _integer_ok(ok, numbers, f), pc.cast(numbers, pa.string())
        if f.type == "boolean":
            lowered = pc.utf8_lower(pc.ascii_trim_whitespace(column))
            truthy = pc.is_in(lowered, pa.array(_TRUE))
            ok = pc.or_(truthy, pc.is_in(lowered, pa.array(_FALSE)))
            return ok, pc.if_else(truthy, "true", "false")
        pattern = _PLAIN_URL if f.type == "image" else _PLAIN_TEXT
        ok = pc.fill_null(pc.match_substring_regex(column, pattern), False)
        if f.enum is not None:
            choices = [v for v in f.enum if isinstance(v, str)]
            ok = pc.and_(ok, pc.is_in(column, pa.array(choices, pa.string())))
        text = pc.binary_join_element_wise('"', column, '"', "")
        return ok, text
    if pa.types.is_integer(column.type) and f.type == "integer":
        numbers = pc.cast(column, pa.int64())
        return _integer_ok(pc.is_valid(column), numbers, f), pc.cast(numbers, pa.string())
    if pa.types.is_floating(column.type) and f.type == "integer":
        whole = pc.and_(pc.equal(pc.floor(column), column), pc.less(pc.abs(column), 2.0**53))
        whole = pc.fill_null(whole, False)
        numbers = pc.cast(pc.if_else(whole, column, 0.0), pa.int64())
        return _integer_ok(whole, numbers, f), pc.cast(numbers, pa.string())
    if pa.types.is_boolean(column.type) and f.type == "boolean":
        return pc.is_valid(column), pc.if_else(column, "true", "false")
    return None, pa.array([])


def _integer_ok(ok: pa.Array, numbers: pa.Array, f: InputField) -> pa.Array:
    if f.enum is not None:
        choices = [v for v in f.enum if isinstance(v, int) and not isinstance(v, bool)]
        ok = pc.and_(ok, pc.is_in(numbers, pa.array(choices, pa.int64())))
    if f.minimum is not None:
        ok = pc.and_(ok, pc.greater_equal(numbers, f.minimum))
    if f.maximum is not None:
        ok = pc.and_(ok, pc.less_equal(numbers, f.maximum))
    return pc.fill_null(ok, False)


def _estimates(rows: pa.Table, spec: ModelSpec) -> list[int]:
    """Each cleared row's credit estimate, computed once per distinct combination of its
    inputs, where an image counts only as given or not (a credit rule reads whether a
    ``face_reference`` is given, never which one)."""
    names = [n for n in rows.column_names if n not in RESERVED and spec.field(n) is not None]
    if not names:
        return [specs.estimate_credits(spec.name, {})] * rows.num_rows
    images = {n for n in names if (f := spec.field(n)) is not None and f.type == "image"}
    cache: dict[tuple[Any, ...], int] = {}
    out: list[int] = []
    for record in rows.select(names).to_pylist():
        key = tuple(_given(v) if n in images else v for n, v in record.items())
        known = cache.get(key)
        if known is None:
            inputs = {n: _typed(v, spec.field(n)) for n, v in record.items() if _given(v)}
            known = cache[key] = specs.estimate_credits(spec.name, inputs)
        out.append(known)
    return out


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _typed(value: Any, f: InputField | None) -> Any:
    """A cleared text value as its field's type (the checks above made it unambiguous)."""
    if f is not None and f.type == "integer" and isinstance(value, float):
        return int(value)
    if f is None or not isinstance(value, str):
        return value
    if f.type == "integer":
        return int(value.strip())
    if f.type == "boolean":
        return value.strip().lower() in _TRUE
    return value
