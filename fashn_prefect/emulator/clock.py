"""Emulated clock: ``now = real monotonic elapsed / time_scale + advanced offset``."""

from __future__ import annotations

import asyncio
import contextlib
import time


class EmulatedClock:
    """Clock in emulated seconds since creation; can be advanced; sleepers wake on advance."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self._start = time.monotonic()
        self._offset = 0.0
        self._changed: asyncio.Event | None = None

    def now(self) -> float:
        """Current emulated time in seconds."""
        return (time.monotonic() - self._start) / self.time_scale + self._offset

    def to_real(self, emulated_seconds: float) -> float:
        """Convert an emulated duration to real seconds."""
        return max(0.0, emulated_seconds) * self.time_scale

    def advance(self, seconds: float) -> None:
        """Jump forward by ``seconds`` emulated seconds and wake every sleeper (call on the loop)."""
        if seconds < 0:
            raise ValueError("cannot move the clock backwards")
        self._offset += seconds
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def reset(self) -> None:
        """Restart at emulated time zero."""
        self._start = time.monotonic()
        self._offset = 0.0
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def sleep_until(self, when: float) -> None:
        """Sleep until emulated time ``when`` (returns early-and-rechecks on every advance)."""
        while True:
            remaining = when - self.now()
            if remaining <= 0:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=self.to_real(remaining))
