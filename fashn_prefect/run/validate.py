"""Validate every manifest row before anything is submitted.

Each problem names its row (1-based, in file order), its column and what is wrong, and
every problem in every row is reported, not just the first. Valid rows come out as
:class:`RowSpec` objects with typed inputs, a stable row key and a credit estimate.

A model the specs do not describe (FASHN ships new ones without notice) runs as a
*pass-through* unless ``allow_unknown_models`` is off: every non-empty column other than
``row_id``, ``model_name`` and ``meta_*`` columns is sent as an input (CSV text that is a
whole number becomes an integer, ``true``/``false`` a boolean), image inputs named like
FASHN's (``image``, ``*_image``, ``*_reference``, ``mask``...) that are paths are checked
and encoded, and only generic checks apply. Its credits are unknown (estimated 0) until
the API reports them. Describe the model as data (:mod:`fashn_prefect.api.specs.files`) to
give it full validation and estimates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.api import specs
from fashn_prefect.api.specs import load_models_from_env
from fashn_prefect.errors import UnknownModel
from fashn_prefect.run.columnar import ClearedRows, clear_rows
from fashn_prefect.run.manifest import Manifest
from fashn_prefect.run.valid_rows import (
    RESERVED_COLUMNS,
    RowSpec,
    ValidRows,
    coerce,
    coerce_generic,
    present,
)
from fashn_prefect.store.fs import filesystem

# What a FASHN model name looks like (tryon-v1.6, product-to-model): the pass-through
# check for names the specs do not describe.
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PLACEHOLDER_IMAGE = "data:image/png;base64,iVBORw0KGgo="
_REMOTE = ("http://", "https://", "data:", "saved:")


@dataclass(frozen=True)
class RowProblem:
    """One problem in one manifest row (``row`` is 1-based; ``None`` for the whole file)."""

    row: int | None
    column: str | None
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row is not None else ["manifest"]
        if self.column:
            where.append(f"column {self.column!r}")
        prefix = "warning: " if self.level == "warning" else ""
        return f"{', '.join(where)}: {prefix}{self.message}"


@dataclass
class ValidationReport:
    """The outcome of validating a manifest: valid rows plus every problem found."""

    rows: Sequence[RowSpec] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    invalid_rows: dict[int, list[RowProblem]] = field(default_factory=dict)
    total_rows: int = 0

    @property
    def errors(self) -> list[RowProblem]:
        """Problems that make a row invalid."""
        return [p for p in self.problems if p.level == "error"]

    @property
    def ok(self) -> bool:
        """True when no row is invalid."""
        return not self.errors

    @property
    def estimated_credits(self) -> int:
        """Expected charge for all valid rows if every prediction completes."""
        if isinstance(self.rows, ValidRows):
            return sum(self.rows.credits)
        return sum(r.estimated_credits for r in self.rows)

    def format(self, limit: int | None = None) -> str:
        """Human-readable report listing every problem (or the first ``limit``)."""
        errors, warnings = self.errors, [p for p in self.problems if p.level == "warning"]
        lines = [
            f"{len(self.invalid_rows)} of {self.total_rows} rows invalid "
            f"({len(errors)} problems, {len(warnings)} warnings)"
        ]
        shown = self.problems if limit is None else self.problems[:limit]
        lines += [f"  {p}" for p in shown]
        if limit is not None and len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def validate_manifest(
    manifest: Manifest,
    *,
    model_name: str | None = None,
    check_images: bool = True,
    storage_options: dict[str, Any] | None = None,
    allow_unknown_models: bool = True,
) -> ValidationReport:
    """Check every row of ``manifest``; ``model_name`` applies to rows without one.

    ``allow_unknown_models=False`` makes a model name the specs do not describe an error
    instead of a pass-through. A manifest held as an Arrow table is checked column by
    column first (:mod:`fashn_prefect.run.columnar`); the rows that does not clear are
    checked one by one, with the same problems and the same row keys and hashes.
    """
    load_models_from_env()
    total = len(manifest.rows)
    report = ValidationReport(rows=ValidRows(manifest.rows), total_rows=total)
    if model_name is None and "model_name" not in manifest.columns:
        report.problems.append(
            RowProblem(
                None,
                "model_name",
                "no model_name column and no model name given for all rows "
                "(pass --model-name or add a model_name column)",
            )
        )
        report.invalid_rows = {i + 1: [] for i in range(total)}
        return report
    table = manifest.table
    if table is not None:
        cleared, left = clear_rows(table, model_name)
    else:
        cleared, left = ClearedRows(), list(range(total))
    images = _ImageChecker(storage_options or {}) if check_images else None
    problems: dict[int, list[RowProblem]] = {}  # by row, for rows with any
    checked: list[tuple[int, RowSpec]] = []  # the rows left to the per-row checks
    for position in left:
        found: list[RowProblem] = []
        raw = manifest.rows[position]
        spec = _validate_row(position + 1, raw, model_name, found, images, allow_unknown_models)
        if found:
            problems[position + 1] = found
        if spec is not None:
            checked.append((position, spec))
    row_ids = _row_ids(manifest)
    keys = _row_keys(row_ids, cleared, checked)
    for row, problem in _duplicates(keys, row_ids):
        problems.setdefault(row, []).append(problem)
    for row in sorted(problems):
        report.problems.extend(problems[row])
        if any(p.level == "error" for p in problems[row]):
            report.invalid_rows[row] = problems[row]
    _add_valid(report.rows, cleared, checked, keys, report.invalid_rows)
    return report


def _row_keys(
    row_ids: list[Any], cleared: ClearedRows, checked: list[tuple[int, RowSpec]]
) -> list[str | None]:
    """Each row's key: its ``row_id`` as given (stripped), else the key its valid inputs
    give it; None for an invalid row without a ``row_id``."""
    keys: list[str | None] = [str(g).strip() if present(g) else None for g in row_ids]
    for position, digest in zip(cleared.positions, cleared.hashes, strict=True):
        if keys[position] is None:
            keys[position] = f"auto-{digest[:16]}"
    for position, spec in checked:
        if keys[position] is None:
            keys[position] = spec.row_key
    return keys


def _duplicates(keys: list[str | None], row_ids: list[Any]) -> list[tuple[int, RowProblem]]:
    """A problem for each row whose key an earlier row has (a given ``row_id``, or
    identical inputs)."""
    given = pa.array(keys, pa.string())
    if pc.count_distinct(given).as_py() == len(given) - given.null_count:
        return []  # every key once: the usual catalog, decided in Arrow
    seen: dict[str, int] = {}
    found = []
    for position, key in enumerate(keys):
        if key is None:
            continue
        row = position + 1
        first = seen.setdefault(key, row)
        if first != row:
            own = present(row_ids[position])
            what = f"row_id {key!r}" if own else "identical inputs"
            message = f"duplicate {what} (also row {first})"
            found.append((row, RowProblem(row, "row_id" if own else None, message)))
    return found


def _add_valid(
    valid: Sequence[RowSpec],
    cleared: ClearedRows,
    checked: list[tuple[int, RowSpec]],
    keys: list[str | None],
    invalid: Mapping[int, Any],
) -> None:
    """Add the rows without errors to ``valid``, in manifest order."""
    assert isinstance(valid, ValidRows)
    positions = np.array([*cleared.positions, *(p for p, _ in checked)], dtype=np.int64)
    row_keys = [*(cast(str, keys[p]) for p in cleared.positions), *(s.row_key for _, s in checked)]
    models = [*cleared.models, *(s.model_name for _, s in checked)]
    hashes = [*cleared.hashes, *(s.inputs_hash for _, s in checked)]
    credits = [*cleared.credits, *(s.estimated_credits for _, s in checked)]
    catalogued = [True] * len(cleared.positions) + [s.catalogued for _, s in checked]
    order = np.argsort(positions, kind="stable")
    if invalid:
        order = order[~np.isin(positions[order], np.array(list(invalid), np.int64) - 1)]
    if len(order) == len(positions) and not checked:  # cleared rows only, all valid
        valid.extend(positions, row_keys, models, hashes, credits, catalogued)
        return
    picked = order.tolist()
    valid.extend(
        positions[order],
        [row_keys[i] for i in picked],
        [models[i] for i in picked],
        [hashes[i] for i in picked],
        [credits[i] for i in picked],
        [catalogued[i] for i in picked],
    )


def _row_ids(manifest: Manifest) -> list[Any]:
    """Each row's ``row_id`` value as given (None where the column is absent)."""
    table = manifest.table
    if "row_id" not in manifest.columns:
        return [None] * len(manifest.rows)
    if table is not None:
        return table["row_id"].to_pylist()
    return [raw.get("row_id") for raw in manifest.rows]


def validate_inputs(
    model_name: str,
    inputs: Mapping[str, Any],
    *,
    storage_options: dict[str, Any] | None = None,
    allow_unknown_models: bool = True,
) -> tuple[RowSpec | None, list[str]]:
    """Check one prediction's inputs as a manifest row's are checked (for the tasks).

    Returns the row spec (without a row key) and no problems, or None and every problem,
    each naming its input. An input the model does not take is a problem here: a task has
    no metadata columns.
    """
    load_models_from_env()
    problems: list[RowProblem] = []
    images = _ImageChecker(storage_options or {})
    raw = {**inputs, "model_name": model_name}
    spec = _validate_row(1, raw, None, problems, images, allow_unknown_models)
    errors = [p for p in problems if p.level == "error"]
    if spec is not None:
        errors += [
            RowProblem(1, column, f"not an input of {model_name}") for column in spec.metadata
        ]
    if errors or spec is None:
        return None, [f"{p.column or 'model_name'}: {p.message}" for p in errors]
    return replace(spec, row_key=""), []


def _validate_row(
    row: int,
    raw: Mapping[str, Any],
    default_model: str | None,
    problems: list[RowProblem],
    images: _ImageChecker | None,
    allow_unknown: bool = True,
) -> RowSpec | None:
    model = raw.get("model_name")
    model = str(model).strip() if present(model) else default_model
    if not model:
        problems.append(RowProblem(row, "model_name", "missing model_name"))
        return None
    try:
        spec = specs.get_model(model)
    except UnknownModel as exc:
        if allow_unknown and _MODEL_NAME.match(model):
            return _pass_through_row(row, raw, model, problems, images)
        if allow_unknown:
            problems.append(
                RowProblem(
                    row,
                    "model_name",
                    f"{exc}; not a model name either (lower-case letters, digits, '.', '-')",
                )
            )
            return None
        problems.append(
            RowProblem(row, "model_name", f"{exc} (unknown models are not allowed in this run)")
        )
        return None
    inputs: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    fingerprints: dict[str, str] = {}
    checked_inputs: dict[str, Any] = {}
    for column, value in raw.items():
        if column in RESERVED_COLUMNS or not present(value):
            continue
        input_field = spec.field(column)
        if input_field is None:
            # Not an input of this row's model (possibly an input of another model in a
            # mixed manifest): carried into the results as metadata.
            metadata[column] = value
            continue
        typed = coerce(value, input_field.type)
        inputs[column] = typed
        checked_inputs[column] = typed
        if input_field.type == "image" and isinstance(typed, str) and not typed.startswith(_REMOTE):
            checked_inputs[column] = _PLACEHOLDER_IMAGE
            if images is not None:
                error, fingerprint = images.check(typed)
                if error:
                    problems.append(RowProblem(row, column, error))
                else:
                    fingerprints[column] = fingerprint
    for problem in specs.validate(model, checked_inputs):
        problems.append(RowProblem(row, problem.field, problem.message, problem.level))
    if any(p.level == "error" for p in problems):
        return None
    row_id = raw.get("row_id")
    digest = _hash({"model_name": model, "inputs": inputs, "files": fingerprints})
    key = str(row_id).strip() if present(row_id) else f"auto-{digest[:16]}"
    return RowSpec(
        row=row,
        row_key=key,
        model_name=model,
        inputs=inputs,
        metadata=metadata,
        inputs_hash=digest,
        estimated_credits=specs.estimate_credits(model, inputs),
    )


def _pass_through_row(
    row: int,
    raw: Mapping[str, Any],
    model: str,
    problems: list[RowProblem],
    images: _ImageChecker | None,
) -> RowSpec | None:
    """A row of a model the specs do not describe: inputs as given, generic checks only."""
    inputs: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    fingerprints: dict[str, str] = {}
    checked: dict[str, Any] = {}
    for column, value in raw.items():
        if column in RESERVED_COLUMNS or not present(value):
            continue
        if column.startswith("meta_"):
            metadata[column] = value
            continue
        typed = coerce_generic(value)
        inputs[column] = checked[column] = typed
        is_path = isinstance(typed, str) and not typed.startswith(_REMOTE)
        if specs.is_image_input_name(column) and is_path:
            checked[column] = _PLACEHOLDER_IMAGE
            if images is not None:
                error, fingerprint = images.check(typed)
                if error:
                    problems.append(RowProblem(row, column, error))
                else:
                    fingerprints[column] = fingerprint
    for problem in specs.generic_problems(checked):
        problems.append(RowProblem(row, problem.field, problem.message, problem.level))
    if any(p.level == "error" for p in problems):
        return None
    row_id = raw.get("row_id")
    digest = _hash({"model_name": model, "inputs": inputs, "files": fingerprints})
    key = str(row_id).strip() if present(row_id) else f"auto-{digest[:16]}"
    return RowSpec(row, key, model, inputs, metadata, digest, 0, catalogued=False)


def _hash(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _ImageChecker:
    """Checks local and object-storage image paths once each: present, non-empty, decodable."""

    def __init__(self, storage_options: dict[str, Any]) -> None:
        self._options = storage_options
        self._cache: dict[str, tuple[str | None, str]] = {}

    def check(self, path: str) -> tuple[str | None, str]:
        if path not in self._cache:
            self._cache[path] = self._check(path)
        return self._cache[path]

    def _check(self, path: str) -> tuple[str | None, str]:
        from PIL import Image, UnidentifiedImageError

        try:
            fs, inner = filesystem(path, **self._options)
            info = fs.info(inner)
        except FileNotFoundError:
            return f"image file not found: {path}", ""
        except Exception as exc:
            return f"image file cannot be read: {path} ({type(exc).__name__}: {exc})", ""
        if info.get("type") == "directory":
            return f"image path is a directory, not a file: {path}", ""
        size = int(info.get("size") or 0)
        if size == 0:
            return f"image file is empty: {path}", ""
        try:
            with fs.open(inner, "rb") as handle, Image.open(handle) as image:
                image.verify()
        except UnidentifiedImageError:
            return f"not a readable image (unknown or corrupt format): {path}", ""
        except (OSError, SyntaxError, ValueError) as exc:
            return f"not a readable image: {path} ({type(exc).__name__}: {exc})", ""
        stamp = (
            info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        )
        return None, f"{size}:{stamp}"
