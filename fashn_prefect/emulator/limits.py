"""Per-key sliding-window rate limits (windows in emulated seconds)."""

from __future__ import annotations

from collections import deque


class SlidingWindowLimiter:
    """``limit`` accepted requests per ``window`` seconds per key; rejected requests do not count."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, now: float) -> float | None:
        """Record a request at ``now``. Returns None if allowed, else seconds until a slot frees."""
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.0, hits[0] + self.window - now)
        hits.append(now)
        return None

    def reset(self) -> None:
        """Forget every recorded request."""
        self._hits.clear()
