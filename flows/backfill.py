"""Deployable flow: a resumable, budgeted backfill in chunks (one subflow per chunk).

Deploy with ``prefect deploy --all`` from ``deployments/prefect.yaml`` (run on demand with
``prefect deployment run fashn-backfill/backfill --param manifest=... --param output=...``).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow, get_run_logger

from fashn_prefect.approval import pilot_gate
from fashn_prefect.backfill import run_backfill
from fashn_prefect.outcome import state_for


@flow(name="fashn-backfill")
async def backfill(
    manifest: str,
    output: str,
    model_name: str | None = None,
    credentials: str | None = None,
    chunk_size: int = 100,
    partition_by: str | None = None,
    budget: int | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    resubmit_ambiguous: bool = False,
    max_in_flight: int = 6,
    run_limit: str = "50/60",
    status_limit: str = "50/10",
    time_scale: float = 1.0,
    shared_limits: bool | None = None,
    storage_options: dict[str, Any] | None = None,
    storage_block: str | None = None,
    pilot_rows: int | None = None,
    approval_timeout: int = 3600,
) -> dict[str, Any]:
    """Regenerate imagery for a large set: chunks of ``chunk_size`` rows (or one chunk per
    value of ``partition_by``), each a ``fashn-run-manifest`` subflow.

    Run it again after an interruption: completed rows are skipped and in-flight
    predictions are resumed, never resubmitted. ``budget`` covers the whole backfill
    (credits already charged for its rows count); rows whose estimate would exceed it are
    not submitted, and the summary says how many. ``dry_run`` validates and estimates the
    whole set without submitting anything. The flow run ends Failed when rows failed or
    the budget stopped it (the message says what was spent and what remains).

    With ``pilot_rows`` it first runs that many rows, then pauses for approval in the
    Prefect UI (pilot gallery, failure rate, cost of the rest; see
    :mod:`fashn_prefect.approval`): rejected, it ends Cancelled; unanswered within
    ``approval_timeout`` seconds, Failed. Run it again to resume either way.
    """
    if pilot_rows and not dry_run:
        stopped = await pilot_gate(
            manifest,
            output,
            pilot_rows=pilot_rows,
            timeout=approval_timeout,
            model_name=model_name,
            budget=budget,
            skip_invalid=skip_invalid,
            resubmit_ambiguous=resubmit_ambiguous,
            storage_options=storage_options,
            storage_block=storage_block,
            credentials=credentials,
            max_in_flight=max_in_flight,
            run_limit=run_limit,
            status_limit=status_limit,
            time_scale=time_scale,
            shared_limits=shared_limits,
        )
        if stopped is not None:
            return cast(dict[str, Any], stopped)
    result = await run_backfill(
        manifest,
        output,
        model_name=model_name,
        chunk_size=chunk_size,
        partition_by=partition_by,
        budget=budget,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
        resubmit_ambiguous=resubmit_ambiguous,
        storage_options=storage_options,
        storage_block=storage_block,
        logger=get_run_logger(),
        credentials=credentials,
        max_in_flight=max_in_flight,
        run_limit=run_limit,
        status_limit=status_limit,
        time_scale=time_scale,
        shared_limits=shared_limits,
    )
    return cast(dict[str, Any], state_for(result))
