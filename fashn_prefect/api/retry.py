"""Retry timing helpers for the FASHN client: ``Retry-After`` parsing and jittered backoff.

The FASHN documentation does not say whether 429 responses carry ``Retry-After`` (the
reference marks it [UNCONFIRMED]), so the client honours it when present, in any of the
forms the official SDK accepts: ``retry-after-ms`` (milliseconds), ``Retry-After`` as
delta seconds, or ``Retry-After`` as an HTTP date.
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

    ``retry-after-ms`` wins over ``Retry-After``. Negative waits and dates in the past
    become 0; unparseable values are ignored.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _parse_number(raw_ms)
        if seconds is not None:
            return max(seconds / 1000.0, 0.0)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    seconds = _parse_number(raw)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(when.timestamp() - now(), 0.0)


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
    retry_after_max: float = RETRY_AFTER_MAX,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    A server-requested ``Retry-After`` is honoured as a minimum (capped at
    ``retry_after_max``); otherwise jittered exponential backoff is used.
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), retry_after_max)
    return backoff_delay(attempt, base, maximum)
