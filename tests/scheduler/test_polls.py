"""The learned latency and the poll choice, on a controlled clock (elapsed seconds given).

No timing is measured: each test feeds observations and poll answers at chosen instants
and checks where the next poll lands.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest

from fashn_prefect.scheduler.latency import (
    PRIOR_POINTS,
    WINDOW,
    LatencyBook,
    LatencyEstimate,
    latency_key,
)
from fashn_prefect.scheduler.polls import FIRST_QUANTILE, PollScheduler, PredictionPolls
from fashn_prefect.scheduler.rates import RateLimit

pytestmark = pytest.mark.unit

KEY = ("tryon-v1.6", 12.0, 17.0)


def test_the_estimate_starts_from_the_documented_range() -> None:
    estimate = LatencyEstimate((12.0, 17.0))
    assert 6.0 <= estimate.quantile(0.0) < estimate.quantile(0.5) < estimate.quantile(1.0) <= 17.0
    assert estimate.cdf(5.0) == 0.0 and estimate.cdf(18.0) == 1.0


def test_observations_replace_the_documented_range() -> None:
    estimate = LatencyEstimate((12.0, 17.0))
    for i in range(PRIOR_POINTS + 5):
        estimate.observe(5.0 + 0.1 * (i % 5))
    assert estimate.quantile(1.0) < 6.0, "the documented 12-17 s no longer counts"
    assert estimate.quantile(0.5) == pytest.approx(5.2, abs=0.15)


def test_a_few_outliers_do_not_move_the_median() -> None:
    estimate = LatencyEstimate((4.0, 6.0))
    for _ in range(20):
        estimate.observe(8.0)
    for outlier in (300.0, 0.01, 900.0):
        estimate.observe(outlier)
    assert estimate.quantile(0.5) == pytest.approx(8.0)
    assert estimate.quantile(0.2) == pytest.approx(8.0)


def test_a_drift_is_followed_within_the_window() -> None:
    estimate = LatencyEstimate((4.0, 6.0))
    for _ in range(WINDOW):
        estimate.observe(5.0)
    for _ in range(WINDOW):
        estimate.observe(10.0)
    assert estimate.quantile(0.1) == pytest.approx(10.0)


def test_junk_observations_are_ignored() -> None:
    estimate = LatencyEstimate((4.0, 6.0))
    for junk in (float("nan"), float("inf"), -1.0, 0.0):
        estimate.observe(junk)
    assert estimate.observed == 0


def test_kinds_are_told_apart_by_mode() -> None:
    fast = latency_key("tryon-v1.6", {"mode": "performance"})
    slow = latency_key("tryon-v1.6", {"mode": "quality"})
    assert fast != slow and fast[2] < slow[2]
    assert latency_key("no-such-model", {})[0] == "no-such-model"


def _polls(book: LatencyBook | None = None) -> PredictionPolls:
    return PredictionPolls(book or LatencyBook(), KEY)


def test_first_poll_comes_when_one_in_ten_could_be_done() -> None:
    polls = _polls()
    first = polls.next_poll(min_step=0.0)
    assert first == pytest.approx(LatencyBook().total(KEY).quantile(FIRST_QUANTILE))
    assert 6.0 <= first < 12.0, "it might be faster than documented"


def test_learned_fast_latency_brings_the_first_poll_forward() -> None:
    book = LatencyBook()
    for i in range(10):
        book.observe(KEY, 5.0 + 0.1 * (i % 3))
    assert _polls(book).next_poll(min_step=0.0) < 6.0


def test_polls_come_closer_where_completions_are_due_and_back_off_past_them() -> None:
    book = LatencyBook()
    for i in range(WINDOW):
        book.observe(KEY, 8.0 + 2.0 * (i / (WINDOW - 1)))  # 8-10 s
    polls = _polls(book)
    times: list[float] = []
    while not times or times[-1] < 20.0:
        t = polls.next_poll(min_step=0.1)
        times.append(t)
        polls.seen(t, "processing", terminal=False)
    steps = [b - a for a, b in itertools.pairwise(times)]
    inside = [s for a, s in zip(times, steps, strict=False) if a < 9.8]
    past = [s for a, s in zip(times, steps, strict=False) if a > 10.2]
    assert times[0] >= 8.0
    assert all(s < 0.5 for s in inside), "short steps where completions are due"
    # A prediction finishing anywhere in 8-10 s is found within about six status calls.
    calls = [1 + sum(1 for t in times if t < 8.0 + 2.0 * k / 20) for k in range(21)]
    assert sum(calls) / len(calls) <= 6.0
    assert past == sorted(past) and past[-1] > 1.5 * past[0], "past the range polls back off"


def test_polls_never_come_closer_than_the_budget_allows() -> None:
    book = LatencyBook()
    for _ in range(WINDOW):
        book.observe(KEY, 8.0)  # all at once: the distribution has no width
    polls = _polls(book)
    t1 = polls.next_poll(min_step=1.5)
    polls.seen(t1, "processing", terminal=False)
    assert polls.next_poll(min_step=1.5) >= t1 + 1.5


def test_a_completion_feeds_the_midpoint_of_its_last_two_polls() -> None:
    book = LatencyBook()
    polls = _polls(book)
    polls.seen(12.0, "processing", terminal=False)
    polls.seen(14.0, "completed", terminal=True)
    assert list(book.total(KEY).samples) == [13.0]


def test_done_at_the_first_poll_records_less_than_it_waited() -> None:
    book = LatencyBook()
    polls = _polls(book)
    polls.seen(12.0, "completed", terminal=True)
    assert book.total(KEY).samples[0] < 12.0


def test_after_queue_to_processing_the_wait_follows_the_processing_time() -> None:
    book = LatencyBook()
    for _ in range(10):
        book.observe(KEY, total=20.0, processing=4.0)  # mostly queue
    polls = _polls(book)
    polls.seen(2.0, "in_queue", terminal=False)
    polls.seen(30.0, "in_queue", terminal=False)
    polls.seen(32.0, "processing", terminal=False)
    assert polls.processing_since == pytest.approx(31.0)
    assert 32.0 < polls.next_poll(min_step=0.0) <= 35.0 + 0.5
    polls.seen(35.0, "completed", terminal=True)
    assert book.processing(KEY).samples[-1] == pytest.approx((32.0 + 35.0) / 2 - 31.0)


def test_the_budget_is_shared_by_the_predictions_already_due() -> None:
    scheduler = PollScheduler()
    status = RateLimit(50, 10.0)
    assert scheduler.min_step(status) == pytest.approx(0.2)
    with scheduler.track(KEY) as a, scheduler.track(KEY) as b, scheduler.track(KEY):
        assert scheduler.polling == 3
        assert scheduler.min_step(status) == pytest.approx(0.2), "none is due yet"
        a.seen(12.0, "processing", terminal=False)
        b.seen(12.5, "in_queue", terminal=False)
        assert scheduler.min_step(status) == pytest.approx(0.4), "two share the budget"
    assert scheduler.polling == 0


def test_a_longer_latency_affords_more_polls_within_the_budget() -> None:
    scheduler = PollScheduler()
    status = RateLimit(50, 10.0)
    short, long = ("m", 4.0, 6.0), ("m", 16.0, 24.0)
    with contextlib.ExitStack() as stack:
        for key in (short, short, short, long, long, long):
            stack.enter_context(scheduler.track(key))
        few, many = scheduler.body_polls(status, short), scheduler.body_polls(status, long)
    assert few < many
    # 6 predictions at 5 calls/s: one every 1.2 s each; 20 s of latency affords ~16.
    assert many <= 0.8 * 20.0 / 1.2 + 0.5


def test_the_emulator_can_be_told_the_true_latency() -> None:
    from fashn_prefect.emulator.config import EmulatorConfig
    from fashn_prefect.emulator.processing import scaled_latency

    documented = (4.0, 6.0)
    assert scaled_latency(EmulatorConfig(), 0, documented) == documented, "off by default"
    half = EmulatorConfig(latency_multiplier=0.5)
    assert scaled_latency(half, 0, documented) == (2.0, 3.0)
    drift = EmulatorConfig(latency_multiplier_after=(10, 2.0))
    assert scaled_latency(drift, 9, documented) == documented
    assert scaled_latency(drift, 10, documented) == (8.0, 12.0)
    with pytest.raises(ValueError):
        EmulatorConfig(latency_multiplier=0.0)


def test_a_failure_does_not_teach_the_latency() -> None:
    book = LatencyBook()
    polls = _polls(book)
    polls.seen(3.0, "processing", terminal=False)
    polls.seen(4.0, "failed", terminal=True)
    assert book.total(KEY).observed == 0
