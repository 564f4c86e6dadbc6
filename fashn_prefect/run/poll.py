"""Wait for a prediction, polling at a pace that follows the model's expected latency.

The first poll comes when the fastest documented run could be done; then polls come
about ten times per expected latency range, and back off once the prediction is past
the slowest expected time. Every status call goes through the shared status limiter,
so all jobs in flight together stay within the status budget.
"""

from __future__ import annotations

import asyncio
import time

from fashn_prefect.api import models as catalogue
from fashn_prefect.api.client import PredictionStatus
from fashn_prefect.run.runtime import Runtime
from fashn_prefect.run.validate import RowSpec


class PollingTimeout(Exception):
    """The prediction did not finish within the deadline; it may still complete later."""

    name = "PollingTimeout"


def poll_schedule(low: float, high: float) -> tuple[float, float]:
    """``(first_poll_after, interval)`` in emulated seconds for a latency range."""
    first = max(low * 0.9, 0.5)
    interval = min(max((high - low) / 10.0, 0.5), 5.0)
    return first, interval


async def wait_for(
    rt: Runtime, spec: RowSpec, prediction_id: str, started: float
) -> PredictionStatus:
    """Poll ``prediction_id`` until it reaches a terminal state; ``started`` is monotonic."""
    scale = rt.config.time_scale
    low, high = catalogue.expected_latency(spec.model_name, spec.inputs)
    first, interval = poll_schedule(low, high)
    deadline = started + max(high * 10.0, 900.0) * scale
    next_poll = started + first * scale
    while True:
        now = time.monotonic()
        if next_poll > now:
            await asyncio.sleep(next_poll - now)
        async with rt.limiter.status_call():
            status = await rt.client.status(prediction_id)
        rt.stats.status_calls += 1
        if status.is_terminal:
            return status
        now = time.monotonic()
        if now > deadline:
            raise PollingTimeout(
                f"prediction {prediction_id} still {status.status} after "
                f"{(now - started) / scale:.0f} s; a re-run resumes polling it"
            )
        elapsed = (now - started) / scale
        step = interval if elapsed < high else min(interval * (1 + (elapsed - high) / high), 30.0)
        next_poll = now + step * scale
