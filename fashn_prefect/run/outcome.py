"""Final states that tell the truth: a run, backfill or audit that went wrong ends Failed.

The flows still do all their work (results table, images, gallery, report) and then return
a state built here: ``Completed`` with the summary as its result, or ``Failed`` whose
message carries the counts. A ``Failed`` state's result is a :class:`RunFailed` exception
that holds the same summary, so a caller that awaits the flow gets it back with
:func:`summary_of` (the CLI prints it and exits with its documented code).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any

from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from fashn_prefect.errors import RunFailed
from fashn_prefect.run import events
from fashn_prefect.run.advice import ambiguous_advice
from fashn_prefect.settings import FailureThreshold

__all__ = [
    "FailureThreshold",
    "RunFailed",
    "budget_refused",
    "judge_audit",
    "judge_backfill",
    "judge_run",
    "run_to_summary",
    "state_for",
    "summary_of",
]


def counts_message(totals: dict[str, Any]) -> str:
    """``"7 of 10 rows completed, 3 failed (ImageLoadError: 3), ...; 14 credits charged"``."""
    processed = sum(totals.get(s, 0) for s in ("completed", "failed", "invalid"))
    errors = {k: v for k, v in (totals.get("errors") or {}).items() if k != "InvalidRow"}
    grouped = ", ".join(f"{name}: {count}" for name, count in sorted(errors.items()))
    return (
        f"{totals.get('completed', 0)} of {processed} rows completed, "
        f"{totals.get('failed', 0)} failed"
        + (f" ({grouped})" if grouped else "")
        + f", {totals.get('invalid', 0)} invalid, {totals.get('skipped', 0)} skipped; "
        f"{totals.get('credits_charged', 0)} credits charged"
    )


def judge_run(
    summary: dict[str, Any], threshold: FailureThreshold, account_id: str | None = None
) -> dict[str, Any]:
    """Decide a manifest run's outcome, record it as ``summary["outcome"]`` and emit
    ``fashn.run.finished``; return the summary."""
    totals = summary.get("totals") or {}
    bad = totals.get("failed", 0) + totals.get("invalid", 0)
    processed = bad + totals.get("completed", 0)
    failed = threshold.exceeded(bad, processed)
    message = counts_message(totals)
    if failed:
        message += f" (more than the {threshold} failed rows allowed)"
    elif bad:
        message += f" (within the {threshold} failed rows allowed)"
    if totals.get("ambiguous_rows"):
        message += ". " + ambiguous_advice(totals["ambiguous_rows"])
    summary["outcome"] = {"failed": failed, "message": message}
    events.run_finished(summary, account_id, failed)
    return summary


def judge_backfill(result: dict[str, Any], account_id: str | None = None) -> dict[str, Any]:
    """Decide a backfill's outcome (failed rows or a budget stop fail it), record it as
    ``result["outcome"]``, emit ``fashn.budget.exceeded`` on a budget stop; return it."""
    plan = result.get("plan") or {}
    totals = result.get("totals") or {}
    reasons = []
    if totals.get("failed", 0):
        reasons.append(f"{totals['failed']} rows failed")
    stopped = result.get("stopped_by_budget")
    if stopped and not result.get("dry_run"):
        budget = plan.get("budget")
        spent = plan.get("spent_before", 0) + totals.get("credits_charged", 0)
        remaining = None if budget is None else budget - spent
        ran = sum(chunk.get("rows", 0) for chunk in result.get("chunks") or [])
        rows_left = plan.get("to_run", 0) - ran + plan.get("deferred", 0)
        credits_left = max(plan.get("estimated_credits", 0) - totals.get("credits_charged", 0), 0)
        budget_message = (
            f"stopped by the budget of {budget} credits: {spent} spent "
            f"({plan.get('spent_before', 0)} before this run), {remaining} remaining; "
            f"{rows_left} rows (about {credits_left} credits) not submitted"
        )
        reasons.append(budget_message)
        events.budget_exceeded(
            budget_message,
            budget=budget,
            spent=spent,
            remaining=remaining,
            rows_left=rows_left,
            credits_left=credits_left,
            account_id=account_id,
        )
    message = (
        f"backfill: {totals.get('completed', 0)} rows completed, {totals.get('failed', 0)} "
        f"failed, {totals.get('skipped', 0)} skipped; "
        f"{totals.get('credits_charged', 0)} credits charged"
    )
    if reasons:
        message += "; " + "; ".join(reasons)
    if totals.get("ambiguous_rows"):
        message += ". " + ambiguous_advice(totals["ambiguous_rows"])
    result["outcome"] = {"failed": bool(reasons), "message": message}
    return result


def judge_audit(report: Any, fail_on_anomalies: bool = True) -> dict[str, Any]:
    """Decide a credit audit's outcome from an AuditReport: anomalies (among them a run's
    balance movement its rows do not explain) fail it unless ``fail_on_anomalies`` is off;
    emit ``fashn.audit.anomaly`` when there is something to look at. Returns the report
    dict."""
    data: dict[str, Any] = report.as_dict()
    counts = report.anomaly_counts()
    found = bool(counts)
    message = (
        f"audit: {report.charged} credits charged over {report.rows} rows; "
        + (", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "no anomalies")
        + f"; {report.unexplained:+d} credits of balance movement unexplained"
        + f"; {report.outside_usage:+d} used between the runs"
    )
    lost = [a.detail for a in report.anomalies if a.kind == "unexplained_balance"]
    if lost:
        message += ". " + lost[0] + (f" (and {len(lost) - 1} more runs)" if len(lost) > 1 else "")
    if found:
        events.audit_anomaly(report)
    data["outcome"] = {"failed": found and fail_on_anomalies, "message": message}
    return data


def state_for(decided: dict[str, Any] | None, data: dict[str, Any] | None = None) -> State[Any]:
    """The flow's final state for a summary judged above (``data`` defaults to it)."""
    data = decided if data is None else data
    outcome = (decided or {}).get("outcome") or {"failed": False, "message": "nothing to do"}
    if outcome["failed"]:
        return Failed(message=outcome["message"], data=RunFailed(outcome["message"], data or {}))
    return Completed(message=outcome["message"], data=data)


async def summary_of(flow_call: Awaitable[Any]) -> Any:
    """Await a flow call and return its summary, also when the flow ended Failed."""
    try:
        return await flow_call
    except RunFailed as exc:
        return exc.summary


def budget_refused(
    message: str, limit: int, estimated: int, rows: int, account_id: str | None
) -> None:
    """Emit ``fashn.budget.exceeded`` for a run refused before anything was submitted."""
    events.budget_exceeded(
        message,
        budget=limit,
        spent=0,
        remaining=limit,
        rows_left=rows,
        credits_left=estimated,
        account_id=account_id,
    )


def run_to_summary(flow_call: Coroutine[Any, Any, Any]) -> Any:
    """Run a flow call to the end (``asyncio.run``) and return its summary, Failed or not."""
    return asyncio.run(summary_of(flow_call))
