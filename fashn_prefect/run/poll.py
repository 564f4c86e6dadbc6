"""Wait for a prediction: for its webhook, or polling when it is most likely to have finished.

The polls follow the latency the account's poll scheduler has learned
(:mod:`fashn_prefect.scheduler.polls`): it starts from the specs' documented range, is fed
every completion of this process, and is seeded once per output root from the latencies
earlier runs' results tables record. Every status call goes through the account's status
window, so all jobs in flight together stay within the status budget.

In webhook mode a prediction is not polled until its webhook is overdue; each delivery
is confirmed with one status call (the answer carries the credits header and the
authoritative outputs), so a forged or repeated delivery costs one call and changes
nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.errors import PollingTimeout
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.latency import LatencyBook, LatencyKey, latency_key
from fashn_prefect.store.results import read_results
from fashn_prefect.webhooks.registry import Waiter

logger = logging.getLogger(__name__)

OVERDUE_FACTOR = 1.25
OVERDUE_GRACE = 0.5
"""A webhook is overdue at 1.25 x the learned 95th percentile latency + 0.5 s (emulated)."""


@dataclass(frozen=True)
class Seen:
    """A terminal status, how the run learned of it and how long after the end.

    ``by`` is ``"webhook"`` (a delivery, confirmed by one status call) or ``"poll"``.
    ``delay`` is in real seconds: for a webhook, from the delivery to the confirming
    answer; for a poll, half the time since the last answer that showed the prediction
    running (the end lies somewhere in between).
    """

    status: PredictionStatus
    by: str
    delay: float


async def wait_for(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float, webhook: bool = False
) -> Seen:
    """Wait until ``prediction_id`` is terminal; ``started`` is monotonic.

    With ``webhook`` (it was submitted with this run's webhook URL) the wait is for its
    delivery, each one confirmed with exactly one status call, and polling starts only
    once the delivery is overdue (:func:`webhook_overdue`): a lost webhook costs some
    delay, never the row. Otherwise it is polled as the learned latency says.
    """
    deliveries = rt.webhook.deliveries if webhook and rt.webhook is not None else None
    if deliveries is None:
        return await _wait(rt, spec, prediction_id, started, None)
    with deliveries.waiting(prediction_id) as waiter:
        return await _wait(rt, spec, prediction_id, started, waiter)


def webhook_overdue(book: LatencyBook, key: LatencyKey) -> float:
    """Emulated seconds after submission when a prediction's webhook counts as overdue:
    :data:`OVERDUE_FACTOR` times the learned 95th percentile of its latency, plus
    :data:`OVERDUE_GRACE`."""
    return book.total(key).quantile(0.95) * OVERDUE_FACTOR + OVERDUE_GRACE


async def _wait(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float, waiter: Waiter | None
) -> Seen:
    scale = rt.config.time_scale
    polls = rt.polls
    await seed_from_results(rt)
    key = latency_key(spec.model_name, spec.inputs)
    deadline = started + max(key[2] * 10.0, 900.0) * scale
    overdue = started + webhook_overdue(polls.book, key) * scale if waiter else started
    status_limit = rt.account.limits.status
    running_at = started  # the last moment the prediction was known not to have ended
    with polls.track(key) as prediction:
        while True:
            min_step = polls.min_step(status_limit) / scale
            if time.monotonic() < overdue:
                wake = overdue  # wait for the delivery alone
            else:
                body = polls.body_polls(status_limit, key, scale)
                wake = started + prediction.next_poll(min_step, body) * scale
            delivered = await waiter.wait(wake) if waiter is not None else None
            if delivered is None and time.monotonic() < overdue:
                continue
            # A delivery is a wake-up call: one status call confirms it, no sooner than
            # the status budget allows for this prediction; its body is never used.
            last = prediction.last_poll
            earliest = started + (last + min_step) * scale if last is not None else 0.0
            status = await _poll_at(rt, prediction_id, wake if delivered is None else earliest)
            now = time.monotonic()
            elapsed = (now - started) / scale
            if status.is_terminal and delivered is not None:
                polls.book.observe(key, max(delivered - started, 0.0) / scale)
                return Seen(status, "webhook", now - delivered)
            # A lost webhook's end is only known to lie before this poll: not learned from.
            prediction.seen(elapsed, status.status, status.is_terminal and waiter is None)
            if status.is_terminal:
                return Seen(status, "poll", (now - running_at) / 2)
            running_at = now
            if now > deadline:
                raise PollingTimeout(
                    f"prediction {prediction_id} still {status.status} after "
                    f"{elapsed:.0f} s; a re-run resumes polling it"
                )


async def seed_from_results(rt: Runtime) -> None:
    """Feed earlier runs' recorded latencies (results tables under the output root) into
    the account's poll scheduler once per output root; a table that cannot be read is
    skipped."""
    output = rt.config.output
    if output is None or output in rt.polls.seeded:
        return
    rt.polls.seeded.add(output)
    try:
        rows = await rt.store("reading earlier results tables", _seed_rows, rt)
    except Exception as exc:  # seeding is an optimisation, never a failure
        logger.debug("no latencies from earlier results tables: %s", type(exc).__name__)
        return
    for model_name, inputs, latency in rows[-200:]:
        rt.polls.book.observe(latency_key(model_name, inputs), latency / rt.config.time_scale)


def _seed_rows(rt: Runtime) -> list[tuple[str, dict[str, Any], float]]:
    assert rt.config.output is not None
    table = read_results(
        rt.config.output,
        columns=["status", "model_name", "inputs_json", "latency_s"],
        storage_options=rt.config.storage_options,
    )
    if table is None:
        return []
    rows = []
    for row in table.to_pylist():
        latency = row.get("latency_s")
        if row.get("status") != "completed" or not latency or not row.get("model_name"):
            continue
        try:
            inputs = json.loads(row.get("inputs_json") or "{}")
        except ValueError:
            continue
        rows.append((str(row["model_name"]), inputs if isinstance(inputs, dict) else {}, latency))
    return rows


async def _poll_at(rt: Runtime, prediction_id: str, when: float) -> PredictionStatus:
    """One status call at monotonic time ``when`` (or as soon as the status window allows)."""
    now = time.monotonic()
    if when > now:
        await asyncio.sleep(when - now)
    async with rt.account.status_call():
        status = await rt.client.status(prediction_id)
    rt.stats.status_calls += 1
    return status
