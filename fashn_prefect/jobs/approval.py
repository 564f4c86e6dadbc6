"""An approval gate before a big spend: run a pilot, then ask a person in the Prefect UI.

A backfill with ``pilot_rows`` first runs that many of its rows (one
``fashn-run-predictions`` subflow named ``backfill-pilot``, rows as already checked, like a
chunk's),
then pauses with Prefect's :func:`~prefect.flow_runs.pause_flow_run` and waits for a
:class:`SpendApproval`. The pause shows the pilot's gallery link, its failure rate and what the rest will cost. On
approval the backfill goes on (the pilot's rows are skipped as completed); on rejection
it ends Cancelled; without an answer within ``timeout`` it ends Failed. Either way
nothing is lost: running the backfill again resumes it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, Failed
from pydantic import Field

from fashn_prefect.jobs.backfill import chunk_of, plan_backfill
from fashn_prefect.run.outcome import summary_of
from fashn_prefect.run.request import RunRequest


class SpendApproval(RunInput):
    """The answer to a paused backfill: go on with the remaining rows, or stop."""

    approve: bool = Field(default=False, description="Run the rest of the backfill.")


def pilot_report(pilot: dict[str, Any], rest: dict[str, Any]) -> str:
    """Markdown shown with the pause: the pilot's outcome and what the rest will cost."""
    totals = pilot.get("totals") or {}
    finished = totals.get("completed", 0) + totals.get("failed", 0)
    rate = 100.0 * totals.get("failed", 0) / finished if finished else 0.0
    errors = ", ".join(f"{k}: {v}" for k, v in sorted((totals.get("errors") or {}).items()))
    budget = rest.get("budget")
    return "\n".join(
        [
            f"## Pilot of {finished} rows done",
            f"- completed {totals.get('completed', 0)}, failed {totals.get('failed', 0)} "
            f"(failure rate {rate:.1f} %){f': {errors}' if errors else ''}",
            f"- credits charged: {totals.get('credits_charged', 0)}",
            f"- review gallery: {pilot.get('gallery') or 'not written'}",
            "",
            f"## The rest: {rest['to_run']} rows, about {rest['selected_credits']} credits",
            (
                f"- budget {budget} credits, {rest['spent_before']} spent so far; "
                f"{rest['deferred']} rows beyond it"
                if budget is not None
                else "- no budget set"
            ),
            "",
            "Approve to run the rest; reject (or let the pause time out) to stop here. "
            "Nothing is lost either way: run the backfill again to resume.",
        ]
    )


async def pilot_gate(
    manifest: str, request: RunRequest, *, pilot_rows: int, timeout: int
) -> State[Any] | None:
    """Run the pilot of the backfill of ``manifest`` and wait for approval. None: approved
    (or nothing left to ask about), go on with the backfill; otherwise the state the
    backfill flow run should end in."""
    from fashn_prefect.run.pipeline import run_predictions

    log = get_run_logger()
    plan, source = plan_backfill(manifest, request, chunk_size=pilot_rows)
    if len(plan.chunks) < 2:  # the pilot would be the whole backfill: no gate needed
        return None
    # The pilot's rows run as already checked, as a backfill chunk's do.
    pilot = await summary_of(
        run_predictions.with_options(flow_run_name="backfill-pilot")(
            rows=chunk_of(source, plan.chunks[0], f"{manifest}#backfill-pilot"),
            **replace(request, budget=None).flow_parameters(),
        )
    )
    rest, _ = plan_backfill(source, request, chunk_size=pilot_rows)  # validated once above
    report = pilot_report(pilot, rest.as_dict())
    log.info("Waiting up to %s s for approval:\n%s", timeout, report)
    try:
        answer = await apause_flow_run(
            wait_for_input=SpendApproval.with_initial_data(description=report, approve=False),
            timeout=timeout,
            poll_interval=max(1, min(10, timeout // 60)),
        )
    except FlowPauseTimeout:
        # Prefect's server fails an expired pause itself ("never resumed"); this message
        # is the flow's log line and, where the server lets it through, its state message.
        message = (
            f"no approval within {timeout} s after the pilot; the other {rest.to_run} rows "
            "were not run (run the backfill again to resume)"
        )
        log.warning(message)
        return Failed(message=message)
    if not answer.approve:
        return Cancelled(
            message=f"rejected after the pilot; the other {rest.to_run} rows were not run "
            "(run the backfill again to resume)"
        )
    log.info("Approved: running the remaining %s rows", rest.to_run)
    return None
