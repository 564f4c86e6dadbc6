"""The results table's row for each manifest row: from its ledger record, from an earlier
results table (a skipped row), from the error that failed it, or from validation."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State

from fashn_prefect.run.collect import credits_source
from fashn_prefect.run.manifest import Manifest
from fashn_prefect.run.plan import PlannedRow
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.submit import save_quietly
from fashn_prefect.run.validate import RESERVED_COLUMNS, RowSpec, ValidationReport
from fashn_prefect.run.write import interrupted_at, result_row

__all__ = ["failed_row", "invalid_rows", "row_from_record", "settled_row"]

AMBIGUOUS_MESSAGE = (
    "an earlier submission's outcome is unknown (it may have been charged); re-run with "
    "resubmit_ambiguous to submit it again"
)


def row_from_record(row: PlannedRow, status: str, **extra: Any) -> dict[str, Any]:
    """The result row of ``row`` from its ledger record, with ``status`` and ``extra``."""
    record = row.record
    attempts = record.attempts if record else []
    # A charge an earlier results table already reports (a row reported again) is not
    # booked twice.
    charged = [
        a
        for a in attempts
        if a.prediction_id
        and (a.credits_used or 0) > 0
        and a.prediction_id not in row.reported_charges
    ]
    first = attempts[0] if attempts else None
    last = attempts[-1] if attempts else None
    values: dict[str, Any] = {
        "prediction_ids": [a.prediction_id for a in attempts if a.prediction_id],
        "attempts": len(attempts),
        # An attempt left at "submitting" (a process killed mid-POST) is just as unknown.
        "ambiguous": any(a.status in ("ambiguous", "submitting") for a in attempts),
        "credits_charged": sum(a.credits_used or 0 for a in charged),
        "credits_source": credits_source(attempts),
        "output_uris": record.outputs if record else [],
        "submitted_at": first.submitted_at if first else None,
        "completed_at": last.completed_at if last else None,
        "interrupted_at": interrupted_at(attempts),
        "completion_seen_by": last.completion_seen_by if last else None,
        "detection_delay_s": last.detection_delay_s if last else None,
    }
    values.update(extra)
    return result_row(row.spec, status, **values)


def settled_row(row: PlannedRow) -> dict[str, Any] | None:
    """The result row of a row this run does not send to the API (skipped, recovered,
    ambiguous, failed before), or None for a row to submit or resume."""
    if row.action == "skip":
        prev = row.previous or {}
        return result_row(
            row.spec,
            "skipped",
            prediction_ids=prev.get("prediction_ids") or [],
            output_uris=prev.get("output_uris") or [],
            completed_at=prev.get("completed_at"),
            # A row once charged for an ambiguous submission stays flagged in every re-run.
            ambiguous=bool(prev.get("ambiguous")),
        )
    if row.action == "ambiguous":
        return row_from_record(
            row,
            "failed",
            error_name="AmbiguousSubmission",
            ambiguous=True,
            error_message=row.problem or AMBIGUOUS_MESSAGE,
        )
    if row.action == "recover":
        return row_from_record(row, "completed")
    if row.action == "failed" and row.record is not None and row.record.last is not None:
        last = row.record.last
        return row_from_record(
            row, "failed", error_name=last.error_name, error_message=last.error_message
        )
    return None


def _error_of(exc: BaseException) -> tuple[str, str]:
    name = getattr(exc, "name", None) or type(exc).__name__
    message = getattr(exc, "message", None) or str(exc)
    return str(name), str(message)


async def failed_row(rt: Runtime, row: PlannedRow, state: State[Any]) -> dict[str, Any]:
    """The result row of a row task that did not complete, with its real error.

    A row whose prediction completed (and was charged) but whose outputs could not be
    stored is recorded as failed; a re-run resumes the recorded prediction and collects
    its outputs, never submitting it again.
    """
    exc = await state.aresult(raise_on_failure=False)
    name, message = _error_of(exc) if isinstance(exc, BaseException) else ("Failed", str(exc))
    record = row.record
    last = record.last if record is not None else None
    if record is not None and last is not None and last.status == record.status == "completed":
        record.status = "failed"
        await save_quietly(rt, record)
    return row_from_record(row, "failed", error_name=name, error_message=message)


def invalid_rows(report: ValidationReport, manifest: Manifest) -> list[dict[str, Any]]:
    """Result rows for invalid manifest rows: their own row id, model and columns as given."""
    file_problems = [str(p) for p in report.errors if p.row is None]
    rows = []
    for row, problems in sorted(report.invalid_rows.items()):
        raw = manifest.rows[row - 1] if 0 < row <= len(manifest.rows) else {}
        given_id = raw.get("row_id")
        key = str(given_id).strip() if given_id not in (None, "") else f"invalid-row-{row}"
        model = raw.get("model_name")
        metadata = {k: v for k, v in raw.items() if k not in RESERVED_COLUMNS and v is not None}
        spec = RowSpec(row, key, "" if model is None else str(model), {}, metadata, "", 0)
        message = "; ".join([str(p) for p in problems if p.level == "error"] + file_problems)
        rows.append(result_row(spec, "invalid", error_name="InvalidRow", error_message=message))
    return rows
