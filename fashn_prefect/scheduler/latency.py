"""Latency learned online: how long predictions of one kind really take.

One :class:`LatencyEstimate` per (model, mode / resolution / duration), keyed by the
model name and the specs' documented range for those inputs (inputs with the same
documented range are expected to take as long). It starts from the documented range
(reaching down to half its low end) and is then fed the latencies this process
observes, so it follows the API when it runs faster or slower than documented, or drifts
during a run.

Robust by construction: the estimate is the empirical distribution of the most recent
:data:`WINDOW` observations (quantiles, never a mean), so a few outliers move only the
extreme quantiles. All times are in emulated seconds (real seconds / time scale).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from fashn_prefect.api import specs

__all__ = [
    "PRIOR_POINTS",
    "WINDOW",
    "LatencyBook",
    "LatencyEstimate",
    "LatencyKey",
    "latency_key",
]

WINDOW = 16
"""Observations kept per kind; older ones are forgotten, so a drift is followed."""
PRIOR_POINTS = 5
"""Pseudo-observations spread over the documented range, replaced one by one by real ones."""
PRIOR_LOW = 0.5
"""The prior reaches down to this fraction of the documented low end: a shared GPU service
is often faster than documented, and finding that out costs a few early polls, where
assuming it is not costs whole seconds of idle slots for the first predictions."""
UNKNOWN_LATENCY = (1.0, 60.0)

LatencyKey = tuple[str, float, float]


def latency_key(model_name: str, inputs: Mapping[str, Any] | None) -> LatencyKey:
    """The kind of a prediction: its model and documented ``(low, high)`` seconds."""
    try:
        low, high = specs.expected_latency(model_name, inputs or {})
    except (ValueError, KeyError, TypeError):
        low, high = UNKNOWN_LATENCY
    return (model_name, float(low), float(high))


class LatencyEstimate:
    """The distribution of one kind's latency: documented prior plus recent observations."""

    def __init__(self, documented: tuple[float, float], window: int = WINDOW) -> None:
        self.documented = documented
        self.samples: deque[float] = deque(maxlen=window)
        self._sorted: list[float] | None = None

    @property
    def observed(self) -> int:
        """How many real observations the estimate holds."""
        return len(self.samples)

    def observe(self, seconds: float) -> None:
        """Add one observed latency (ignored unless finite and positive)."""
        if math.isfinite(seconds) and seconds > 0:
            self.samples.append(seconds)
            self._sorted = None

    def _points(self) -> list[float]:
        if self._sorted is None:
            low, high = self.documented
            low *= PRIOR_LOW
            prior = max(0, PRIOR_POINTS - len(self.samples))
            points = [low + (high - low) * (i + 0.5) / prior for i in range(prior)]
            self._sorted = sorted([*points, *self.samples])
        return self._sorted

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1), interpolated between the sorted points."""
        points = self._points()
        if len(points) == 1:
            return points[0]
        position = min(max(q, 0.0), 1.0) * (len(points) - 1)
        i = min(int(position), len(points) - 2)
        return points[i] + (points[i + 1] - points[i]) * (position - i)

    def cdf(self, seconds: float) -> float:
        """The probability that a prediction of this kind takes at most ``seconds``."""
        points = self._points()
        if seconds <= points[0]:
            return 0.0
        if seconds >= points[-1]:
            return 1.0
        i = bisect.bisect_right(points, seconds) - 1
        span = points[i + 1] - points[i]
        fraction = (seconds - points[i]) / span if span > 0 else 0.0
        return (i + fraction) / (len(points) - 1)


class LatencyBook:
    """Every kind's estimates for one account, for the whole latency and the processing
    phase alone (from ``processing`` to terminal). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: dict[LatencyKey, LatencyEstimate] = {}
        self._processing: dict[LatencyKey, LatencyEstimate] = {}

    def total(self, key: LatencyKey) -> LatencyEstimate:
        """Submission to terminal."""
        return self._get(self._total, key)

    def processing(self, key: LatencyKey) -> LatencyEstimate:
        """``processing`` to terminal: what the model takes, without the queue."""
        return self._get(self._processing, key)

    def _get(self, table: dict[LatencyKey, LatencyEstimate], key: LatencyKey) -> LatencyEstimate:
        with self._lock:
            return self._get_unlocked(table, key)

    def observe(self, key: LatencyKey, total: float, processing: float | None = None) -> None:
        """Record one finished prediction's latency (and its processing time, if seen)."""
        with self._lock:
            self._get_unlocked(self._total, key).observe(total)
            if processing is not None:
                self._get_unlocked(self._processing, key).observe(processing)

    def _get_unlocked(
        self, table: dict[LatencyKey, LatencyEstimate], key: LatencyKey
    ) -> LatencyEstimate:
        estimate = table.get(key)
        if estimate is None:
            estimate = table[key] = LatencyEstimate((key[1], key[2]))
        return estimate
