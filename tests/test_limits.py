"""The in-process limiter (fashn_prefect.scheduler.rates) on a virtual clock.

Every test runs on an event loop whose clock only moves when every task is waiting: a
sleep or a timed wait jumps straight to the next timer. Times are exact, nothing depends
on how busy the machine is, and a deadlock (every task waiting, no timer set) fails the
test at once instead of hanging it.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fashn_prefect.scheduler.rates import (
    ApiLimits,
    Lanes,
    Limiter,
    RateLimit,
    SharedLimits,
    SlidingWindow,
)

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


class RecordingShared(SharedLimits):
    """The account's server-side in-flight limit, held in memory (``capacity`` slots).

    Stands in for Prefect's tag concurrency limit so that the lanes' own bookkeeping can
    be observed on the virtual clock; the real limit is exercised by the flow tests.
    """

    def __init__(self, capacity: int, loop: VirtualTimeLoop) -> None:
        super().__init__("acct", LIMITS, enabled=True)
        self.loop = loop
        self.slots = asyncio.Semaphore(capacity)
        self.held = 0
        self.released_at: list[float] = []

    def in_flight_slot(self) -> AbstractAsyncContextManager[object]:
        @asynccontextmanager
        async def slot() -> AsyncIterator[None]:
            async with self.slots:
                self.held += 1
                try:
                    yield
                finally:
                    self.held -= 1
                    self.released_at.append(self.loop.time())

        return slot()


class UnreachableShared(SharedLimits):
    """A Prefect server that refuses every in-flight slot (first ``fail`` of them)."""

    def __init__(self, fail: int = 1_000) -> None:
        super().__init__("acct", LIMITS, enabled=True)
        self.fail = fail

    def in_flight_slot(self) -> AbstractAsyncContextManager[object]:
        @asynccontextmanager
        async def slot() -> AsyncIterator[None]:
            if self.fail > 0:
                self.fail -= 1
                raise ConnectionError("Prefect server unreachable")
            yield

        return slot()


# ---------------------------------------------------------------- sliding windows


@pytest.mark.parametrize("window", ["run", "status"])
@pytest.mark.parametrize("duration", [0.0, 2.5])
def test_exactly_n_calls_pass_and_call_n_plus_1_waits_a_full_window(
    window: str, duration: float
) -> None:
    limit = getattr(LIMITS, window)

    async def main(loop: VirtualTimeLoop) -> list[float]:
        limiter = Limiter(LIMITS, SharedLimits("acct", LIMITS, enabled=False), clock=loop.time)
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
        limiter = Limiter(LIMITS, SharedLimits("acct", LIMITS, enabled=False), clock=loop.time)
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
        window = SlidingWindow(RateLimit(1, 10.0), clock=loop.time)
        calls = Calls(loop)
        await asyncio.gather(calls.call(window.slot, 0.0, 30.0), calls.call(window.slot, 1.0))
        return calls.starts

    assert run_virtual(main) == [0.0, pytest.approx(40.0, abs=0.01)]


def test_resize_never_goes_below_one_call() -> None:
    window = SlidingWindow(RateLimit(50, 60.0))
    window.resize(0)
    assert window.limit == RateLimit(1, 60.0)
    window.resize(7)
    assert window.limit == RateLimit(7, 60.0)


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
        window = SlidingWindow(RateLimit(requests, float(seconds)), clock=loop.time)
        calls = Calls(loop)
        await asyncio.gather(*(calls.call(window.slot, a, d) for a, d in pattern))
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


# ---------------------------------------------------------------- shares and quiet_in


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=6))
def test_shares_of_the_runs_on_one_account_add_up_to_at_most_the_limit(parts: list[int]) -> None:
    of = sum(parts)
    limits = ApiLimits(of, RateLimit(50, 60.0), RateLimit(50, 10.0))
    limiters = [Limiter(limits, SharedLimits("acct", limits)) for _ in parts]
    for limiter, lanes in zip(limiters, parts, strict=True):
        limiter.share(lanes, of)
    for window in ("run_window", "status_window"):
        total = sum(getattr(lim, window).limit.requests for lim in limiters)
        assert total <= 50
        assert total >= 50 - len(parts)  # only rounding down is lost
    if parts == [of]:
        assert limiters[0].run_window.limit.requests == 50  # a lone run gets the whole rate


def test_share_is_ignored_without_shared_limits() -> None:
    limiter = Limiter(LIMITS, SharedLimits("acct", LIMITS, enabled=False))
    limiter.share(1, 6)
    assert limiter.run_window.limit == LIMITS.run
    assert limiter.status_window.limit == LIMITS.status


def test_quiet_in_counts_down_from_the_last_call_of_either_window() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        limiter = Limiter(LIMITS, SharedLimits("acct", LIMITS), clock=loop.time)
        seen = [limiter.quiet_in()]
        async with limiter.run_call():
            seen.append(limiter.quiet_in())  # a call in progress: a whole window
            await asyncio.sleep(5)
        seen.append(limiter.quiet_in())
        await asyncio.sleep(20)
        async with limiter.status_call():
            pass
        seen.append(limiter.quiet_in())  # run call ended 20 s ago; status call just now
        await asyncio.sleep(60)
        seen.append(limiter.quiet_in())
        return seen

    assert run_virtual(main) == [0.0, 60.0, 60.0, 40.0, 0.0]
    disabled = Limiter(LIMITS, SharedLimits("acct", LIMITS, enabled=False))
    assert disabled.quiet_in() == 0.0


# ---------------------------------------------------------------- lanes


def test_lanes_give_back_slots_no_remaining_row_can_use() -> None:
    async def main(loop: VirtualTimeLoop) -> list[int]:
        shared = RecordingShared(6, loop)
        held: list[int] = []
        async with Lanes(3, shared, rows=2, on_change=held.append) as lanes:
            await asyncio.sleep(1)
            seen = [shared.held]  # three taken, one given back: two rows, two lanes
            async with lanes.lane():
                await asyncio.sleep(1)
            lanes.finished()
            await asyncio.sleep(1)
            seen.append(shared.held)
            async with lanes.lane():
                await asyncio.sleep(1)
            lanes.finished()
            await asyncio.sleep(1)
            seen.append(shared.held)
        assert held[-1] == 0
        return seen

    assert run_virtual(main) == [2, 1, 0]


def test_lanes_keep_a_given_back_slot_for_the_cooldown() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[list[float], list[int]]:
        shared = RecordingShared(6, loop)
        shares: list[int] = []
        async with Lanes(2, shared, rows=1, on_change=shares.append, cooldown=lambda: 7.0):
            await asyncio.sleep(1)
        return shared.released_at, shares

    released, shares = run_virtual(main)
    # The spare lane's share ends at once; its slot goes back to the server 7 s later.
    assert released == [7.0, 7.0 + 1.0]
    assert shares == [1, 2, 1, 0]


def test_rows_beyond_the_lanes_wait_and_never_exceed_them() -> None:
    async def main(loop: VirtualTimeLoop) -> int:
        shared = RecordingShared(6, loop)
        busy = peak = 0

        async def row(lanes: Lanes) -> None:
            nonlocal busy, peak
            async with lanes.lane():
                busy += 1
                peak = max(peak, busy)
                await asyncio.sleep(3)
                busy -= 1
            lanes.finished()

        async with Lanes(2, shared, rows=7) as lanes:
            await asyncio.gather(*(row(lanes) for _ in range(7)))
        return peak

    assert run_virtual(main) == 2


def test_lanes_fail_clearly_when_no_slot_can_be_taken() -> None:
    async def main(loop: VirtualTimeLoop) -> list[BaseException | None]:
        async with Lanes(2, UnreachableShared(), rows=3) as lanes:

            async def row() -> None:
                async with lanes.lane():
                    pass

            return await asyncio.gather(*(row() for _ in range(3)), return_exceptions=True)

    errors = run_virtual(main)
    assert len(errors) == 3
    for error in errors:
        assert isinstance(error, RuntimeError)
        assert "no in-flight slot could be taken" in str(error)
        assert "ConnectionError: Prefect server unreachable" in str(error)


def test_lanes_work_on_with_the_slots_that_could_be_taken() -> None:
    async def main(loop: VirtualTimeLoop) -> int:
        done = 0
        async with Lanes(3, UnreachableShared(fail=2), rows=4) as lanes:

            async def row() -> None:
                nonlocal done
                async with lanes.lane():
                    await asyncio.sleep(1)
                    done += 1
                lanes.finished()

            await asyncio.gather(*(row() for _ in range(4)))
        return done

    assert run_virtual(main) == 4


def test_lanes_count_busy_lanes_as_used_by_the_rows_holding_them() -> None:
    async def main(loop: VirtualTimeLoop) -> list[int]:
        shared = RecordingShared(6, loop)
        seen: list[int] = []
        async with Lanes(3, shared, rows=3) as lanes:
            await asyncio.sleep(1)
            async with lanes.lane():  # the last row still running
                seen.append(shared.held)
                lanes.finished()  # two rows end without needing a lane again
                lanes.finished()
                await asyncio.sleep(1)
                seen.append(shared.held)  # only the busy lane is still needed
            lanes.finished()
            await asyncio.sleep(1)
            seen.append(shared.held)
        return seen

    assert run_virtual(main) == [3, 1, 0]
