"""The FASHN API's limits, held in this process and on the Prefect server.

In-process sliding windows keep one flow run exactly within the request rates with no
idle time. Shared limits are held by default as leased server slots per call and per
prediction (:mod:`fashn_prefect.scheduler.server`); what follows is the earlier 'lanes'
design (``shared_limits_design="lanes"``), kept for comparison. Across flow runs and
workers, the Prefect server holds the account's
in-flight limit as a tag concurrency limit whose slots the runs' *lanes* hold, and each
run's share of both request rates is the share of those slots it holds (see
:meth:`Limiter.share`): all runs together stay within the limits without a round trip
to the Prefect server per API call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fashn_prefect.scheduler.account import AccountScheduler

log = logging.getLogger("fashn_prefect.scheduler.limits")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` calls in any window of ``seconds``."""

    requests: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse ``"50/60"`` (50 requests per 60 seconds)."""
        match = _RATE.match(text)
        if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
            raise ValueError(f"rate limit must look like 50/60 (requests/seconds), got {text!r}")
        return cls(int(match.group(1)), float(match.group(2)))

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}"


@dataclass(frozen=True)
class ApiLimits:
    """The account's limits (FASHN defaults; raise them if FASHN raised yours)."""

    max_in_flight: int = 6
    run: RateLimit = RateLimit(50, 60.0)
    status: RateLimit = RateLimit(50, 10.0)

    def scaled(self, time_scale: float) -> ApiLimits:
        """Windows multiplied by ``time_scale`` (for a time-compressed emulator)."""
        return replace(
            self,
            run=RateLimit(self.run.requests, self.run.seconds * time_scale),
            status=RateLimit(self.status.requests, self.status.seconds * time_scale),
        )


class CallWindow:
    """The calls of one rate limit: how many are running, and when the others finished.

    A call counts from its start until ``limit.seconds`` after it *finishes*, so the
    server, which sees each request somewhere in between, can never count one too many.
    Not synchronised: :class:`SlidingWindow` and the account scheduler guard it.
    """

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.finished: deque[float] = deque()
        self.active = 0

    def wait_needed(self, now: float) -> float | None:
        """0 when a call may start at ``now``, else seconds to wait (None: until a call ends)."""
        while self.finished and now - self.finished[0] >= self.limit.seconds:
            self.finished.popleft()
        if len(self.finished) + self.active < self.limit.requests:
            return 0.0
        if self.finished:
            return max(self.limit.seconds - (now - self.finished[0]), 0.001)
        return None

    def start(self) -> None:
        """Count a call that starts now (after :meth:`wait_needed` returned 0)."""
        self.active += 1

    def finish(self, now: float) -> None:
        """A call that started has finished at ``now``."""
        self.active -= 1
        self.finished.append(now)


class SlidingWindow:
    """Async limiter: at most ``limit.requests`` calls in any ``limit.seconds`` window,
    counted as :class:`CallWindow` does. ``clock`` gives the current time in seconds (the
    event loop's clock; tests pass a virtual one).
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._calls = CallWindow(limit)
        self._clock = clock
        self._cond = asyncio.Condition()

    @property
    def limit(self) -> RateLimit:
        """The limit in force."""
        return self._calls.limit

    def resize(self, requests: int) -> None:
        """Allow ``requests`` calls per window from now on (at least one)."""
        self._calls.limit = replace(self.limit, requests=max(1, requests))

    def quiet_in(self) -> float:
        """Seconds until every call made so far has left the window (0 when none is active)."""
        if self._calls.active:
            return self.limit.seconds
        if not self._calls.finished:
            return 0.0
        return max(0.0, self._calls.finished[-1] + self.limit.seconds - self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one call's place in the window."""
        async with self._cond:
            while (wait := self._calls.wait_needed(self._clock())) != 0.0:
                if wait is None:
                    await self._cond.wait()
                else:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._cond.wait(), timeout=wait)
            self._calls.start()
        try:
            yield
        finally:
            async with self._cond:
                self._calls.finish(self._clock())
                self._cond.notify_all()


@dataclass(frozen=True)
class SharedLimitNames:
    """Names of the Prefect server-side limits for one account."""

    account: str

    @property
    def tag(self) -> str:
        """Tag whose concurrency limit is the in-flight limit; the lanes hold its slots.

        Prediction tasks must not carry this tag: Prefect would take a second slot of the
        same limit for the task run, which deadlocks once the lanes hold every slot.
        """
        return f"fashn-{self.account}"


class SharedLimits:
    """Server-side limits shared by every flow run and worker using one account."""

    def __init__(self, account: str, limits: ApiLimits, enabled: bool = True) -> None:
        self.names = SharedLimitNames(account)
        self.limits = limits
        self.enabled = enabled

    async def ensure(self) -> int:
        """Create the limits if absent; return the in-flight limit the server enforces."""
        if not self.enabled:
            return self.limits.max_in_flight
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        async with get_client() as client:
            try:
                existing = await client.read_concurrency_limit_by_tag(self.names.tag)
                in_flight = int(existing.concurrency_limit)
                if in_flight != self.limits.max_in_flight:
                    log.warning(
                        "Tag limit %s is %d on the server (configured %d); using the server's.",
                        self.names.tag,
                        in_flight,
                        self.limits.max_in_flight,
                    )
            except ObjectNotFound:
                await client.create_concurrency_limit(self.names.tag, self.limits.max_in_flight)
                in_flight = self.limits.max_in_flight
        return max(1, in_flight)

    def in_flight_slot(self) -> AbstractAsyncContextManager[object]:
        """Hold one slot of the account's tag concurrency limit (the in-flight limit)."""
        if not self.enabled:
            return nullcontext()
        from prefect.concurrency.asyncio import concurrency

        return concurrency(f"tag:{self.names.tag}", occupy=1, strict=True, lease_duration=60)


class Limiter:
    """Everything a flow run needs to stay within the API limits."""

    def __init__(
        self,
        limits: ApiLimits,
        shared: SharedLimits,
        account: AccountScheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.shared = shared
        self.account = account
        self.run_window = SlidingWindow(limits.run, clock)
        self.status_window = SlidingWindow(limits.status, clock)

    @asynccontextmanager
    async def run_call(self) -> AsyncIterator[None]:
        """Hold a place for one ``POST /v1/run`` (this run's share, then the account's)."""
        async with self.run_window.slot(), _maybe(self.account, "run"):
            yield

    @asynccontextmanager
    async def status_call(self) -> AsyncIterator[None]:
        """Hold a place for one ``GET /v1/status`` (within this run's share of the budget)."""
        async with self.status_window.slot(), _maybe(self.account, "status"):
            yield

    def share(self, lanes: int, of: int) -> None:
        """Use ``lanes``/``of`` of both request rates: this run's share of the in-flight slots.

        Submissions and status calls are made only while a lane is held, and at most ``of``
        lanes exist per account (the server-side in-flight limit), so the runs sharing an
        account stay within both rates together without asking the Prefect server before
        every call. (A server-side token bucket per call costs a Prefect API round trip each
        and, measured in benchmarks/throughput.py, let far fewer calls through than its rate.)
        """
        if self.shared.enabled:
            for window, limit in (
                (self.run_window, self.limits.run),
                (self.status_window, self.limits.status),
            ):
                window.resize(limit.requests * lanes // max(of, 1))

    def quiet_in(self) -> float:
        """Seconds until this run's calls so far have left the API's windows.

        A lane's slot is given back only then, so that the run that takes it next cannot
        add its calls to ones still counted against the share that came with the slot.
        """
        if not self.shared.enabled:
            return 0.0
        return max(self.run_window.quiet_in(), self.status_window.quiet_in())


def _maybe(account: AccountScheduler | None, kind: str) -> AbstractAsyncContextManager[object]:
    if account is None:
        return nullcontext()
    return account.run_call() if kind == "run" else account.status_call()


Lane = Callable[[], AbstractAsyncContextManager[None]]


class Lanes:
    """``count`` in-flight lanes, each backed by one server-side in-flight slot.

    A lane's slot is taken once, when the run starts, and given back as soon as fewer rows
    still need a lane than the run holds, so slots never sit idle between jobs (taking a
    server slot per job leaves slots empty for seconds, see prefect issue #23183) and other
    flow runs get them as soon as this one winds down. ``rows`` is how many rows will ask
    for a lane; each calls :meth:`finished` once it will not ask again.

    The run's share of the request rates follows the lanes it holds (``on_change``); a
    given-back slot is kept for ``cooldown()`` more seconds, until the calls made with its
    share have left the API's windows.
    """

    def __init__(
        self,
        count: int,
        shared: SharedLimits,
        rows: int | None = None,
        on_change: Callable[[int], None] | None = None,
        cooldown: Callable[[], float] | None = None,
        account: AccountScheduler | None = None,
    ) -> None:
        self.count = max(1, count)
        self.account = account
        self.shared = shared
        self._free: asyncio.Queue[int] = asyncio.Queue()
        self._release = [asyncio.Event() for _ in range(self.count)]
        self._holders: list[asyncio.Task[None]] = []
        self._remaining = self.count if rows is None else rows
        self._busy = 0
        self._held = 0
        self._on_change = on_change or (lambda held: None)
        self._cooldown = cooldown or (lambda: 0.0)
        self._waiting = 0
        self._failed = 0
        self._error = ""

    async def __aenter__(self) -> Lanes:
        self._holders = [asyncio.create_task(self._hold(i)) for i in range(self.count)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for event in self._release:
            event.set()
        await asyncio.gather(*self._holders, return_exceptions=True)

    async def _hold(self, index: int) -> None:
        try:
            async with self.shared.in_flight_slot():
                self._held += 1
                self._on_change(self._held)
                self._free.put_nowait(index)
                self._give_back_spare()
                await self._release[index].wait()
                self._held -= 1
                self._on_change(self._held)
                await asyncio.sleep(self._cooldown())
        except Exception as exc:
            log.error("Could not take an in-flight slot: %s: %s", type(exc).__name__, exc)
            self._error = f"{type(exc).__name__}: {exc}"
            self._failed += 1
            if self._failed == self.count:
                for _ in range(self._waiting + 1):
                    self._free.put_nowait(-1)

    def _give_back_spare(self) -> None:
        """Release free lanes that no remaining row can use any more."""
        while self._free.qsize() > max(self._remaining - self._busy, self._waiting, 0):
            index = self._free.get_nowait()
            if index < 0:
                self._free.put_nowait(index)
                return
            self._release[index].set()

    def finished(self) -> None:
        """One row will not ask for a lane again."""
        self._remaining -= 1
        self._give_back_spare()

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        """Hold a lane (one prediction in flight) for the duration of the block."""
        self._waiting += 1
        try:
            index = await self._free.get()
        finally:
            self._waiting -= 1
        if index < 0:
            self._free.put_nowait(-1)
            raise RuntimeError(f"no in-flight slot could be taken: {self._error}")
        self._busy += 1
        try:
            async with self.account.slot() if self.account else nullcontext():
                yield
        finally:
            self._busy -= 1
            self._free.put_nowait(index)
            self._give_back_spare()
