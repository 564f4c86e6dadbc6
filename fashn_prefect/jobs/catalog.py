"""Incremental catalog runs: submit only the rows that are new or changed.

A catalog manifest is kept up to date by the business and run again and again into the
same output root. Each valid row is compared with what that root already holds:

* ``unchanged``: the same row key with the same inputs already completed: not submitted;
* ``new``: the row key was never seen in this output root;
* ``changed``: the row key completed before, but with different inputs;
* ``failed``: the row key and inputs failed with a permanent error (``ImageLoadError``,
  ``ContentModerationError``, ``BadRequest``...): the same inputs would fail again, so
  they are not submitted unless ``retry_failed`` is set;
* ``retry``: the row key and inputs were seen but never completed (a transient failure,
  or an interrupted run): submitted again (or resumed, see :mod:`fashn_prefect.run.plan`).

The catalog is read and validated once; the run itself is a ``fashn-run-manifest``
subflow (:func:`fashn_prefect.run.pipeline.run_predictions` given the checked rows),
which skips unchanged rows on its own; when nothing is new, changed or pending the
catalog run submits nothing and writes no results table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fashn_prefect.errors import PERMANENT_ERRORS
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.run.request import CheckedRows, RunRequest
from fashn_prefect.run.validate import RowSpec, ValidRows
from fashn_prefect.settings import FashnSettings
from fashn_prefect.store.results import read_results


@dataclass
class CatalogChanges:
    """How a catalog compares with its output root."""

    rows: int
    invalid: int
    new: int
    changed: int
    unchanged: int
    retry: int
    estimated_credits: int
    failed: int = 0

    @property
    def to_run(self) -> int:
        """Rows a run would submit or resume."""
        return self.new + self.changed + self.retry

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {**asdict(self), "to_run": self.to_run}


def classify(
    rows: Sequence[RowSpec],
    output_url: str,
    storage_options: dict[str, Any] | None = None,
    retry_failed: bool = False,
) -> dict[str, list[int]]:
    """Split valid rows (by index) into ``new``, ``changed``, ``unchanged``, ``failed``
    and ``retry``, matching them with earlier results tables in Arrow."""
    keys: Sequence[str] | pa.ChunkedArray
    hashes: Sequence[str] | pa.ChunkedArray
    if isinstance(rows, ValidRows):
        keys, hashes = rows.key_column(), rows.hash_column()
    else:
        keys, hashes = [r.row_key for r in rows], [r.inputs_hash for r in rows]
    table = read_results(
        output_url,
        columns=["row_key", "inputs_hash", "status", "output_uris", "error_name"],
        storage_options=storage_options,
    )
    groups: dict[str, list[int]] = {
        g: [] for g in ("new", "changed", "unchanged", "failed", "retry")
    }
    if table is None or not table.num_rows:
        groups["new"] = list(range(len(keys)))
        return groups
    wanted = pa.table(
        {
            "row_key": pa.array(keys, pa.string()),
            "inputs_hash": pa.array(hashes, pa.string()),
            "_i": pa.array(np.arange(len(keys), dtype=np.int64)),
        }
    )
    status = table["status"]
    done = pc.and_(
        pc.is_in(status, pa.array(["completed", "skipped"])),
        pc.greater(pc.list_value_length(table["output_uris"]), 0),
    )
    failed = pc.and_(
        pc.equal(status, "failed"),
        pc.is_in(table["error_name"], pa.array(sorted(PERMANENT_ERRORS))),
    )
    pair = ["row_key", "inputs_hash"]
    is_done = _matched(wanted, table.filter(pc.fill_null(done, False)), pair)
    is_failed = _matched(wanted, table.filter(pc.fill_null(failed, False)), pair)
    seen_pair = _matched(wanted, table, pair)
    seen_key = _matched(wanted, table, ["row_key"])
    for i in range(len(keys)):
        if is_done[i]:
            groups["unchanged"].append(i)
        elif is_failed[i] and not retry_failed:
            groups["failed"].append(i)
        elif not seen_key[i]:
            groups["new"].append(i)
        elif seen_pair[i]:
            groups["retry"].append(i)
        else:
            groups["changed"].append(i)
    return groups


def _matched(wanted: pa.Table, found: pa.Table, columns: list[str]) -> np.ndarray:
    """For each row of ``wanted`` (numbered by its ``_i`` column): whether ``found`` has a
    row with the same values in ``columns``."""
    hit = np.zeros(wanted.num_rows, dtype=bool)
    if not found.num_rows:
        return hit
    distinct = found.select(columns).group_by(columns).aggregate([])
    pairs = wanted.select([*columns, "_i"]).join(distinct, columns, join_type="inner")
    hit[pairs["_i"].to_numpy()] = True
    return hit


def catalog_changes(
    manifest_url: str,
    output_url: str,
    *,
    model_name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    retry_failed: bool = False,
) -> CatalogChanges:
    """Read and validate the catalog, and count what changed since earlier runs."""
    settings = FashnSettings(storage_options=storage_options or {}, retry_failed=retry_failed)
    request = RunRequest(output_url, model_name, settings=settings)
    return count_changes(request.check(request.read(manifest_url)), request)


def count_changes(checked: CheckedRows, request: RunRequest) -> CatalogChanges:
    """Count what changed in the checked catalog since earlier runs into ``request.output``."""
    report = checked.report
    options = request.storage_options
    groups = classify(report.rows, request.output, options, request.settings.retry_failed)
    to_run = groups["new"] + groups["changed"] + groups["retry"]
    if isinstance(report.rows, ValidRows):
        credits: Sequence[int] = report.rows.credits
    else:
        credits = [r.estimated_credits for r in report.rows]
    return CatalogChanges(
        rows=report.total_rows,
        invalid=len(report.invalid_rows),
        new=len(groups["new"]),
        changed=len(groups["changed"]),
        unchanged=len(groups["unchanged"]),
        retry=len(groups["retry"]),
        estimated_credits=sum(credits[i] for i in to_run),
        failed=len(groups["failed"]),
    )


async def run_catalog(manifest: str, request: RunRequest, *, logger: Any = None) -> dict[str, Any]:
    """Run the new and changed rows of the catalog at URL ``manifest``; return the changes
    and the run summary.

    The catalog is read and validated once; its checked rows go to the
    ``fashn-run-manifest`` subflow as they are. An invalid catalog raises
    :class:`~fashn_prefect.errors.ManifestInvalid` (every problem, nothing submitted)
    unless ``skip_invalid`` is set. Rows that failed with a permanent error for the same
    inputs are left alone unless ``retry_failed`` is set.
    """
    from fashn_prefect.errors import ManifestInvalid
    from fashn_prefect.run.pipeline import run_predictions

    checked = request.check(request.read(manifest))
    report = checked.report
    if not report.ok and not request.settings.skip_invalid:
        if logger is not None:
            logger.error("Catalog has invalid rows; nothing was submitted.\n%s", report.format(50))
        raise ManifestInvalid(report)
    changes = count_changes(checked, request)
    message = (
        f"catalog: {changes.rows} rows, {changes.new} new, {changes.changed} changed, "
        f"{changes.retry} to retry, {changes.unchanged} unchanged, "
        f"{changes.failed} failed before (not retried), {changes.invalid} invalid; "
        f"{changes.estimated_credits} credits estimated"
    )
    if logger is not None:
        logger.info(message)
    result: dict[str, Any] = {"changes": changes.as_dict(), "message": message}
    if changes.to_run == 0 and changes.invalid == 0:
        if logger is not None:
            logger.info("Catalog unchanged since the last run: nothing submitted.")
        result["run"] = None
        return result
    # The run keeps its flow name; it takes the rows as checked here, not the file again.
    run = run_predictions.with_options(name="fashn-run-manifest")
    result["run"] = await summary_of(run(rows=checked, **request.flow_parameters()))
    return result
