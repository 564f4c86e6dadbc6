"""Retry timing helpers for the FASHN client: ``Retry-After`` parsing and jittered backoff.

The FASHN documentation does not say whether 429 responses carry ``Retry-After`` (the
reference marks it [UNCONFIRMED]), so the client honours it when present, in any of the
forms the official SDK accepts: ``retry-after-ms`` (milliseconds), ``Retry-After`` as
delta seconds, or ``Retry-After`` as an HTTP date.

Like the official SDK, a wait of 0 or less (or a date in the past) is no instruction at
all: the client then backs off as if the header were absent. A positive value is a
minimum, never shortened by the client's own back-off.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping

#: Longest server-requested wait the client accepts before retrying (seconds).
RETRY_AFTER_MAX = 60.0


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Return the wait in seconds a response asks for, or None when it asks for none.

    ``retry-after-ms`` wins over ``Retry-After``. Zero or negative waits, dates in the past
    and unparseable values ask for nothing (None): the caller backs off normally.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _parse_number(raw_ms)
        if seconds is not None:
            return _positive(seconds / 1000.0)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _parse_number(raw)
    if seconds is not None:
        return _positive(seconds)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return _positive(when.timestamp() - now())


def _positive(seconds: float) -> float | None:
    return seconds if seconds > 0 else None


def _parse_number(raw: str) -> float | None:
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def backoff_delay(
    attempt: int,
    base: float,
    maximum: float,
    *,
    rng: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with "equal jitter": a value in [d/2, d], d = min(base * 2**attempt, maximum)."""
    ceiling = min(base * (2.0 ** min(attempt, 62)), maximum)
    return ceiling / 2.0 + rng() * ceiling / 2.0


def retry_delay(
    attempt: int,
    retry_after: float | None,
    base: float,
    maximum: float,
    *,
    window: float = 0.0,
    retry_after_max: float = RETRY_AFTER_MAX,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    A positive ``Retry-After`` is honoured as a minimum (capped at ``retry_after_max``):
    the wait is the longer of it and the jittered exponential back-off. Without one, the
    wait is ``window`` (the limit window the refused request counts against, so that the
    retry lands in a fresh window; 0 for failures that are not about a rate window)
    plus the jittered exponential back-off.
    """
    backoff = backoff_delay(attempt, base, maximum)
    if retry_after is not None and retry_after > 0:
        return max(min(retry_after, retry_after_max), backoff)
    return window + backoff
