"""The waiting logic of the row engine in webhook mode (run/poll.py), on a fake client:
each delivery is confirmed by exactly one status call; a delivery whose confirmation shows
the prediction running (a forged one) changes nothing; without a delivery the prediction
is polled once its webhook is overdue; without webhooks nothing changes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fashn_prefect.api.responses import PredictionStatus
from fashn_prefect.run.poll import wait_for
from fashn_prefect.run.runtime import RunConfig, Runtime
from fashn_prefect.run.validate import RowSpec
from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.rates import ApiLimits
from fashn_prefect.webhooks.registry import Deliveries, Endpoint

SPEC = RowSpec(1, "row-1", "tryon-v1.6", {"mode": "quality"}, {}, "h", 1)


class FakeClient:
    """Answers status calls from a script of statuses (the last one repeats)."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    async def status(self, prediction_id: str) -> PredictionStatus:
        self.calls += 1
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        output = ["https://cdn.example/real.png"] if status == "completed" else None
        return PredictionStatus(prediction_id, status, output, None, 1)


def runtime(client: FakeClient, scale: float, webhook: bool = True) -> Runtime:
    account = AccountScheduler(ApiLimits().scaled(scale))
    endpoint = (
        Endpoint("http://127.0.0.1:9/fashn-webhook?token=t", Deliveries()) if webhook else None
    )
    config = RunConfig(output=None, time_scale=scale)
    return Runtime(config, client, account, webhook=endpoint)  # type: ignore[arg-type]


async def deliver_soon(rt: Runtime, prediction_id: str, times: int = 1) -> None:
    assert rt.webhook is not None
    for _ in range(times):
        await asyncio.sleep(0.01)
        rt.webhook.deliveries.deliver(prediction_id)


def test_a_delivery_is_confirmed_by_exactly_one_status_call() -> None:
    client = FakeClient("completed")
    rt = runtime(client, scale=1.0)  # overdue after tens of seconds: never reached here

    async def scenario() -> Any:
        _, seen = await asyncio.gather(
            deliver_soon(rt, "p", times=3), wait_for(rt, SPEC, "p", time.monotonic(), True)
        )
        return seen

    seen = asyncio.run(scenario())
    assert seen.by == "webhook" and seen.status.output == ["https://cdn.example/real.png"]
    assert client.calls == 1


def test_a_forged_delivery_is_confirmed_then_the_real_one_ends_the_wait() -> None:
    client = FakeClient("processing", "completed")
    rt = runtime(client, scale=1.0)

    async def scenario() -> Any:
        async def forged_then_real() -> None:
            await deliver_soon(rt, "p")
            while client.calls < 1:
                await asyncio.sleep(0.005)
            await deliver_soon(rt, "p")

        _, seen = await asyncio.gather(
            forged_then_real(), wait_for(rt, SPEC, "p", time.monotonic(), True)
        )
        return seen

    seen = asyncio.run(scenario())
    assert seen.by == "webhook" and seen.status.status == "completed"
    assert client.calls == 2


def test_without_a_delivery_the_prediction_is_polled_once_overdue() -> None:
    client = FakeClient("completed")
    rt = runtime(client, scale=0.001)
    seen = asyncio.run(wait_for(rt, SPEC, "p", time.monotonic(), True))
    assert seen.by == "poll" and client.calls == 1


def test_without_webhooks_it_polls_as_before() -> None:
    client = FakeClient("processing", "processing", "completed")
    rt = runtime(client, scale=0.001, webhook=False)
    seen = asyncio.run(wait_for(rt, SPEC, "p", time.monotonic(), True))
    assert seen.by == "poll" and client.calls == 3
