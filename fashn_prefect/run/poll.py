"""Wait for a prediction, polling when it is most likely to have finished.

The polls follow the latency the account's poll scheduler has learned
(:mod:`fashn_prefect.scheduler.polls`): it starts from the specs' documented range, is fed
every completion of this process, and is seeded once per output root from the latencies
earlier runs' results tables record. Every status call goes through the account's status
window, so all jobs in flight together stay within the status budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.errors import PollingTimeout
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.store.results import read_results

logger = logging.getLogger(__name__)


async def wait_for(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float
) -> PredictionStatus:
    """Poll ``prediction_id`` until it reaches a terminal state; ``started`` is monotonic."""
    scale = rt.config.time_scale
    polls = rt.polls
    await seed_from_results(rt)
    key = latency_key(spec.model_name, spec.inputs)
    deadline = started + max(key[2] * 10.0, 900.0) * scale
    status_limit = rt.account.limits.status
    with polls.track(key) as prediction:
        while True:
            min_step = polls.min_step(status_limit) / scale
            body = polls.body_polls(status_limit, key, scale)
            next_poll = started + prediction.next_poll(min_step, body) * scale
            status = await _poll_at(rt, prediction_id, next_poll)
            now = time.monotonic()
            prediction.seen((now - started) / scale, status.status, status.is_terminal)
            if status.is_terminal:
                return status
            if now > deadline:
                raise PollingTimeout(
                    f"prediction {prediction_id} still {status.status} after "
                    f"{(now - started) / scale:.0f} s; a re-run resumes polling it"
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
