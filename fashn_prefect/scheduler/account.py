"""One scheduler per account per process: the in-flight slots and both rate windows.

Every prediction this process makes for an account goes through the same
:class:`AccountScheduler`: a manifest flow's rows and the tasks a user maps over inputs
in their own flow alike, so together they never exceed the account's limits. It is
thread-safe and not tied to an event loop, because Prefect may run mapped tasks on
worker threads, each with its own loop. With shared limits on, it also takes a leased
slot on the Prefect server for every call and every prediction
(:class:`~fashn_prefect.scheduler.leases.ServerLimits`), so processes that share the
account stay within its limits together. A call's server slot is taken *ahead*
(:data:`AHEAD`): while one call runs, the slot for the next is already being taken, so the
server round trip (and a busy server's pause) is off the path of a submission or a poll.
A slot taken ahead counts on the server from when it is taken, so it can only make the
account's windows stricter; one not used within a quarter of its window goes back at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

from fashn_prefect.scheduler.leases import HANDOFFS, Lease, ServerLimits
from fashn_prefect.scheduler.rates import ApiLimits, CallWindow

__all__ = ["AHEAD", "AccountScheduler", "account_scheduler"]

AHEAD = {"run": 1, "status": 2}
"""Server slots per kind of call that a process keeps taken ahead of its next calls."""


class _Wakeups:
    """Futures of waiters on any event loop, woken together when the state changes."""

    def __init__(self) -> None:
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add(self) -> asyncio.Future[None]:
        """A future set at the next :meth:`wake_all` (call with the scheduler's lock held)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((loop, future))
        return future

    def wake_all(self) -> None:
        """Wake every waiter (call with the scheduler's lock held)."""
        for loop, future in self._waiting:
            with suppress(RuntimeError):  # that loop has closed; nobody waits there
                loop.call_soon_threadsafe(_settle, future)
        self._waiting.clear()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Ahead:
    """Server slots of one call limit taken ahead of the calls that will use them."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.ready: list[Lease] = []
        self.taking = 0


class AccountScheduler:
    """The account's limits in this process: in-flight slots, run and status windows.

    ``clock`` gives the time in seconds (the event loop's clock in tests on virtual time).
    """

    def __init__(
        self,
        limits: ApiLimits,
        server: ServerLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.server = server
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = _Wakeups()
        self._in_flight = 0
        self._waiting = 0
        self._spare: list[Lease] = []
        self._run = CallWindow(limits.run)
        self._status = CallWindow(limits.status)
        self._ahead: dict[str, _Ahead] = {}
        self._leases: dict[str, tuple[float, Lease | None]] = {}
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Predictions holding a slot right now."""
        return self._in_flight

    async def acquire_slot(self) -> Lease | None:
        """Take one in-flight slot, waiting until one is free.

        Returns the server-side slot that goes with it (None without shared limits); pass
        it to :meth:`release_slot` or :meth:`lease`.
        """
        while True:
            expired: list[Lease | None] = []
            with self._lock:
                now = self._clock()
                for prediction_id, (deadline, held) in list(self._leases.items()):
                    if deadline <= now:  # its holder never looked again: the lease ran out
                        del self._leases[prediction_id]
                        self._in_flight -= 1
                        expired.append(held)
                if self._in_flight < self.limits.max_in_flight:
                    self._in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
                    spare = self._spare.pop() if self._spare else None
                    break
                self._waiting += 1
                future = self._changed.add()
                wait = min((d for d, _ in self._leases.values()), default=now + 3600.0) - now
            for held in expired:
                self._give_back(held)
            try:
                with suppress(TimeoutError):
                    await asyncio.wait_for(future, timeout=max(wait, 0.001))
            finally:
                with self._lock:
                    self._waiting -= 1
        for held in expired:
            self._give_back(held)
        if self.server is None or spare is not None:
            return spare
        try:
            return await self.server.take(self.server.in_flight_name)
        except BaseException:
            self.release_slot()
            raise

    def _give_back(self, held: Lease | None) -> None:
        """Keep a server slot for this process's next prediction for a moment (unless it
        has been handed on too often while another process waits), or return it."""
        if held is None or self.server is None:
            return
        with self._lock:
            if held.handoffs < HANDOFFS or not self.server.others_waiting:
                held.handoffs += 1
                self._spare.append(held)
                self._changed.wake_all()
                server = self.server
                server.later(server.poll, lambda: self._return_if_unused(self._spare, held))
                return
        held.handoffs = 0
        self.server.release(held)

    def _return_if_unused(self, unused: list[Lease], lease: Lease) -> None:
        """Give ``lease`` back to the server now if it is still in ``unused`` (a freed slot
        no local prediction took, or a slot taken ahead that no call used)."""
        with self._lock:
            if lease not in unused:
                return
            unused.remove(lease)
        if self.server is not None:
            self.server.release(lease)

    def release_slot(self, held: Lease | None = None) -> None:
        """Give back a slot taken with :meth:`acquire_slot` (and its server slot ``held``)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._changed.wake_all()
        self._give_back(held)

    def lease(self, prediction_id: str, seconds: float, held: Lease | None = None) -> None:
        """Keep the slot just taken for ``prediction_id`` after the caller lets go of it.

        It is given back by :meth:`release_prediction` once the prediction is seen
        terminal, or after ``seconds`` if nobody looks (a submission never waited for).
        """
        with self._lock:
            self._leases[prediction_id] = (self._clock() + seconds, held)

    def release_prediction(self, prediction_id: str) -> None:
        """``prediction_id`` is terminal: give back its leased slot, if it holds one."""
        with self._lock:
            entry = self._leases.pop(prediction_id, None)
            if entry is None:
                return
            self._in_flight = max(0, self._in_flight - 1)
            self._changed.wake_all()
        self._give_back(entry[1])

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one in-flight slot for the block."""
        held = await self.acquire_slot()
        try:
            yield
        finally:
            self.release_slot(held)

    @asynccontextmanager
    async def _call(self, window: CallWindow, name: str) -> AsyncIterator[None]:
        while True:
            with self._lock:
                wait = window.wait_needed(self._clock())
                if wait == 0.0:
                    window.start()
                    break
                future = self._changed.add()
            with suppress(TimeoutError):
                await asyncio.wait_for(future, timeout=wait)
        held: Lease | None = None
        try:
            if self.server is not None:
                held = self._taken_ahead(name) or await self.server.take(name)
                self._take_ahead(name, window.limit.seconds / 4)
            yield
        finally:
            with self._lock:
                window.finish(self._clock())
                self._changed.wake_all()
            if held is not None and self.server is not None:
                # The call counts on the server until one window after it finished.
                self.server.release(held, after=window.limit.seconds)

    def _taken_ahead(self, name: str) -> Lease | None:
        with self._lock:
            ahead = self._ahead.get(name)
            return ahead.ready.pop(0) if ahead and ahead.ready else None

    def _take_ahead(self, name: str, keep_unused: float) -> None:
        """Start taking server slots of ``name`` until :data:`AHEAD` are ready or coming."""
        server = self.server
        if server is None:
            return
        kind, limit = (
            ("run", self.limits.run) if name == server.run_name else ("status", self.limits.status)
        )
        with self._lock:
            # Never more than a tenth of the limit ahead (none for a tiny limit).
            ahead = self._ahead.setdefault(name, _Ahead(min(AHEAD[kind], limit.requests // 10)))
            missing = ahead.depth - len(ahead.ready) - ahead.taking
            ahead.taking += max(missing, 0)

        def granted(lease: Lease | None) -> None:
            with self._lock:
                ahead.taking -= 1
                if lease is None:
                    return
                ahead.ready.append(lease)
            server.later(keep_unused, lambda: self._return_if_unused(ahead.ready, lease))

        for _ in range(missing):
            server.take_soon(name, granted)

    def run_call(self) -> AbstractAsyncContextManager[None]:
        """Hold a place for one ``POST /v1/run`` in the account's run window."""
        return self._call(self._run, self.server.run_name if self.server else "")

    def status_call(self) -> AbstractAsyncContextManager[None]:
        """Hold a place for one ``GET /v1/status`` in the account's status window."""
        return self._call(self._status, self.server.status_name if self.server else "")


_SCHEDULERS: dict[tuple[str, ApiLimits, bool], AccountScheduler] = {}
_SCHEDULERS_LOCK = threading.Lock()


def account_scheduler(account: str, limits: ApiLimits, shared: bool = False) -> AccountScheduler:
    """This process's scheduler for ``account`` under ``limits`` (created on first use).

    ``limits`` are part of the key, so a time-scaled emulator run and a real run in one
    process do not share windows of different lengths. ``shared``: also hold every call
    and prediction on the Prefect server, shared with other processes.
    """
    with _SCHEDULERS_LOCK:
        scheduler = _SCHEDULERS.get((account, limits, shared))
        if scheduler is None:
            server = ServerLimits(account, limits) if shared else None
            scheduler = _SCHEDULERS[(account, limits, shared)] = AccountScheduler(limits, server)
        return scheduler
