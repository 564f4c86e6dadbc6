"""Who is waiting for which prediction's webhook, in this process.

Thread-safe and not tied to an event loop: the receiver runs on its own thread and
Prefect may run tasks on worker threads with their own loops. A delivery for an id
nobody waits for yet is held for :data:`HOLD_SECONDS` (a prediction can end, and its
webhook arrive, before the ``POST /v1/run`` answer has given the run its id); one that
nobody claims in that time is dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

__all__ = ["HOLD_SECONDS", "MAX_HELD", "Deliveries", "Endpoint", "Waiter"]

HOLD_SECONDS = 120.0
"""How long a delivery for an unknown prediction id is kept for a late ``expect``."""
MAX_HELD = 10_000
"""At most this many unclaimed deliveries are held (the oldest go first)."""


class Waiter:
    """One prediction's wait for its webhook delivery."""

    def __init__(self, prediction_id: str) -> None:
        self.prediction_id = prediction_id
        self.deliveries = 0
        self._lock = threading.Lock()
        self._received: float | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def notify(self, received_at: float) -> None:
        """A delivery arrived at monotonic ``received_at``; wake the waiting coroutine."""
        with self._lock:
            self.deliveries += 1
            if self._received is None:
                self._received = received_at
            futures, self._futures = self._futures, []
        for loop, future in futures:
            with suppress(RuntimeError):  # that loop has closed; nobody waits there
                loop.call_soon_threadsafe(_settle, future)

    def take(self) -> float | None:
        """The receipt time of the delivery not yet acted on (then cleared), or None."""
        with self._lock:
            received, self._received = self._received, None
            return received

    async def wait(self, until: float) -> float | None:
        """Wait for a delivery until monotonic time ``until``; its receipt time, or None."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._received is not None:
                received, self._received = self._received, None
                return received
            future: asyncio.Future[None] = loop.create_future()
            self._futures.append((loop, future))
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(future, timeout=max(until - time.monotonic(), 0.0))
        finally:
            with self._lock:
                if (loop, future) in self._futures:
                    self._futures.remove((loop, future))
        return self.take()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Deliveries:
    """The waiters of one receiver (or event subscriber), by prediction id."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS, max_held: int = MAX_HELD) -> None:
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self._lock = threading.Lock()
        self._waiters: dict[str, Waiter] = {}
        self._held: OrderedDict[str, float] = OrderedDict()
        self.received = 0
        self.unknown = 0

    def deliver(self, prediction_id: str) -> bool:
        """A delivery for ``prediction_id`` arrived: wake its waiter and return True, or
        hold it briefly for a waiter still to come and return False."""
        now = time.monotonic()
        with self._lock:
            self.received += 1
            waiter = self._waiters.get(prediction_id)
            if waiter is None:
                self.unknown += 1
                self._prune(now)
                self._held[prediction_id] = now
                self._held.move_to_end(prediction_id)
                while len(self._held) > self.max_held:
                    self._held.popitem(last=False)
                return False
        waiter.notify(now)
        return True

    @contextmanager
    def waiting(self, prediction_id: str) -> Iterator[Waiter]:
        """Wait for ``prediction_id``'s deliveries for the block (one held for it already
        counts)."""
        waiter = Waiter(prediction_id)
        with self._lock:
            self._waiters[prediction_id] = waiter
            self._prune(time.monotonic())
            held = self._held.pop(prediction_id, None)
        if held is not None:
            waiter.notify(held)
        try:
            yield waiter
        finally:
            with self._lock:
                if self._waiters.get(prediction_id) is waiter:
                    del self._waiters[prediction_id]

    @property
    def held(self) -> int:
        """Deliveries held for a waiter that has not come yet."""
        with self._lock:
            return len(self._held)

    def _prune(self, now: float) -> None:
        while self._held:
            oldest = next(iter(self._held.values()))
            if now - oldest <= self.hold_seconds:
                return
            self._held.popitem(last=False)


@dataclass(frozen=True)
class Endpoint:
    """Where a run's predictions report their end: the ``url`` FASHN is given (with its
    secret token: never log it) and the ``deliveries`` its calls arrive in."""

    url: str
    deliveries: Deliveries
