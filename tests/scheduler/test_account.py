"""The account scheduler's rate windows (fashn_prefect.scheduler.account) on a virtual clock.

Every test runs on an event loop whose clock only moves when every task is waiting: a
sleep or a timed wait jumps straight to the next timer. Times are exact, nothing depends
on how busy the machine is, and a deadlock (every task waiting, no timer set) fails the
test at once instead of hanging it.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_prefect.scheduler.account import AccountScheduler
from fashn_prefect.scheduler.rates import ApiLimits, RateLimit

pytestmark = pytest.mark.unit

T = TypeVar("T")
LIMITS = ApiLimits(6, RateLimit(50, 60.0), RateLimit(50, 10.0))


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that, instead of blocking, moves the virtual clock to the next timer."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("deadlock: every task is waiting and no timer is set")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (starts at 0, advances only while all tasks wait)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[VirtualTimeLoop], Awaitable[T]]) -> T:
    """Run ``main(loop)`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))  # type: ignore[arg-type]
    finally:
        loop.close()


class Calls:
    """Makes calls through a slot and records when each one held it."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop
        self.spans: list[tuple[float, float]] = []

    async def call(
        self,
        slot: Callable[[], AbstractAsyncContextManager[Any]],
        after: float = 0.0,
        duration: float = 0.0,
    ) -> None:
        await asyncio.sleep(after)
        async with slot():
            start = self.loop.time()
            await asyncio.sleep(duration)
        self.spans.append((start, self.loop.time()))

    @property
    def starts(self) -> list[float]:
        return sorted(start for start, _ in self.spans)


# ---------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("window", ["run", "status"])
@pytest.mark.parametrize("duration", [0.0, 2.5])
def test_exactly_n_calls_pass_and_call_n_plus_1_waits_a_full_window(
    window: str, duration: float
) -> None:
    limit = getattr(LIMITS, window)

    async def main(loop: VirtualTimeLoop) -> list[float]:
        limiter = AccountScheduler(LIMITS, clock=loop.time)
        slot = limiter.run_call if window == "run" else limiter.status_call
        calls = Calls(loop)
        await asyncio.gather(*(calls.call(slot, 0.0, duration) for _ in range(limit.requests + 1)))
        return calls.starts

    starts = run_virtual(main)
    assert starts[: limit.requests] == [0.0] * limit.requests
    # The extra call waits until the first one has been out of the window for a full window.
    assert starts[limit.requests] == pytest.approx(duration + limit.seconds, abs=0.01)
    assert starts[limit.requests] >= duration + limit.seconds


def test_run_and_status_windows_are_independent() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[list[float], list[float]]:
        limiter = AccountScheduler(LIMITS, clock=loop.time)
        runs, statuses = Calls(loop), Calls(loop)
        await asyncio.gather(
            *(runs.call(limiter.run_call) for _ in range(LIMITS.run.requests)),
            *(statuses.call(limiter.status_call) for _ in range(LIMITS.status.requests)),
        )
        return runs.starts, statuses.starts

    runs, statuses = run_virtual(main)
    assert runs == [0.0] * LIMITS.run.requests
    assert statuses == [0.0] * LIMITS.status.requests


def test_a_call_still_running_holds_its_place_until_a_window_after_it_ends() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        window = AccountScheduler(ApiLimits(run=RateLimit(1, 10.0)), clock=loop.time)
        calls = Calls(loop)
        await asyncio.gather(
            calls.call(window.run_call, 0.0, 30.0), calls.call(window.run_call, 1.0)
        )
        return calls.starts

    assert run_virtual(main) == [0.0, pytest.approx(40.0, abs=0.01)]


calls_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40).map(lambda n: n / 4),  # arrives after
        st.integers(min_value=0, max_value=20).map(lambda n: n / 4),  # lasts
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    requests=st.integers(min_value=1, max_value=5),
    seconds=st.integers(min_value=1, max_value=8),
    pattern=calls_strategy,
)
def test_no_window_ever_holds_more_than_its_limit(
    requests: int, seconds: int, pattern: list[tuple[float, float]]
) -> None:
    """Random arrivals and durations: at no instant do more than ``requests`` calls count.

    A call counts from when it starts until ``seconds`` after it ends (the widest window
    in which the server may count it). Every call also gets through (no deadlock), and a
    call that waited started only once the window was full just before it.
    """

    async def main(loop: VirtualTimeLoop) -> list[tuple[float, float]]:
        window = AccountScheduler(
            ApiLimits(status=RateLimit(requests, float(seconds))), clock=loop.time
        )
        calls = Calls(loop)
        await asyncio.gather(*(calls.call(window.status_call, a, d) for a, d in pattern))
        return calls.spans

    spans = run_virtual(main)
    assert len(spans) == len(pattern)
    for start, _ in spans:
        counted = [s for s, e in spans if s <= start and start - e < seconds]
        assert len(counted) <= requests, (start, spans)
    arrivals = sorted(a for a, _ in pattern)
    for start in sorted(s for s, _ in spans):
        if start > arrivals[0] + 0.01 and start not in arrivals:
            # It waited: just before it started, the window was full.
            before = start - 0.02
            full = [s for s, e in spans if s <= before and before - e < seconds]
            assert len(full) >= requests, (start, spans)
