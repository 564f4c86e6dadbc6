"""One poll scheduler per account: when to spend a status call on which prediction.

Each prediction in flight is polled when the learned latency distribution
(:mod:`fashn_prefect.scheduler.latency`) says the chance that it completed since its
last poll has reached :data:`STEP_PROBABILITY`; the first poll comes at the
:data:`FIRST_QUANTILE` of the distribution. Every poll due therefore has about the same
chance of finding a finished prediction, and the account's status budget goes to the
predictions most likely to have completed, never evenly. Polls are never closer than the
account's status budget allows for the predictions being polled together, and every call
still goes through the account's status window (which also holds this run's share of it
when runs share the account across processes).

When the API shows ``in_queue`` and then ``processing``, the rest of the wait is
predicted from the processing time alone, since the queue time is what load determines.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from fashn_prefect.scheduler.latency import LatencyBook, LatencyKey
from fashn_prefect.scheduler.rates import RateLimit

__all__ = ["PollScheduler", "PredictionPolls", "forget_learned_latency", "poll_scheduler"]

FIRST_QUANTILE = 0.05
"""The first poll comes when one prediction in twenty of this kind has finished."""
STEP_PROBABILITY = 0.2
"""Each later poll comes when the chance of finding it finished since the last one reaches
this; but never sooner than 1/(2 x :data:`BODY_POLLS`) of the likely range, nor later than
1/:data:`BODY_POLLS` of it."""
BODY_POLLS = 6
"""At least this many polls across the 5-95 % range of the latency (about 4-6 status
calls per prediction in all); more when the status budget affords them."""
MAX_BODY_POLLS = 24
SPEND = 0.8
"""The share of the status budget the body polls plan to use (the rest is headroom)."""
TAIL = 0.95
"""Past this quantile, polls back off in proportion to how late the prediction is."""
MAX_STEP = 30.0
MIN_SPREAD = 0.2
"""The likely range is taken as at least this fraction of the median latency."""
CENSORED = 0.5
"""A prediction already finished at its first poll took *at most* that long; it is recorded
as this fraction of it, so the estimate moves down until polls catch predictions running."""
QUEUED = frozenset({"starting", "in_queue"})


class PredictionPolls:
    """The polls of one prediction; times are emulated seconds since its submission."""

    def __init__(self, book: LatencyBook, key: LatencyKey) -> None:
        self.book = book
        self.key = key
        self.last_poll: float | None = None
        self.last_status: str | None = None
        self.processing_since: float | None = None
        self.polls = 0

    def next_poll(self, min_step: float, body_polls: float = BODY_POLLS) -> float:
        """When to poll next, at least ``min_step`` after the last poll; ``body_polls``
        polls at most across the likely range (more when the status budget affords them)."""
        last = self.last_poll
        if self.processing_since is not None:
            estimate, origin = self.book.processing(self.key), self.processing_since
        else:
            estimate, origin = self.book.total(self.key), 0.0
        if last is None:
            target = origin + estimate.quantile(FIRST_QUANTILE)
        else:
            done = estimate.cdf(last - origin)
            likely = max(
                estimate.quantile(0.95) - estimate.quantile(0.05),
                MIN_SPREAD * estimate.quantile(0.5),
            )
            body_step = likely / body_polls
            if done >= TAIL:
                # Late: widen the body's step gently with the lateness, so a drift to a
                # slower API still finds predictions soon after they finish.
                late = (last - origin - estimate.quantile(TAIL)) / estimate.quantile(0.5)
                target = last + min(body_step * (1.0 + max(late, 0.0)), MAX_STEP)
            else:
                step = origin + estimate.quantile(done + STEP_PROBABILITY * (1 - done)) - last
                target = last + min(max(step, body_step / 2), body_step)
        earliest = (last if last is not None else 0.0) + min_step
        return max(target, earliest)

    def seen(self, elapsed: float, status: str, terminal: bool) -> None:
        """Record a poll's answer at ``elapsed``; a completion feeds the latency estimate."""
        previous, previous_status = self.last_poll, self.last_status
        self.last_poll, self.last_status = elapsed, status
        self.polls += 1
        if status == "processing" and previous is not None and previous_status in QUEUED:
            self.processing_since = (previous + elapsed) / 2
        if not terminal or status != "completed":
            return  # a failure's latency (e.g. a bad image fails at once) says nothing
        total = elapsed * CENSORED if previous is None else (previous + elapsed) / 2
        processing = None
        if self.processing_since is not None:
            processing = total - self.processing_since
        self.book.observe(self.key, total, processing if processing and processing > 0 else None)


class PollScheduler:
    """The account's learned latencies and the predictions it is polling, in this process."""

    def __init__(self) -> None:
        self.book = LatencyBook()
        self._lock = threading.Lock()
        self._tracked: set[PredictionPolls] = set()
        self.seeded: set[str] = set()

    @property
    def polling(self) -> int:
        """Predictions being waited for right now."""
        return len(self._tracked)

    @contextmanager
    def track(self, key: LatencyKey) -> Iterator[PredictionPolls]:
        """Follow one prediction's polls for the block."""
        prediction = PredictionPolls(self.book, key)
        with self._lock:
            self._tracked.add(prediction)
        try:
            yield prediction
        finally:
            with self._lock:
                self._tracked.discard(prediction)

    def body_polls(self, status: RateLimit, key: LatencyKey, scale: float = 1.0) -> float:
        """How many polls across the likely range the status budget affords each
        prediction being polled (``status`` in real seconds, ``scale`` real s per emulated
        s): :data:`SPEND` of its fair share over a typical latency, at least
        :data:`BODY_POLLS`, at most :data:`MAX_BODY_POLLS`."""
        per_second = status.requests / status.seconds * scale
        affordable = SPEND * per_second * self.book.total(key).quantile(0.5) / max(1, self.polling)
        return min(max(affordable, BODY_POLLS), MAX_BODY_POLLS)

    def min_step(self, status: RateLimit) -> float:
        """The closest two polls of one prediction may be, in ``status``'s seconds, so that
        the predictions already due (polled at least once) fit in the status budget
        together; those not yet due leave their share to them."""
        with self._lock:
            due = sum(1 for p in self._tracked if p.polls > 0)
        return max(1, due) * status.seconds / status.requests


_SCHEDULERS: weakref.WeakKeyDictionary[object, PollScheduler] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def poll_scheduler(account: object) -> PollScheduler:
    """The poll scheduler of ``account`` (its
    :class:`~fashn_prefect.scheduler.account.AccountScheduler`), created on first use."""
    with _LOCK:
        scheduler = _SCHEDULERS.get(account)
        if scheduler is None:
            scheduler = _SCHEDULERS[account] = PollScheduler()
        return scheduler


def forget_learned_latency() -> None:
    """Drop every account's learned latencies (benchmarks compare runs from a clean start)."""
    with _LOCK:
        _SCHEDULERS.clear()
