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

The run itself is :func:`fashn_prefect.run.pipeline.run_manifest`, which skips unchanged rows on
its own; when nothing is new, changed or pending the catalog run submits nothing and writes
no results table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fashn_prefect.api.errors import PERMANENT_ERRORS
from fashn_prefect.credentials import FashnCredentials
from fashn_prefect.run.manifest import read_manifest
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.run.validate import RowSpec, ValidationReport, validate_manifest
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
    rows: list[RowSpec],
    output_url: str,
    storage_options: dict[str, Any] | None = None,
    retry_failed: bool = False,
) -> dict[str, list[RowSpec]]:
    """Split valid rows into ``new``, ``changed``, ``unchanged``, ``failed`` and ``retry``."""
    table = read_results(
        output_url,
        columns=["row_key", "inputs_hash", "status", "output_uris", "error_name"],
        storage_options=storage_options,
    )
    seen: dict[str, set[str]] = {}
    done: set[tuple[str, str]] = set()
    failed: set[tuple[str, str]] = set()
    for record in table.to_pylist() if table is not None else []:
        key = (record["row_key"], record["inputs_hash"])
        seen.setdefault(key[0], set()).add(key[1])
        if record["status"] in ("completed", "skipped") and record.get("output_uris"):
            done.add(key)
        elif record["status"] == "failed" and record.get("error_name") in PERMANENT_ERRORS:
            failed.add(key)
    groups: dict[str, list[RowSpec]] = {
        "new": [],
        "changed": [],
        "unchanged": [],
        "failed": [],
        "retry": [],
    }
    for spec in rows:
        key = (spec.row_key, spec.inputs_hash)
        if key in done:
            groups["unchanged"].append(spec)
        elif key in failed and not retry_failed:
            groups["failed"].append(spec)
        elif spec.row_key not in seen:
            groups["new"].append(spec)
        elif spec.inputs_hash in seen[spec.row_key]:
            groups["retry"].append(spec)
        else:
            groups["changed"].append(spec)
    return groups


def catalog_changes(
    manifest_url: str,
    output_url: str,
    *,
    model_name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    retry_failed: bool = False,
) -> CatalogChanges:
    """Read and validate the catalog, and count what changed since earlier runs."""
    return _changes(manifest_url, output_url, model_name, storage_options or {}, retry_failed)[0]


def _changes(
    manifest_url: str,
    output_url: str,
    model_name: str | None,
    options: dict[str, Any],
    retry_failed: bool = False,
) -> tuple[CatalogChanges, ValidationReport]:
    report = validate_manifest(
        read_manifest(manifest_url, storage_options=options),
        model_name=model_name,
        storage_options=options,
    )
    groups = classify(report.rows, output_url, options, retry_failed)
    to_run = groups["new"] + groups["changed"] + groups["retry"]
    changes = CatalogChanges(
        rows=report.total_rows,
        invalid=len(report.invalid_rows),
        new=len(groups["new"]),
        changed=len(groups["changed"]),
        unchanged=len(groups["unchanged"]),
        retry=len(groups["retry"]),
        estimated_credits=sum(s.estimated_credits for s in to_run),
        failed=len(groups["failed"]),
    )
    return changes, report


async def run_catalog(
    manifest: str,
    output: str,
    *,
    model_name: str | None = None,
    credentials: FashnCredentials | str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    settings: FashnSettings | None = None,
    logger: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Run the new and changed rows of a catalog; return the changes and the run summary.

    ``settings`` (and any of its fields given by name) go to
    :func:`~fashn_prefect.run.pipeline.run_manifest`. An invalid catalog raises
    :class:`~fashn_prefect.run.errors.ManifestInvalid` (every problem, nothing submitted)
    unless ``skip_invalid`` is set. Rows that failed with a permanent error for the same
    inputs are left alone unless ``retry_failed`` is set.
    """
    from fashn_prefect.run.errors import ManifestInvalid
    from fashn_prefect.run.pipeline import run_manifest

    s = FashnSettings.build(settings, **options)
    storage = s.resolved_storage_options()
    changes, report = _changes(manifest, output, model_name, storage, s.retry_failed)
    if not report.ok and not s.skip_invalid:
        if logger is not None:
            logger.error("Catalog has invalid rows; nothing was submitted.\n%s", report.format(50))
        raise ManifestInvalid(report)
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
    run = run_manifest(
        manifest=manifest,
        output=output,
        model_name=model_name,
        credentials=credentials,
        budget=budget,
        dry_run=dry_run,
        settings=s,  # the storage block's name only: its secrets stay out of parameters
    )
    result["run"] = await summary_of(run)  # also when the run ended Failed
    return result
