"""The FASHN API's limits and how calls are counted against them.

:class:`RateLimit` and :class:`ApiLimits` describe the account's limits (FASHN's documented
defaults: 6 predictions in flight, 50 runs per 60 s, 50 status calls per 10 s).
:class:`CallWindow` counts one rate limit's calls; the account scheduler
(:mod:`fashn_prefect.scheduler.account`) holds one per limit.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, replace

__all__ = ["ApiLimits", "CallWindow", "RateLimit"]

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
    Not synchronised: the account scheduler guards it.
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
