"""Wait for a prediction, polling when it is most likely to have finished.

By default the polls follow the latency the account's poll scheduler has learned
(:mod:`fashn_prefect.scheduler.polls`): it starts from the catalogue's documented range,
is fed every completion of this process, and is seeded once per output root from the
latencies earlier runs' results tables record. ``FASHN_POLLING=documented`` selects the
documented table alone (the first poll at 0.9 x its low end, then ten polls per range,
backing off past its high end), kept for comparison in ``benchmarks/latency.py``. Every
status call goes through the shared status limiter, so all jobs in flight together stay
within the status budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from fashn_prefect.api import models as catalogue
from fashn_prefect.api.client import PredictionStatus
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.latency import latency_key
from fashn_prefect.scheduler.polls import PollScheduler, poll_scheduler
from fashn_prefect.store.results import read_results

logger = logging.getLogger(__name__)

POLLING_ENV = "FASHN_POLLING"


class PollingTimeout(Exception):
    """The prediction did not finish within the deadline; it may still complete later."""

    name = "PollingTimeout"


def poll_schedule(low: float, high: float) -> tuple[float, float]:
    """``(first_poll_after, interval)`` in emulated seconds for a latency range."""
    first = max(low * 0.9, 0.5)
    interval = min(max((high - low) / 10.0, 0.5), 5.0)
    return first, interval


def documented_only() -> bool:
    """True when ``FASHN_POLLING=documented`` asks for the documented table alone."""
    return os.environ.get(POLLING_ENV, "learned").strip().lower() == "documented"


async def wait_for(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float
) -> PredictionStatus:
    """Poll ``prediction_id`` until it reaches a terminal state; ``started`` is monotonic."""
    if documented_only():
        return await _wait_documented(rt, spec, prediction_id, started)
    return await _wait_learned(rt, spec, prediction_id, started)


def _seed_rows(rt: Runtime) -> list[tuple[str, dict[str, Any], float]]:
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


async def seed_from_results(rt: Runtime, polls: PollScheduler) -> None:
    """Feed earlier runs' recorded latencies (results tables under the output root) into
    ``polls`` once per output root; a table that cannot be read is skipped."""
    if rt.config.output in polls.seeded:
        return
    polls.seeded.add(rt.config.output)
    try:
        rows = await rt.store("reading earlier results tables", _seed_rows, rt)
    except Exception as exc:  # seeding is an optimisation, never a failure
        logger.debug("no latencies from earlier results tables: %s", type(exc).__name__)
        return
    for model_name, inputs, latency in rows[-200:]:
        polls.book.observe(latency_key(model_name, inputs), latency / rt.config.time_scale)


async def _wait_learned(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float
) -> PredictionStatus:
    scale = rt.config.time_scale
    polls = poll_scheduler(rt.limiter.account or rt.limiter)
    await seed_from_results(rt, polls)
    key = latency_key(spec.model_name, spec.inputs)
    deadline = started + max(key[2] * 10.0, 900.0) * scale
    status_limit = rt.limiter.limits.status
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
                raise _timeout(prediction_id, status, (now - started) / scale)


async def _poll_at(rt: Runtime, prediction_id: str, when: float) -> PredictionStatus:
    """One status call at monotonic time ``when`` (or as soon as the status window allows)."""
    now = time.monotonic()
    if when > now:
        await asyncio.sleep(when - now)
    async with rt.limiter.status_call():
        status = await rt.client.status(prediction_id)
    rt.stats.status_calls += 1
    return status


def _timeout(prediction_id: str, status: PredictionStatus, waited: float) -> PollingTimeout:
    return PollingTimeout(
        f"prediction {prediction_id} still {status.status} after "
        f"{waited:.0f} s; a re-run resumes polling it"
    )


async def _wait_documented(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float
) -> PredictionStatus:
    scale = rt.config.time_scale
    low, high = catalogue.expected_latency(spec.model_name, spec.inputs)
    first, interval = poll_schedule(low, high)
    deadline = started + max(high * 10.0, 900.0) * scale
    next_poll = started + first * scale
    while True:
        status = await _poll_at(rt, prediction_id, next_poll)
        if status.is_terminal:
            return status
        now = time.monotonic()
        if now > deadline:
            raise _timeout(prediction_id, status, (now - started) / scale)
        elapsed = (now - started) / scale
        step = interval if elapsed < high else min(interval * (1 + (elapsed - high) / high), 30.0)
        next_poll = now + step * scale
